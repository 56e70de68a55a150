import math

import numpy as np
import pytest

from quest.evaluation.comparison import COLUMNS, comparison_table, report_markdown, rope_in_units, verdict
from quest.evaluation.scoring import ModelResult
from quest.evaluation.stats import corrected_ttest, correlated_bayes, mean_interval
from tests.support import DECIDE, KINDS, SIZES, results


def test_table_has_mean_std_interval_test_and_the_neural_vs_classic_tests():
    table = comparison_table(results(), "accuracy", **SIZES)
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist() == ["mlp", "logreg", "forest"]
    assert table["family"].tolist() == ["neural", "classic", "classic"]
    rows = table.set_index("model")
    assert rows.loc["mlp", "cv_mean"] == pytest.approx(0.85)
    assert rows.loc["mlp", "cv_std"] == pytest.approx(0.05)
    assert (rows.loc["mlp", "ci_low"], rows.loc["mlp", "ci_high"]) == pytest.approx(
        mean_interval(np.array([0.9, 0.8, 0.9, 0.8]), n_train=30, n_test=10)
    )
    gains = np.array([0.2, 0.1, 0.1, 0.2])  # the MLP minus logreg, split by split
    assert rows.loc["logreg", "p_value"] == pytest.approx(corrected_ttest(gains, n_train=30, n_test=10)[1])
    posterior = correlated_bayes(gains, n_train=30, n_test=10, rope=0.01)
    assert tuple(rows.loc["logreg", ["p_better", "p_equivalent", "p_worse"]]) == pytest.approx(
        (posterior.p_better, posterior.p_equivalent, posterior.p_worse)
    )
    assert rows.loc["logreg", "versus"] == "mlp" and rows.loc["mlp", "versus"] == "forest"  # the best classic
    # The MLP's own row carries its test against the best classic model: forest's row, from the MLP's side.
    tests = ["p_value", "p_better", "p_equivalent", "p_worse", "wins", "ties", "losses"]
    assert list(rows.loc["mlp", tests]) == list(rows.loc["forest", tests])
    assert (rows.loc["logreg", "wins"], rows.loc["logreg", "ties"], rows.loc["logreg", "losses"]) == (4, 0, 0)
    assert (rows.loc["forest", "wins"], rows.loc["forest", "ties"], rows.loc["forest", "losses"]) == (2, 2, 0)
    assert (rows[["p_better", "p_equivalent", "p_worse"]].sum(axis=1)).to_numpy() == pytest.approx(1.0)


def test_the_verdict_says_what_the_posterior_says_with_the_p_value_beside_it():
    table = comparison_table(results(), "accuracy", **SIZES)
    outcome = verdict(results(), "accuracy", **SIZES, **DECIDE)
    assert outcome.winner == "mlp"
    assert (outcome.best_neural, outcome.best_classic) == ("mlp", "forest")  # 0.775 beats logreg's 0.70
    headline = outcome.headline
    assert (headline.neural, headline.classic) == ("mlp", "forest")
    assert headline.difference == pytest.approx(0.075)
    assert headline.p_value > 0.05
    assert outcome.outcome == headline.outcome == "unclear"  # four splits cannot settle a 0.075 gap with this spread
    assert outcome.words == headline.words
    assert headline.words == (
        f"no clear answer between mlp and forest: P(better) = {headline.p_better:.2f}, "
        f"P(equivalent) = {headline.p_equivalent:.2f}, P(worse) = {headline.p_worse:.2f}; "
        f"corrected t-test p = {headline.p_value:.3g}"
    )
    assert list(outcome.neural) == ["mlp"] and outcome.neural["mlp"] == headline
    descriptions = {"mlp": "Keras MLP", "logreg": "logistic regression", "forest": "random forest"}
    report = report_markdown(table, "toy", "classification", outcome, "4 folds", descriptions=descriptions)
    assert f"**The answer: no clear answer between mlp and forest: P(better) = {headline.p_better:.2f}" in report
    assert "| **mlp** | neural | Keras MLP | 0.8500 ± 0.0500 |" in report
    assert "![posterior](posterior.png)" in report
    assert "stand-ins" not in report and report.endswith("![comparison](comparison.png)\n")
    large = report_markdown(table, "toy", "classification", outcome, "4 folds", descriptions=descriptions, large=True)
    note = "The training split is past `compare.scale_threshold` rows, so the models whose cost grows fastest"
    assert note in large and large.index(note) > large.index("W/T/L counts") and large.endswith("(comparison.png)\n")


