"""A model that would not fit in the memory available is skipped before it trains, with its reason; the limit
is lowered for the test (QUEST_MEMORY_LIMIT)."""

from __future__ import annotations

import numpy as np
import pytest

from quest.core import processes
from quest.core.errors import QuestError, TooLarge
from quest.evaluation.comparison import report_markdown
from quest.evaluation.scoring import ModelResult, Scored, Skipped, evaluate_or_skip, scores_of
from quest.learners import registry
from quest.learners.base import COPIES, Problem
from quest.learners.engine import check_memory
from quest.learners.registry import params_from_dict
from tests.conftest import blobs, repo_params
from tests.support import DECIDE, SIZES, TINY_REALMLP, results


@pytest.mark.parametrize(("text", "count"), [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("2gb", 2 * 2**30),
                                             ("1.5K", 1536), ("1000", 1000)])  # fmt: skip
def test_the_limit_reads_as_a_size(monkeypatch, text, count):
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", text)
    assert processes.memory_available() == count


def test_a_limit_that_is_no_size_is_one_line(monkeypatch):
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "lots")
    with pytest.raises(
        QuestError, match=r"QUEST_MEMORY_LIMIT must be a size such as 4G, 512M or a number of bytes \(got .lots.\)"
    ):
        processes.memory_available()


def test_without_a_limit_it_is_what_the_machine_has_free():
    assert 0 < processes.memory_available() < 2**50


class Stats:
    argument_size_in_bytes, output_size_in_bytes, temp_size_in_bytes, alias_size_in_bytes = 600, 100, 400, 100


def test_networks_are_judged_by_xlas_own_layout_of_their_programs(monkeypatch):
    block = type("Block", (), {"memory_analysis": lambda self: Stats()})()
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "4000")
    check_memory(block, parts=2, jobs=16)  # twice 2 x 1000 bytes: fits
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "3999")
    with pytest.raises(TooLarge, match=r"^its 16 networks would need about 0 MB \(2 x XLA's layout of 2 programs"):
        check_memory(block, parts=2, jobs=16)


def test_a_real_network_learner_is_stopped_before_its_first_step(monkeypatch):
    x, y = blobs(120, seed=1)
    params = params_from_dict(repo_params(realmlp=TINY_REALMLP))
    learner = registry.learner("realmlp", params)
    cell = Scored(rows=np.arange(80), targets=(y[80:],), inputs=(x[80:],), index=0)
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "1K")
    with pytest.raises(TooLarge, match=r"its 1 networks would need about"):
        scores_of(learner, x, y, [cell], Problem("classification", 2, 3), seed=0)
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "4G")
    (found,) = scores_of(learner, x, y, [cell], Problem("classification", 2, 3), seed=0)
    assert 0 <= found[0]["accuracy"] <= 1


def test_a_classic_model_is_judged_by_the_copies_of_its_rows(monkeypatch, tmp_path):
    from quest.data.artifacts import read_prepared
    from quest.stages.prepare import main as prepare

    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(repo_params()))
    prepare(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "processed")])
    prepared = read_prepared(tmp_path / "processed")
    params = params_from_dict(repo_params())
    logreg = registry.learner("logreg", params)
    rows, columns = prepared.x_train.shape
    assert logreg.memory_needed(rows, columns) == rows * columns * 8 * COPIES
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", str(rows * columns * 8 * COPIES - 1))
    skipped = evaluate_or_skip(logreg, prepared, Problem.of(prepared), seed=0)
    assert skipped == Skipped("logreg", "one fit would need about 0 MB and 0 MB is available")
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", "1G")
    assert isinstance(evaluate_or_skip(logreg, prepared, Problem.of(prepared), seed=0), ModelResult)


def test_the_report_says_which_models_were_left_out_and_why():
    from quest.evaluation.comparison import comparison_table, verdict

    table = comparison_table(results(), "accuracy", **SIZES)
    outcome = verdict(results(), "accuracy", **SIZES, **DECIDE)
    descriptions = {name: name for name in ("mlp", "logreg", "forest")}
    reason = "its 16 networks would need about 9.1 GB and 3.0 GB is available"
    text = report_markdown(table, "t", "classification", outcome, "4 splits", descriptions=descriptions,
                           skipped={"realmlp": reason})  # fmt: skip
    assert "- realmlp: its 16 networks would need about 9.1 GB and 3.0 GB is available." in text
    assert "realmlp" not in report_markdown(
        table, "t", "classification", outcome, "4 splits", descriptions=descriptions
    )


def test_compare_leaves_out_what_would_not_fit_and_says_so_in_its_report(monkeypatch, tmp_path, capsys):
    import yaml

    from quest.data.artifacts import read_prepared
    from quest.stages.compare import compare
    from quest.stages.prepare import main as prepare

    settings = repo_params(
        compare={"models": ["logreg", "realmlp"]}, realmlp={**TINY_REALMLP, "hidden_layers": [256, 256]}
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    prepare(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "processed")])
    prepared = read_prepared(tmp_path / "processed")
    params = params_from_dict(settings)
    splits = prepared.schema.folds * prepared.schema.repeats
    metrics = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss")
    subject = ModelResult("mlp", {name: [0.9] * splits for name in metrics}, dict.fromkeys(metrics, 0.9))
    # Room for logistic regression's copies of the rows, not for 16 networks of 256-256 with Adam's state.
    monkeypatch.setenv("QUEST_MEMORY_LIMIT", str(registry.learner("logreg", params).memory_needed(
        *prepared.x_train.shape) + 1))  # fmt: skip
    found = compare(params, prepared, subject)
    assert list(found.skipped) == ["realmlp"] and found.skipped["realmlp"].startswith("its 16 networks would need")
    assert found.table["model"].tolist() == ["mlp", "logreg"]
    assert f"- realmlp: {found.skipped['realmlp']}." in found.report
    assert f"compare: notice: skipping realmlp: {found.skipped['realmlp']}" in capsys.readouterr().err
