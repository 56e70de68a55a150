"""The learner interface: one registry, and a model added there (a toy one with a params section of its own, in a
test) takes part in compare, learning and tune with no stage edited; every learner is scored by the same function on
the shared splits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.core.errors import QuestError, run_cli
from quest.evaluation.scoring import Scored, cross_validate, scores_of
from quest.learners import registry
from quest.learners.base import Learner, Problem
from quest.learners.classic.baselines import Baseline
from quest.learners.registry import Registered, params_from_dict
from quest.params import require
from quest.stages.compare import main as compare_main
from quest.stages.learning import main as learning_main
from quest.stages.prepare import main as prepare_main
from quest.stages.tune import main as tune_main
from tests.conftest import repo_params


@dataclass(frozen=True)
class PriorParams:
    """The toy's own params.yaml section, `prior:`, as a new network's would be."""

    shrink: float  # towards uniform shares: 0 keeps the training rows' shares, 1 is uniform

    def __post_init__(self) -> None:
        require(0 <= self.shrink <= 1, "prior.shrink", "in [0, 1]", self.shrink)


class Prior(Learner):
    """A toy classic model: every row gets the training rows' class shares, shrunk towards uniform."""

    name = "prior"
    kind = "classic"

    def __init__(self, fitted: Fitted, spec: PriorParams = PriorParams(shrink=0.0)) -> None:
        self.fitted, self.spec = fitted, spec

    def describe(self, problem: Problem) -> str:
        return "class shares of the training rows"

    def build(self, problem: Problem, *, seed: int, hyper: Mapping[str, Any]) -> PriorModel:
        return PriorModel(problem.n_classes, self.fitted, **{"shrink": self.spec.shrink, **hyper})


class Fitted:
    """The size of every fit a model is asked for, in order; in a file, as compare forks its workers."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, rows: int) -> None:
        with self.path.open("a") as out:
            out.write(f"{rows}\n")

    def sizes(self) -> list[int]:
        return [int(line) for line in self.path.read_text().split()] if self.path.exists() else []


class PriorModel:
    def __init__(self, n_classes: int, fitted: Fitted, shrink: float = 0.0) -> None:
        self.n_classes, self.fitted, self.shrink = n_classes, fitted, shrink

    def fit(self, x: np.ndarray, y: np.ndarray) -> PriorModel:
        self.fitted.append(len(y))
        shares = np.bincount(y, minlength=self.n_classes) / len(y)
        self.shares = (1 - self.shrink) * shares + self.shrink / self.n_classes
        return self

    def output(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.shares, (len(x), 1))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Fitted:
    """The toy, registered as a new model is: one line, with the dataclass of its section."""
    fitted = Fitted(tmp_path / "fitted.txt")
    registered = Registered(lambda params: Prior(fitted, params.section("prior")), PriorParams)
    monkeypatch.setitem(registry.LEARNERS, "prior", registered)
    return fitted


def write_params(root: Path, **overrides: Any) -> Path:
    toy = {"prior": {"shrink": 0.0}} if "prior" in registry.LEARNERS else {}  # the toy's section, while registered
    raw = repo_params(
        prepare={"folds": 2, "repeats": 1},
        train={"hidden_layers": [4], "epochs": 2, "early_stopping": {"patience": 0, "validation_fraction": 0.2}},
        mlflow={"experiment": "quest", "registered_model": ""},
        **{**toy, **overrides},
    )
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    (root / "dvc.yaml").write_text("stages: {}\n")  # the repo root for quest.core.paths.repo_root
    return root / "params.yaml"


def prepared_with_an_mlp(root: Path, params: Path) -> tuple[list[str], Path]:
    """Prepared data, and the MLP's outputs from train and evaluate as compare reads them (made up here)."""
    data, reports = root / "data", root / "reports"
    prepare_main(["--params", str(params), "--out", str(data)])
    reports.mkdir()
    folds = {"accuracy": [0.9, 0.8], "balanced_accuracy": [0.9, 0.8], "f1": [0.9, 0.8], "roc_auc": [0.9, 0.9],
             "log_loss": [0.3, 0.4]}  # fmt: skip
    (reports / "cv_mlp.json").write_text(json.dumps({"model": "mlp", "folds": folds}))
    (reports / "metrics.json").write_text(json.dumps({"mlp": {"test": {name: v[0] for name, v in folds.items()}}}))
    (root / "mlp.keras").write_bytes(b"the MLP run is found by this file's hash")
    return ["--params", str(params), "--data", str(data), "--reports", str(reports)], reports


