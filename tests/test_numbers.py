"""Numbers at the edge: values that would overflow, networks that diverge, targets that cannot be learnt, and
each failure the generated tables of tests/test_fuzz.py found, kept as a named case."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.core.files import dvc_md5
from quest.data.artifacts import read_prepared
from quest.learners.base import Problem
from quest.learners.classic.baselines import Baseline
from quest.stages import prepare, train
from tests.conftest import repo_params
from tests.support import one_error
from tests.support import run_main as run

TINY = {"prepare": {"folds": 2, "repeats": 1}, "train": {"epochs": 3}, "mlflow": {"registered_model": ""}}


def table(tmp_path, frame: pd.DataFrame, **overrides) -> str:
    frame.to_csv(tmp_path / "data.csv", index=False)
    params = repo_params(data={"source": "csv", "path": "data.csv", "target": "y"}, **TINY)
    for section, values in overrides.items():
        params[section] = {**params[section], **values}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return str(tmp_path / "params.yaml")


def noise(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": rng.normal(size=n), "y": (a > 0).astype(int)})


def prepare_in(tmp_path, capsys, params: str) -> tuple[int, str]:
    return run("quest prepare", prepare.main, ["--params", params, "--out", str(tmp_path / "processed")], capsys)


def test_a_value_near_the_float_limit_is_refused_naming_column_and_row(tmp_path, capsys):
    """The issue's table: 1e308 in every tenth row used to pass prepare and end train in a NaN traceback."""
    frame = noise()
    frame.loc[::10, "a"] = 1e308
    code, stderr = prepare_in(tmp_path, capsys, table(tmp_path, frame))
    line = one_error(stderr, "quest prepare")
    assert code == 2
    assert "data.csv: column 'a' holds 1e+308 at row 1; quest takes numbers up to 1e+100" in line
    assert "take its log" in line and "data.drop" in line


def test_a_regression_target_with_one_value_is_refused(tmp_path, capsys):
    frame = noise().assign(y=3.5)
    code, stderr = prepare_in(tmp_path, capsys, table(tmp_path, frame))
    assert code == 2
    assert "target column 'y' holds a single value (3.5) in every row" in one_error(stderr, "quest prepare")


def test_a_regression_target_beyond_float32_is_refused(tmp_path, capsys):
    frame = noise().assign(y=lambda f: f["a"] * 1e35)
    code, stderr = prepare_in(tmp_path, capsys, table(tmp_path, frame, data={"task": "regression"}))
    assert code == 2
    assert "target column 'y' holds" in one_error(stderr, "quest prepare")
    assert "the network computes in float32" in stderr


def test_huge_but_legal_values_train_to_finite_scores(tmp_path, capsys):
    """1e90 is allowed: the statistics stay finite in float64, and so does everything after them."""
    frame = noise()
    frame["a"] *= 1e90
    code, stderr = prepare_in(tmp_path, capsys, table(tmp_path, frame))
    assert code == 0, stderr
    prepared = read_prepared(tmp_path / "processed")
    assert np.isfinite(prepared.x_train).all() and np.abs(prepared.x_train).max() < 10


def test_found_a_column_whose_values_all_fall_in_the_test_split(tmp_path, capsys):
    """Generated table 1: the only numeric column had no value in the training split; StandardScaler got no
    feature and raised ValueError. Now the column is left out, with a notice, and the others are used."""
    frame = noise(40)
    frame["c"] = np.nan
    frame.loc[0, "c"] = 1.0
    params = table(tmp_path, frame)
    test_rows = None
    for seed in range(50):  # a seed whose test split takes the one row with a value
        (tmp_path / "params.yaml").write_text(
            yaml.safe_dump({**yaml.safe_load(Path(params).read_text()), "seed": seed})
        )
        code, stderr = prepare_in(tmp_path, capsys, params)
        assert code == 0, stderr
        test_rows = np.load(tmp_path / "processed" / "test_rows.npy")
        if 0 in test_rows:
            break
    assert 0 in test_rows
    assert "column 'c' has no value in the training split: left out of the model inputs" in stderr
    schema = read_prepared(tmp_path / "processed").schema
    assert [f for f in schema.features if "c" in f.split("__")[-1]] == []


def test_found_a_test_value_far_outside_the_training_spread(tmp_path, capsys):
    """Generated table 2: a column all but constant in training (0 and 2.5e-64) got a scale of 6.5e-65, so a
    test value of 1.0 became 1.5e64, inf in float32. Standardised inputs are now held at 1e6."""
    frame = noise(60)
    frame["c"] = 0.0
    frame.loc[1, "c"] = 2.5e-64
    frame.loc[2:, "c"] = [1.0 if i % 7 == 0 else 0.0 for i in range(58)]
    code, stderr = prepare_in(tmp_path, capsys, table(tmp_path, frame))
    assert code == 0, stderr
    prepared = read_prepared(tmp_path / "processed")
    assert np.isfinite(prepared.x_test).all() and np.isfinite(prepared.x_train).all()
    assert np.abs(prepared.x_test).max() <= 1e6