@pytest.mark.parametrize(
    ("gains", "outcome", "words"),
    [
        ([0.06, 0.05, 0.06, 0.05, 0.06, 0.05], "better", "mlp is better than tree with P > 0.99"),
        ([-0.06, -0.05, -0.06, -0.05, -0.06, -0.05], "worse", "mlp is worse than tree with P > 0.99"),
        (
            [0.001, -0.001, 0.002, 0.0, -0.002, 0.001],
            "equivalent",
            "mlp and tree are practically equivalent (P > 0.99 that the difference is within ±0.01)",
        ),
    ],
)
def test_better_worse_and_equivalent_need_the_posterior_probability(gains, outcome, words):
    base = np.array([0.8, 0.7, 0.8, 0.7, 0.8, 0.7])
    found = [
        ModelResult("mlp", {"accuracy": list(base + np.array(gains))}, {"accuracy": 0.8}),
        ModelResult("tree", {"accuracy": list(base)}, {"accuracy": 0.8}),
    ]
    said = verdict(found, "accuracy", **SIZES, **DECIDE)
    assert said.outcome == outcome and said.words.startswith(words + "; corrected t-test p = ")
    # Asking for more certainty than the posterior has turns the same evidence into no clear answer.
    strict = verdict(found, "accuracy", **SIZES, probability=0.999999999, alpha=0.05)
    assert strict.outcome == "unclear" and strict.words.startswith("no clear answer between mlp and tree")


def test_the_headline_is_the_best_neural_entrant_against_the_best_classic_and_each_neural_one_follows():
    found = [
        *results(),
        ModelResult("wide", {"accuracy": [0.95, 0.9, 0.95, 0.9]}, {"accuracy": 0.9}),
        ModelResult("tree", {"accuracy": [0.7, 0.8, 0.75, 0.8]}, {"accuracy": 0.7}),
    ]
    outcome = verdict(found, "accuracy", **SIZES, **DECIDE)
    assert (outcome.best_neural, outcome.best_classic) == ("wide", "forest")
    assert outcome.headline.difference == pytest.approx(0.925 - 0.775)
    assert list(outcome.neural) == ["wide", "mlp"]  # ranked by CV mean, each against the best classic model
    assert {entry.classic for entry in outcome.neural.values()} == {"forest"}
    rows = comparison_table(found, "accuracy", **SIZES).set_index("model")
    assert rows.loc["mlp", "versus"] == rows.loc["wide", "versus"] == "forest"
    assert rows.loc["tree", "versus"] == rows.loc["logreg", "versus"] == "wide"  # the best neural entrant
    assert rows.loc["mlp", "p_better"] == pytest.approx(outcome.neural["mlp"].p_better)
    table = comparison_table(found, "accuracy", **SIZES)
    descriptions = dict.fromkeys(KINDS, "a model")
    report = report_markdown(table, "toy", "classification", outcome, "4 folds", descriptions=descriptions)
    assert "Each neural entrant against the best classic model:" in report
    assert "- no clear answer between mlp and forest" in report


def test_the_verdict_is_written_as_verdict_json_has_always_read():
    import dataclasses

    outcome = dataclasses.replace(verdict(results(), "accuracy", **SIZES, **DECIDE), rope_setting="auto")
    written = outcome.to_dict()
    judged = ["difference", "p_better", "p_equivalent", "p_worse", "p_value", "outcome", "words"]
    assert list(written) == [
        "metric", "winner", "best_neural", "best_classic", *judged, "posterior", "rope", "probability", "alpha",
        "neural", "rope_setting",
    ]  # fmt: skip
    assert list(written["neural"]["mlp"]) == ["neural", "classic", *judged]
    assert written["neural"]["mlp"]["classic"] == "forest" and written["words"] == outcome.words
    assert list(written["posterior"]) == ["mean", "scale", "df"] and written["rope_setting"] == "auto"
    assert "rope_setting" not in verdict(results(), "accuracy", **SIZES, **DECIDE).to_dict()