def test_a_registered_toy_learner_takes_part_in_compare_learning_and_tune(tmp_path, monkeypatch, toy):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = write_params(
        tmp_path,
        prior={"shrink": 1.0},  # uniform shares: every log loss is log 2, whatever the fold
        compare={"models": ["logreg", "prior"], "metric": "log_loss"},
        learning={"fractions": [0.5, 1.0], "repeats": 1},
    )
    argv, reports = prepared_with_an_mlp(tmp_path, params)
    compare_main([*argv, "--model", str(tmp_path / "mlp.keras")])
    table = pd.read_csv(reports / "comparison.csv").set_index("model")
    assert list(table.index) == ["mlp", "logreg", "prior"]
    assert table.loc["prior", "cv_mean"] == pytest.approx(np.log(2))  # its section reached its models
    from quest.data.artifacts import read_prepared

    prepared = read_prepared(tmp_path / "data")
    cv_fits = [int(training.sum()) for _, training, _ in prepared.splits()]
    assert toy.sizes() == [*cv_fits, len(prepared.y_train)]  # one fit per shared split, then one on the whole split
    assert "| prior | classic | class shares of the training rows |" in (reports / "comparison.md").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quest")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`quest.model` = 'prior'")
    assert len(runs) == 1 and runs[0].data.tags["quest.kind"] == "classic"
    assert runs[0].data.params["estimator"] == "class shares of the training rows"

    learning_main(argv)
    curve = pd.read_csv(reports / "learning" / "curve.csv")
    assert sorted(curve.loc[curve["model"] == "prior", "fraction"]) == [0.5, 1.0]
    assert list(pd.read_csv(reports / "learning" / "by_size.csv").columns) == ["n_train", "mlp", "logreg", "prior"]

    spaces = {"mlp": {"learning_rate": [0.01]}, "logreg": {"C": [1.0]}, "prior": {"shrink": [0.0, 0.5]}}
    raw = yaml.safe_load(params.read_text())
    raw["tune"].update(trials=2, spaces=spaces)
    params.write_text(yaml.safe_dump(raw))
    tune_main(argv)
    trials = pd.read_csv(reports / "tuning" / "trials.csv")
    assert trials["model"].tolist() == ["mlp", "mlp", "logreg", "logreg", "prior", "prior"]
    assert {json.loads(p)["shrink"] for p in trials.loc[trials["model"] == "prior", "params"]} <= {0.0, 0.5}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"shrnk": 0.5}, "params.yaml: unknown key prior.shrnk; did you mean prior.shrink?"),
        ({"shrink": 2.0}, "params.yaml: prior.shrink must be in [0, 1] (got 2.0)"),
        ({"shrink": "half"}, "params.yaml: prior.shrink must be a number (got 'half')"),
        (None, "params.yaml: missing key prior"),
    ],
)
def test_a_registered_learners_own_section_is_validated_in_one_line(tmp_path, toy, capsys, section, message):
    raw = repo_params(**({"prior": section} if section is not None else {}))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    with pytest.raises(QuestError) as raised:
        registry.load_params(params)
    assert str(raised.value) == message
    capsys.readouterr()
    argv = ["--params", str(params), "--data", str(tmp_path / "data"), "--reports", str(tmp_path / "reports")]
    with pytest.raises(SystemExit) as stopped:  # a stage that makes learners, behind the `quest` command's wrapper
        run_cli("quest compare", compare_main, argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"quest compare: error: {message}\n"
    assert not (tmp_path / "reports").exists()
    # prepare makes no learner and reads only the pipeline's sections: it depends on no learner's code (dvc.yaml)
    prepare_main(["--params", str(params), "--out", str(tmp_path / "data")])
    assert (tmp_path / "data").is_dir()


def test_a_section_nobody_registered_is_an_unknown_key():
    raw = repo_params(prior={"shrink": 0.0})  # the toy's section, with the toy not registered
    with pytest.raises(QuestError, match=r"^params.yaml: unknown key prior; allowed: seed, data, .*, realmlp, tabm$"):
        params_from_dict(raw)


def test_every_learner_is_scored_on_the_shared_splits(tmp_path, toy):
    params = write_params(tmp_path)
    prepare_main(["--params", str(params), "--out", str(tmp_path / "data")])
    from quest.data.artifacts import read_prepared

    prepared = read_prepared(tmp_path / "data")
    problem = Problem.of(prepared)
    folds = cross_validate(Prior(toy), prepared, problem, seed=0)
    splits = list(prepared.splits())
    assert toy.sizes() == [int(training.sum()) for _, training, _ in splits]  # one fit per split, on its training rows
    majority = [np.bincount(prepared.y_train[training]).argmax() for _, training, _ in splits]
    expected = [
        float(np.mean(prepared.y_train[held] == label)) for (_, _, held), label in zip(splits, majority, strict=True)
    ]
    assert folds["accuracy"] == pytest.approx(expected)


def test_a_learner_draws_its_seeds_per_split_and_its_scores_are_their_mean(tmp_path):
    class Seeded(Prior):
        def seeds(self, seed: int, index: int) -> tuple[int, ...]:
            return (seed + index, seed + index + 100)

        def build(self, problem, *, seed, hyper):
            return PriorModel(problem.n_classes, self.fitted, shrink=0.0 if seed % 2 == 0 else 1.0)

    fitted = Fitted(tmp_path / "fitted.txt")
    x = np.zeros((6, 1))
    y = np.array([0, 0, 0, 0, 1, 1])
    cell = Scored(rows=np.arange(6), targets=(y,), inputs=(x,), index=1)
    (found,) = scores_of(Seeded(fitted), x, y, [cell], Problem("classification", 2, 1), seed=0)
    assert fitted.sizes() == [6, 6]  # two models: seeds 1 and 101, shrink 1.0 both (odd): uniform shares
    assert found[0]["log_loss"] == pytest.approx(np.log(2))


def test_the_registry_refuses_an_unknown_name_and_skips_a_missing_library(monkeypatch, capsys):
    params = params_from_dict(repo_params(compare={"models": ["logreg", "lasso"]}))
    with pytest.raises(QuestError, match=r"compare\.models must be a list drawn from logreg, .*\(got 'lasso'\)"):
        registry.entrants(params, who="compare")
    from quest.learners.gbdt.xgboost import XGBoost

    monkeypatch.setattr(XGBoost, "requires", "no_such_library_for_quest")
    params = params_from_dict(repo_params(compare={"models": ["logreg", "xgboost"]}))
    assert [learner.name for learner in registry.entrants(params, who="compare")] == ["logreg"]
    assert "compare: notice: skipping xgboost: its library (no_such_library_for_quest) is not installed" in (
        capsys.readouterr().err
    )


def test_each_learner_says_what_it_is():
    params = params_from_dict(repo_params())
    learners = [registry.learner(name, params) for name in registry.LEARNERS]
    others = [*registry.BASELINES, "xgboost", "lightgbm", "catboost", "realmlp", "tabm"]
    assert [learner.name for learner in learners] == ["mlp", *others]
    assert [learner.kind for learner in learners] == ["neural"] + ["classic"] * (len(others) - 2) + ["neural"] * 2
    assert [learner.name for learner in learners if learner.trains_together] == ["mlp", "realmlp", "tabm"]
    assert [learner.name for learner in learners if learner.fills_cores] == ["catboost"]
    stand_ins = [learner.name for learner in learners if learner.has_stand_in()]
    assert stand_ins == ["forest", "boosting", "svm_rbf", "realmlp"]
    assert isinstance(registry.subject(params), Learner) and registry.others() == others
    assert list(params.compare.models) == others[:-1]  # every row is on by default but TabM (opt-in: its cost)
    assert Baseline("tree").describe(Problem("regression", 0, 3)) == "decision tree"


def test_every_keras_class_quest_registers_is_handed_to_keras_where_a_network_is_loaded():
    import ast

    from tests.imports import sources

    registered = {
        node.name
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any("register_keras_serializable" in ast.unparse(d) for d in node.decorator_list)
    }
    classes = registry.keras_classes()
    assert len(registered) == 15
    assert {c.__name__ for c in classes.values()} == registered
    assert all(name == f"quest>{c.__name__}" for name, c in classes.items())  # the names the saved files use
