"""Every stage's user errors are one line, not only prepare's (tests/test_bad_input.py): each stage here gets a
bad input of its own, exits 2 with one `quest STAGE: error:` line and no traceback, and leaves its earlier
outputs as they were. `quest predict` has its own in tests/test_predict.py, the served model its 400s in
tests/test_serving.py, and train's diverging network is in tests/test_numbers.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from quest.core.files import dvc_md5
from quest.stages import compare, evaluate, learning, prepare, report, train, tune
from tests.conftest import repo_params
from tests.support import one_error
from tests.support import run_main as run

TINY = {
    "prepare": {"folds": 2, "repeats": 1},
    "train": {"epochs": 2},
    "compare": {"models": ["logreg", "tree"]},
    "mlflow": {"registered_model": ""},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """The embedded default through prepare, train, evaluate and compare, once, at tiny settings."""
    root = tmp_path_factory.mktemp("pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**TINY)))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        for stage in (prepare, train, evaluate, compare):
            stage.main([])
    return root


@pytest.fixture
def repo(pipeline, tmp_path, monkeypatch) -> Path:
    """A copy of the pipeline's results to break."""
    root = tmp_path / "repo"
    shutil.copytree(pipeline, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


def refused(stage, prog: str, capsys, *argv: str) -> str:
    """The stage's one error line, after checking exit 2 and no traceback."""
    code, stderr = run(prog, stage.main, list(argv), capsys)
    assert code == 2, stderr
    return one_error(stderr, prog)


def set_params(root: Path, **overrides) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**{**TINY, **overrides})))


def test_train_with_prepared_data_cut_short(repo, capsys):
    x = repo / "data" / "processed" / "X_train.npy"
    x.write_bytes(x.read_bytes()[:100])
    before = dvc_md5(repo / "models")
    line = refused(train, "quest train", capsys)
    assert "X_train.npy: cannot be read as a NumPy array" in line and "dvc repro prepare" in line
    assert dvc_md5(repo / "models") == before


def test_evaluate_a_model_trained_on_another_table(repo, capsys):
    set_params(repo, data={"source": "wine"})
    prepare.main(["--out", "other"])
    before = dvc_md5(repo / "reports")
    line = refused(evaluate, "quest evaluate", capsys, "--data", "other")
    assert "the model takes 30 inputs but other holds 13 features" in line and "dvc repro train" in line
    assert dvc_md5(repo / "reports") == before


def test_compare_with_the_scores_of_another_prepare(repo, capsys):
    cv = repo / "reports" / "cv_mlp.json"
    scores = json.loads(cv.read_text())
    scores["folds"] = {name: values[:1] for name, values in scores["folds"].items()}
    cv.write_text(json.dumps(scores))
    before = dvc_md5(repo / "reports" / "comparison.csv")
    line = refused(compare, "quest compare", capsys)
    assert "cv_mlp.json: holds 1 accuracy scores but the prepared data has 2 splits (2 folds)" in line
    assert dvc_md5(repo / "reports" / "comparison.csv") == before


def test_learning_with_damaged_fold_scores(repo, capsys):
    set_params(repo, learning={"fractions": [0.5]})
    (repo / "reports" / "cv_folds.json").write_text('{"mlp": {"accuracy": [0.9')
    line = refused(learning, "quest learning", capsys)
    assert "cv_folds.json: not valid JSON" in line
    assert not (repo / "reports" / "learning").exists()


def test_tune_with_a_store_that_cannot_be_opened(repo, capsys):
    set_params(repo, tune={"trials": 2, "storage": "nonsense://nowhere"})
    line = refused(tune, "quest tune", capsys)
    assert "tune.storage nonsense://nowhere cannot be opened" in line
    assert not (repo / "reports" / "tuning").exists()


def test_report_with_a_damaged_model_config(repo, capsys):
    (repo / "models" / "config.json").write_text("[")
    line = refused(report, "quest report", capsys)
    assert "config.json: not valid JSON" in line and "dvc repro" in line
    assert not (repo / "reports" / "report.html").exists()


def test_compare_refuses_non_finite_scores(repo, capsys):
    metrics = repo / "reports" / "metrics.json"
    found = json.loads(metrics.read_text())
    found["mlp"]["test"]["accuracy"] = float(np.nan)
    metrics.write_text(json.dumps(found))  # json writes NaN, which JSON readers accept
    line = refused(compare, "quest compare", capsys)
    assert "metrics.json: mlp.test.accuracy is not all finite numbers" in line