def test_without_a_classic_entrant_there_is_no_verdict():
    with pytest.raises(ValueError, match="no classic one"):
        verdict(results()[:1], "accuracy", **SIZES, **DECIDE)


def test_lower_is_better_metrics_rank_and_count_the_other_way():
    rows = [
        ModelResult("mlp", {"rmse": [2.0, 2.1, 2.0]}, {"rmse": 2.0}),
        ModelResult("tree", {"rmse": [1.0, 1.1, 1.05]}, {"rmse": 1.0}),
    ]
    sizes = {**SIZES, "n_train": 20}
    table = comparison_table(rows, "rmse", **sizes)
    outcome = verdict(rows, "rmse", **sizes, **DECIDE)
    assert outcome.winner == "tree"
    assert outcome.headline.difference == pytest.approx(-(6.1 / 3 - 3.15 / 3), rel=1e-9)
    assert outcome.outcome == "worse" and outcome.headline.p_worse > 0.95
    assert tuple(table.set_index("model").loc["tree", ["wins", "ties", "losses"]]) == (0, 0, 3)


def test_the_rope_of_rmse_and_mae_is_a_share_of_the_targets_spread():
    target = np.array([10.0, 20.0, 30.0, 40.0])  # standard deviation sqrt(125)
    assert rope_in_units(0.01, "rmse", target) == pytest.approx(0.01 * math.sqrt(125))
    assert rope_in_units(0.01, "mae", target) == pytest.approx(0.01 * math.sqrt(125))
    assert rope_in_units(0.01, "r2", target) == rope_in_units(0.01, "accuracy", target) == 0.01


PARALLEL_EQUALS_SERIAL = """
import json, sys
from pathlib import Path
from quest.data.sources import load_dataset
from quest.evaluation.scoring import evaluate_all
from quest.learners.base import Problem
from quest.learners.classic.baselines import Baseline
from quest.learners.registry import params_from_dict
from quest.stages.prepare import prepare, write_prepared
from quest.data.artifacts import read_prepared
import yaml
params = yaml.safe_load(Path("params.yaml").read_text())
params["data"].update(source="synthetic")
params["data"]["synthetic"].update(kind="moons", n_samples=120)
params = params_from_dict(params)
out = Path(sys.argv[1])
write_prepared(prepare(load_dataset(params.data, seed=1, root=Path(".")), test_size=0.25, folds=3, seed=1), out)
prepared = read_prepared(out)
learners = [Baseline(name) for name in ("logreg", "tree", "forest", "knn5")]
problem = Problem.of(prepared)
runs = {w: [(r.name, r.folds, r.test) for r in evaluate_all(learners, prepared, problem, seed=1, workers=w)]
        for w in (1, 2)}
print(json.dumps({"same": runs[1] == runs[2], "names": [name for name, _, _ in runs[2]], "jax": "jax" in sys.modules}))
"""


def test_baselines_spread_over_processes_give_what_one_process_gives(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    # In a fresh process: this one may run JAX's threads, and then evaluate_all rightly will not fork.
    done = subprocess.run(
        [sys.executable, "-c", PARALLEL_EQUALS_SERIAL, str(tmp_path / "prepared")],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "same": True,
        "names": ["logreg", "tree", "forest", "knn5"],
        "jax": False,
    }


def test_a_long_silence_says_how_far_compare_is_and_what_is_still_at_work(monkeypatch, capsys):
    import re
    import time

    from quest.core import interrupts, progress
    from quest.stages import compare as stage

    monkeypatch.setattr(stage, "HEARTBEAT", 0.2)
    with stage.heartbeat(["tree", "forest", "slowpoke"]) as scored:
        scored()
        with interrupts.during("fitting slowpoke"):  # no model on the board says how far: the activities do
            time.sleep(0.6)
        with progress.working_on("slowpoke"):
            progress.fits_done(4, 16)
            time.sleep(0.6)
        scored()  # a line arrived: the next one is due a whole HEARTBEAT later
        time.sleep(0.1)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch(r"compare: 1 of 3 models scored, \d+s; at work: (fitting slowpoke|slowpoke 4 "
                                      r"of 16 fits, \d+s, about \d+s left)", x) for x in lines)  # fmt: skip
    assert "fitting slowpoke" in lines[0] and "slowpoke 4 of 16 fits" in lines[-1]
