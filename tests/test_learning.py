import json

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.data.splits import subsample
from quest.evaluation.curves import overtakes, summarise
from quest.stages.learning import main as learning_main
from quest.stages.prepare import main as prepare_main
from tests.conftest import repo_params


def test_subsample_is_seeded_exact_stratified_and_a_subset():
    rows = np.arange(100, 300)
    y = np.zeros(400, dtype=int)
    y[250:] = 1  # rows 100..249 are class 0 (150), 250..299 class 1 (50)
    chosen = subsample(rows, y, 0.25, task="classification", seed=7)
    assert len(chosen) == 50 and set(chosen) <= set(rows)
    assert np.bincount(y[chosen]).tolist() == [37, 13] or np.bincount(y[chosen]).tolist() == [38, 12]
    np.testing.assert_array_equal(chosen, subsample(rows, y, 0.25, task="classification", seed=7))
    assert not np.array_equal(chosen, subsample(rows, y, 0.25, task="classification", seed=8))
    assert subsample(rows, y, 1.0, task="classification", seed=7) is rows
    assert len(subsample(rows, y.astype(float), 0.1, task="regression", seed=0)) == 20


def test_every_class_keeps_a_member_at_tiny_fractions():
    y = np.array([0] * 95 + [1] * 5)
    chosen = subsample(np.arange(100), y, 0.05, task="classification", seed=0)
    assert set(y[chosen]) == {0, 1} and len(chosen) == 5


def test_the_full_point_is_the_comparisons_own_fold_scores_and_overtaking_is_read_off_the_means():
    partial = pd.DataFrame(
        {
            "model": ["mlp", "mlp", "logreg", "logreg"],
            "fraction": [0.5, 0.5, 0.5, 0.5],
            "split": [1, 2, 1, 2],
            "n_train": [50, 50, 50, 50],
            "score": [0.70, 0.80, 0.90, 0.80],
        }
    )
    full = {"mlp": [0.95, 0.93, 0.10], "logreg": [0.90, 0.90, 0.99]}  # the third split is past `limit`
    table = summarise(partial, full, limit=2, n_full=100)
    mlp = table[table["model"] == "mlp"].set_index("n_train")
    assert mlp.loc[50, "mean"] == pytest.approx(0.75) and mlp.loc[50, "std"] == pytest.approx(0.05)
    assert mlp.loc[100, "mean"] == pytest.approx(0.94)
    result = overtakes(table, "accuracy")
    assert result["mlp_ahead_by_size"] == {"50": False, "100": True} and result["from_n_train"] == 100
    lower = overtakes(table, "rmse")  # lower is better: the MLP leads at 50 rows only, so never "from then on"
    assert lower["mlp_ahead_by_size"] == {"50": True, "100": False} and lower["from_n_train"] is None


def test_stage_scores_every_model_at_each_fraction_on_the_same_folds(tmp_path, monkeypatch, capsys):
    from quest.learners.classic import baselines

    monkeypatch.setattr(baselines, "_CAPPED", set())  # notices come once per process
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = repo_params(
        prepare={"folds": 2, "repeats": 1},
        train={"hidden_layers": [8], "epochs": 3, "early_stopping": {"patience": 2, "validation_fraction": 0.2}},
        compare={"models": ["logreg", "knn15"]},
        learning={"fractions": [0.05, 0.5, 1.0], "repeats": 1},
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    prepare_main(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "processed")])
    reports = tmp_path / "reports"
    reports.mkdir()
    folds = {"mlp": {"accuracy": [0.9, 0.8]}, "logreg": {"accuracy": [0.7, 0.6]}, "knn15": {"accuracy": [0.5, 0.4]}}
    (reports / "cv_folds.json").write_text(json.dumps(folds))
    argv = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "processed"), "--reports", str(reports)]
    learning_main(argv)

    table = pd.read_csv(reports / "learning" / "curve.csv")
    assert sorted(table["fraction"].unique()) == [0.05, 0.5, 1.0]
    full = table[table["fraction"] == 1.0].set_index("model")["mean"]
    assert full.to_dict() == pytest.approx({"mlp": 0.85, "logreg": 0.65, "knn15": 0.45})
    smallest = table[table["fraction"] == 0.05].set_index("model")
    # 15 neighbours on ~11 rows: k falls to the rows there, and a notice says so
    assert 0.3 <= smallest.loc["knn15", "mean"] <= 1.0
    assert "k-nearest neighbours with k=15 fits" in capsys.readouterr().err
    assert 0.5 <= smallest.loc["logreg", "mean"] <= 1.0 and 0.3 <= smallest.loc["mlp", "mean"] <= 1.0
    assert list(pd.read_csv(reports / "learning" / "by_size.csv").columns) == ["n_train", "mlp", "logreg", "knn15"]
    assert (reports / "learning" / "learning_curve.png").stat().st_size > 10_000
    summary = json.loads((reports / "learning" / "summary.json").read_text())
    assert summary["enabled"] and summary["splits"] == 2


def test_empty_fractions_turn_the_stage_off(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(learning={"fractions": []})))
    learning_main(["--params", str(tmp_path / "params.yaml"), "--reports", str(tmp_path / "reports")])
    assert [p.name for p in (tmp_path / "reports" / "learning").iterdir()] == ["summary.json"]
    assert json.loads((tmp_path / "reports" / "learning" / "summary.json").read_text()) == {"enabled": False}