def test_found_knn15_on_fewer_than_15_rows(capsys, monkeypatch):
    """Generated table 3: compare's knn15 raised `Expected n_neighbors <= n_samples_fit` on a fold of 7 rows.
    k now falls to the rows there, with a notice."""
    from quest.learners.classic import baselines

    monkeypatch.setattr(baselines, "_CAPPED", set())  # notices come once per process
    x, y = np.random.default_rng(0).normal(size=(7, 2)), np.array([0, 1, 0, 1, 0, 1, 1])
    model = Baseline("knn15").build(Problem("classification", 2, 2), seed=0, hyper={}).fit(x, y)
    assert model.output(x).shape == (7, 2)
    assert "k-nearest neighbours with k=15 fits 7 rows, so k is 7 there" in capsys.readouterr().err


@pytest.mark.parametrize("counts", [(8, 3), (9, 1), (4, 4, 2), (8, 1, 1)], ids=["3 rows", "1 row", "3 classes", "1+1"])
def test_found_svm_rbf_with_a_class_of_fewer_than_5_rows(counts):
    """Generated tables 4 and 5: svm_rbf's Platt scaling ran 5 stratified folds, which a class of fewer than 5
    rows breaks (`n_splits=5 cannot be greater than the number of members in each class`, or a fold without a
    class). The folds now follow the rarest class, and a class of one row calibrates in-sample."""
    y = np.concatenate([np.full(count, label) for label, count in enumerate(counts)])
    x = np.random.default_rng(1).normal(size=(len(y), 2))
    model = Baseline("svm_rbf").build(Problem("classification", len(counts), 2), seed=0, hyper={}).fit(x, y)
    proba = model.output(x)
    assert proba.shape == (len(y), len(counts)) and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("engine", ["fast", "fit"])
def test_training_that_diverges_stops_in_one_line(tmp_path, capsys, monkeypatch, engine):
    """SGD at learning rate 10 on a regression: the loss is infinite in the first epoch. The stage names the
    network and the epoch, says what to try, exits 2, ends its MLflow run FAILED with the reason, and leaves
    the earlier outputs whole."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # MLflow sets it in-process
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    frame = pd.DataFrame({"a": a, "b": rng.normal(size=200) * 50, "y": 3 * a + rng.normal(size=200)})
    params = table(tmp_path, frame, train={"optimizer": "sgd", "learning_rate": 10.0, "engine": engine})
    assert prepare_in(tmp_path, capsys, params)[0] == 0
    models, cv = tmp_path / "models", tmp_path / "reports" / "cv_mlp.json"
    models.mkdir()
    cv.parent.mkdir()
    (models / "mlp.keras").write_bytes(b"the earlier model")
    cv.write_text("{}\n")
    before = dvc_md5(models), dvc_md5(cv)
    argv = ["--params", params, "--data", str(tmp_path / "processed"), "--model", str(models / "mlp.keras")]
    code, stderr = run("quest train", train.main, [*argv, "--cv-out", str(cv)], capsys)
    line = one_error(stderr, "quest train")
    assert code == 2
    # which curve overflows first (the training loss or the validation loss) depends on the dropout masks
    assert re.search(r"the MLP diverged: the CV network 1/2's (val_)?loss is inf at epoch 1;", line), line
    assert "try a lower train.learning_rate (this network's is 10)" in line and "rescale 'numeric__b'" in line
    assert (dvc_md5(models), dvc_md5(cv)) == before
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        found = db.execute(
            "select r.status, t.value from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'quest.failure'"
        ).fetchall()
    assert found == [("FAILED", line.removeprefix("quest train: error: "))]


def test_divergence_names_the_final_network_and_the_widest_input():
    from dataclasses import replace

    from quest.learners.callbacks import NonFiniteLoss
    from quest.learners.jobs import Job
    from quest.learners.mlp.learner import diverged
    from quest.learners.registry import load_params
    from tests.conftest import REPO

    spec = replace(load_params(REPO / "params.yaml").train, learning_rate=0.5)
    x = np.array([[0.1, -40.0], [0.2, 3.0]], dtype=np.float32)
    job = Job(fit_rows=np.array([0, 1]), validation_rows=np.array([], dtype=int), seed=1)
    found = NonFiniteLoss(job=0, epoch=4, curve="val_loss", value=float("nan"))
    message = diverged(found, x, [job], label="final", spec=spec, feature_names=("p", "q"))
    assert message.startswith("the MLP diverged: the final network's val_loss is nan at epoch 4;")
    assert "(this network's is 0.5), or rescale 'q', its most extreme input (up to 40 after scaling)" in message


def test_found_a_class_that_misses_the_test_split(tmp_path, capsys):
    """Generated table 6: 6 rows of class 0 and 2 of class 1 with prepare.test_size 0.25: stratification rounds
    the 2 test rows to class 0 alone, and evaluate's ROC curve then had no line to draw (StopIteration). The
    split is now refused in one line."""
    frame = pd.DataFrame({"c0": [0.0] * 8, "y": [0, 0, 0, 0, 0, 0, 1, 1]})
    params = table(tmp_path, frame, prepare={"test_size": 0.25})
    code, stderr = prepare_in(tmp_path, capsys, params)
    assert code == 2
    line = one_error(stderr, "quest prepare")
    assert "the stratified test split of 2 rows holds no row of class '1' (2 of 8 rows)" in line
