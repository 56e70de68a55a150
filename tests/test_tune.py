"""The tune stage: sampling, the budget curve, determinism, the MLflow layout, and its user errors.

One real search (moons, 4 models x 3 trials, a 3-epoch MLP) runs twice per module, into one MLflow store.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from quest.core.errors import QuestError
from quest.learners import registry
from quest.learners.base import Problem
from quest.learners.classic.baselines import Baseline
from quest.learners.mlp.learner import MLP
from quest.learners.registry import params_from_dict
from quest.stages.prepare import main as prepare_main
from quest.stages.tune import main as tune_main
from quest.tuning.search import Plan, TrialResult, TuneData, best_so_far, best_trial, scorer, tuned_learners
from quest.tuning.space import sample_space
from tests.conftest import REPO, repo_params

MODELS = ["mlp", "logreg", "knn5", "tree"]
TRIALS = 3
MLP_SPACE = {
    "hidden_layers": [[8], [16, 8]],
    "learning_rate": {"low": 0.001, "high": 0.05, "log": True},
    "batch_size": [16, 32],
}


def write_params(path: Path, trials: int = TRIALS, spaces: dict | None = None) -> Path:
    raw = repo_params(
        data={"source": "synthetic", "synthetic": {"kind": "moons", "n_samples": 200}},
        prepare={"folds": 2, "repeats": 1},
        train={"epochs": 3, "hidden_layers": [8], "batch_size": 32, "device": "cpu"},
        compare={"models": MODELS[1:]},
        tune={"trials": trials},
    )
    raw["tune"]["spaces"]["mlp"] = MLP_SPACE  # replaced, not merged: only these three keys vary
    if spaces is not None:
        raw["tune"]["spaces"] = spaces
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("tune")
    params = write_params(root / "params.yaml")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        prepare_main(["--params", str(params), "--out", str(root / "data")])
        for run in ("first", "second"):
            tune_main(["--params", str(params), "--data", str(root / "data"), "--reports", str(root / run)])
    return SimpleNamespace(first=root / "first" / "tuning", second=root / "second" / "tuning", uri=uri)


def test_off_writes_only_a_disabled_summary_and_imports_no_heavy_library(tmp_path: Path):
    params = write_params(tmp_path / "params.yaml", trials=0)
    stale = tmp_path / "reports" / "tuning" / "trials.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier search\n")
    code = (
        "import sys; from quest.stages.tune import main; "
        f"main(['--params', {str(params)!r}, '--data', 'no-such-dir', '--reports', {str(tmp_path / 'reports')!r}]); "
        "print(sorted(m for m in ('keras', 'mlflow', 'optuna', 'tensorflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert done.stderr.strip().splitlines()[-1] == (
        "tune: off (tune.trials is 0); set tune.trials to run an equal-budget search"
    )
    assert sorted(p.name for p in stale.parent.iterdir()) == ["summary.json"]
    assert json.loads((stale.parent / "summary.json").read_text()) == {"enabled": False}


def test_a_search_records_every_trial_and_the_best_by_validation_test_curve(tuned: SimpleNamespace):
    trials = pd.read_csv(tuned.first / "trials.csv")
    assert list(trials.columns) == ["model", "trial", "validation", "test", "best_so_far_test", "params"]
    assert trials["model"].tolist() == [name for name in MODELS for _ in range(TRIALS)]
    assert trials["trial"].tolist() == list(range(1, TRIALS + 1)) * len(MODELS)
    assert trials[["validation", "test"]].notna().all().all()
    assert trials[["validation", "test"]].apply(lambda c: c.between(0.0, 1.0)).all().all()
    assert (trials.loc[trials["model"] != "mlp", "validation"] > 0.7).all()  # the baselines learn the moons
    for name, rows in trials.groupby("model", sort=False):
        validation, test = rows["validation"].tolist(), rows["test"].tolist()
        expected = [test[max(range(n + 1), key=lambda i: (validation[i], -i))] for n in range(TRIALS)]
        assert rows["best_so_far_test"].tolist() == expected, name
    mlp_values = [json.loads(text) for text in trials.loc[trials["model"] == "mlp", "params"]]
    assert all(set(v) == set(MLP_SPACE) and v["hidden_layers"] in ([8], [16, 8]) for v in mlp_values)
    assert all(0.001 <= v["learning_rate"] <= 0.05 and v["batch_size"] in (16, 32) for v in mlp_values)
    assert len({json.dumps(v, sort_keys=True) for v in mlp_values}) == TRIALS  # random search, not one repeated

    budget = pd.read_csv(tuned.first / "budget.csv")
    assert list(budget.columns) == ["trial", *MODELS]
    assert budget["trial"].tolist() == list(range(1, TRIALS + 1))
    for name in MODELS:
        assert budget[name].tolist() == trials.loc[trials["model"] == name, "best_so_far_test"].tolist()
    assert (tuned.first / "budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((tuned.first / "summary.json").read_text())
    assert (summary["enabled"], summary["metric"], summary["trials"]) == (True, "accuracy", TRIALS)
    assert summary["validation_fraction"] == 0.2
    assert list(summary["models"]) == sorted(MODELS)
    for name, best in summary["models"].items():
        rows = trials[trials["model"] == name]
        first_best = rows.loc[rows["validation"].idxmax()]
        assert best["validation"] == pytest.approx(first_best["validation"], abs=1e-6)
        assert best["test"] == pytest.approx(first_best["test"], abs=1e-6)
        assert best["test"] == pytest.approx(rows["best_so_far_test"].iloc[-1], abs=1e-6)
        assert best["best_params"] == json.loads(first_best["params"])


def test_the_same_seed_gives_the_same_bytes(tuned: SimpleNamespace):
    for name in ("trials.csv", "budget.csv", "summary.json", "budget.png"):
        assert (tuned.first / name).read_bytes() == (tuned.second / name).read_bytes(), name


def test_mlflow_has_one_parent_per_model_with_a_nested_run_per_trial(tuned: SimpleNamespace):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tuned.uri)
    experiment = client.get_experiment_by_name("quest")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`quest.stage` = 'tune'")
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert sorted(run.info.run_name for run in parents) == sorted(f"tune · {name}" for name in MODELS * 2)
    budget = pd.read_csv(tuned.first / "budget.csv")
    trials = pd.read_csv(tuned.first / "trials.csv")
    for parent in parents:
        name = parent.data.tags["quest.model"]
        children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(run.info.run_name for run in children) == [f"{name} · trial {n}" for n in range(1, TRIALS + 1)]
        rows = trials[trials["model"] == name].set_index("trial")
        for child in children:
            n = int(child.data.tags["quest.trial"])
            assert child.data.metrics["validation_score"] == pytest.approx(rows.loc[n, "validation"], abs=1e-6)
            assert child.data.metrics["test_score"] == pytest.approx(rows.loc[n, "test"], abs=1e-6)
            assert set(child.data.params) == set(json.loads(rows.loc[n, "params"]))
        history = client.get_metric_history(parent.info.run_id, "best_so_far_test")
        assert [point.step for point in sorted(history, key=lambda p: p.step)] == list(range(1, TRIALS + 1))
        assert [point.value for point in sorted(history, key=lambda p: p.step)] == pytest.approx(
            budget[name].tolist(), abs=1e-6
        )
        assert parent.data.params["trials"] == str(TRIALS)
        assert parent.data.metrics["best_test"] == pytest.approx(budget[name].iloc[-1], abs=1e-6)
        artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
        assert {"space.json", "budget.png", "trials.csv"} <= artifacts


def test_list_valued_choices_travel_as_strings_and_come_back_as_tuples():
    space = {"hidden_layers": [[32], [64, 32]], "activation": ["relu", "tanh"], "batch_size": [16, 32]}
    fixed = optuna.trial.FixedTrial({"hidden_layers": "64-32", "activation": "tanh", "batch_size": 16})
    assert sample_space(fixed, space) == {"hidden_layers": (64, 32), "activation": "tanh", "batch_size": 16}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    numbers = {"units": {"low": 2, "high": 9}, "rate": {"low": 1e-4, "high": 1e-1, "log": True}}
    for _ in range(8):
        trial = study.ask()
        values = sample_space(trial, {**space, **numbers})
        assert values["hidden_layers"] in ((32,), (64, 32))
        assert trial.params["hidden_layers"] in ("32", "64-32")
        assert isinstance(values["units"], int) and 2 <= values["units"] <= 9
        assert isinstance(values["rate"], float) and 1e-4 <= values["rate"] <= 1e-1
        study.tell(trial, 0.0)


def test_a_tuned_model_without_a_space_is_a_user_error(tmp_path: Path):
    spaces = repo_params()["tune"]["spaces"]
    del spaces["tree"]
    params = write_params(tmp_path / "params.yaml", spaces=spaces)
    with pytest.raises(QuestError, match=r"tune\.spaces\.tree is missing"):
        tune_main(["--params", str(params), "--data", str(tmp_path / "none"), "--reports", str(tmp_path)])
    assert not (tmp_path / "tuning").exists()


def test_spaces_are_checked_before_any_trial_runs():
    params = params_from_dict(repo_params(compare={"models": ["tree"]}))
    problem = Problem("classification", n_classes=2, n_features=2)
    with pytest.raises(QuestError, match=r"tune\.spaces\.mlp\.hidden_layers must be a list of layer-size lists"):
        MLP(params.train, seed=0).check_space({"hidden_layers": [32, 64]}, problem)
    with pytest.raises(QuestError, match=r"tune\.spaces\.mlp\.epochs must be one of the train keys"):
        MLP(params.train, seed=0).check_space({"epochs": [1, 2]}, problem)
    with pytest.raises(QuestError, match=r"tune\.spaces\.knn5: .*leaf_count"):
        Baseline("knn5").check_space({"leaf_count": [1, 2]}, problem)
    assert [learner.name for learner in tuned_learners(params, who="tune")] == ["mlp", "tree"]
    unknown = params_from_dict(repo_params(tune={"spaces": {"lasso": {}}}))
    with pytest.raises(QuestError, match=r"tune\.spaces must be models drawn from mlp, logreg,"):
        tuned_learners(unknown, who="tune")


def test_best_so_far_takes_the_earliest_best_validation_and_skips_failures():
    nan = math.nan
    validation = [nan, 0.7, 0.9, 0.9, 0.8, 0.95]
    test = [nan, 0.60, 0.80, 0.99, 0.70, 0.85]
    assert best_so_far(validation, test, lower_is_better=False) == pytest.approx(
        [nan, 0.60, 0.80, 0.80, 0.80, 0.85], nan_ok=True
    )
    assert best_so_far([3.0, 1.0, 2.0], [30.0, 10.0, 20.0], lower_is_better=True) == [30.0, 10.0, 10.0]
    results = [TrialResult(i + 1, {}, v, t) for i, (v, t) in enumerate(zip(validation, test, strict=True))]
    assert best_trial(results, lower_is_better=False).trial == 6
    assert best_trial(results[:4], lower_is_better=False).trial == 3
    assert best_trial(results[:1], lower_is_better=False) is None


def plan_of(
    learner, data: TuneData, space: dict, *, metric: str, trials: int, seed: int, study: str, together: int = 1
):
    """A tuning plan for one learner on `data` with `space`, its study in memory, as search.plan builds one."""
    tune = params_from_dict(repo_params()).tune
    tune = dataclasses.replace(tune, trials=trials, storage=None, together=together, spaces={learner.name: space})
    names = {learner.name: study}
    return Plan(learners={learner.name: learner}, data=data, metric=metric, study_names=names, settings=tune, seed=seed)


def test_a_combination_the_estimator_rejects_fails_that_trial_not_the_search():
    x = np.array([[0.0], [0.1], [0.2], [0.3], [1.0], [1.1], [1.2], [1.3]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    problem = Problem("classification", n_classes=2, n_features=1)
    fit_rows = np.arange(8)  # the validation rows are among them: a tree fits them exactly
    data = TuneData(x, y, fit_rows, np.array([1, 5]), x[[2, 6]], y[[2, 6]], problem=problem)
    space = {"min_samples_leaf": [0, 1]}  # 0 is out of range: scikit-learn raises InvalidParameterError
    plan = plan_of(Baseline("tree"), data, space, metric="accuracy", trials=8, seed=0, study="rejected")
    results = plan.search("tree")
    assert [r.trial for r in results] == list(range(1, 9))
    failed = [r for r in results if r.values["min_samples_leaf"] == 0]
    fitted = [r for r in results if r.values["min_samples_leaf"] == 1]
    assert failed and fitted
    assert all(math.isnan(r.validation) and math.isnan(r.test) for r in failed)
    assert all(r.validation == 1.0 and r.test == 1.0 for r in fitted)
    curve = best_so_far([r.validation for r in results], [r.test for r in results], lower_is_better=False)
    first_fit = fitted[0].trial
    assert all(math.isnan(v) for v in curve[: first_fit - 1]) and curve[first_fit - 1 :] == [1.0] * (9 - first_fit)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("large", [False, True])
def test_every_space_in_params_yaml_names_hyperparameters_its_estimator_has(task: str, large: bool):
    params = params_from_dict(repo_params())
    problem = Problem(task, n_classes=2 if task == "classification" else 0, n_features=3, large=large)
    assert set(params.tune.spaces) == set(registry.LEARNERS)  # a space for every model
    for name, space in params.tune.spaces.items():
        if name != "mlp":
            registry.learner(name, params).check_space(space, problem)


def test_an_interrupted_trial_is_handed_back_and_rerun_with_the_same_values():
    from optuna.trial import TrialState

    from quest.tuning import studies

    study = studies.open_study("handed-back", url=None, heartbeat=1, trials=4, seed=3, lower_is_better=False)
    space = {"C": {"low": 0.001, "high": 100.0, "log": True}}
    seen: list[tuple[int, float]] = []

    def interrupted(claimed: studies.Claimed) -> list[studies.Outcome]:
        ((trial, slot),) = claimed  # one at a time: work's default batch
        seen.append((slot, sample_space(trial, space)["C"]))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return [(0.5, 0.5)]

    with pytest.raises(KeyboardInterrupt):
        studies.work(study, interrupted, wait=True)
    assert studies.work(study, interrupted, wait=True) == 3  # slots 2 and 3, then slot 1's copy
    found = studies.slots(study, 4)
    assert [(s.slot, s.runs) for s in found] == [(0, 1), (1, 2), (2, 1), (3, 1)]
    reruns = [value for slot, value in seen if slot == 1]
    assert len(reruns) == 2 and reruns[0] == reruns[1]  # the same values on the rerun
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 4


def test_values_depend_on_the_slot_never_on_the_claim_order():
    from quest.tuning import studies

    space = {"C": {"low": 0.001, "high": 100.0, "log": True}, "kernel": ["a", "b", "c"]}

    def drawn(order: list[int]) -> dict[int, dict]:
        study = studies.open_study(f"order-{order}", url=None, heartbeat=1, trials=4, seed=9, lower_is_better=False)
        waiting = study.get_trials(deepcopy=False)
        for position in order:  # claim in this order: what another worker would have taken first
            study._storage.set_trial_state_values(waiting[position]._trial_id, optuna.trial.TrialState.RUNNING)
            trial = optuna.Trial(study, waiting[position]._trial_id)
            sample_space(trial, space)
            study.tell(trial, 0.5)
        return {s.slot: s.params for s in studies.slots(study, 4)}

    assert drawn([0, 1, 2, 3]) == drawn([3, 1, 0, 2])


def test_a_sweep_needs_a_budget_and_a_shared_storage(tmp_path: Path):
    from quest.commands.sweep import main as sweep_main

    params = write_params(tmp_path / "params.yaml", trials=0)
    with pytest.raises(QuestError, match=r"tune.trials is 0"):
        sweep_main(["--params", str(params)])
    params = write_params(tmp_path / "params.yaml", trials=4)
    with pytest.raises(QuestError, match=r"tune.storage is null.*postgresql\+psycopg://"):
        sweep_main(["--params", str(params)])
    raw = yaml.safe_load(params.read_text())
    raw["tune"]["storage"] = "postgresql+psycopg://quest@127.0.0.1:1/optuna"  # nothing listens on port 1
    params.write_text(yaml.safe_dump(raw))
    prepare_main(["--params", str(params), "--out", str(tmp_path / "data")])
    with pytest.raises(QuestError, match=r"tune.storage postgresql\+psycopg://quest@127.0.0.1:1/optuna cannot be"):
        sweep_main(["--params", str(params), "--data", str(tmp_path / "data")])


def test_a_worker_claims_trials_in_batches_and_fails_only_the_trial_to_blame():
    from optuna.trial import TrialState

    from quest.tuning import studies

    study = studies.open_study("batches", url=None, heartbeat=1, trials=10, seed=3, lower_is_better=False)
    space = {"C": {"low": 0.001, "high": 100.0, "log": True}}
    claimed: list[list[int]] = []

    def run_trials(batch: studies.Claimed) -> list[studies.Outcome]:
        claimed.append([slot for _, slot in batch])
        return [ValueError("refused") if slot == 5 else (sample_space(t, space)["C"], 0.5) for t, slot in batch]

    assert studies.work(study, run_trials, wait=True, batch=4) == 10
    assert [len(batch) for batch in claimed] == [4, 4, 2]
    assert sorted(slot for batch in claimed for slot in batch) == list(range(10))
    found = studies.slots(study, 10)
    assert [math.isnan(s.validation) for s in found] == [slot == 5 for slot in range(10)]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 9


def mlp_tuning(**train: object) -> tuple[MLP, TuneData]:
    from tests.conftest import blobs

    params = params_from_dict(repo_params(train={"epochs": 20, "device": "cpu", **train}))
    x, y = blobs(120)
    problem = Problem("classification", n_classes=2, n_features=3)
    data = TuneData(x, y, np.arange(90), np.arange(90, 120), x[90:], y[90:], problem=problem)
    return registry.subject(params), data


def test_mlp_trials_of_one_architecture_train_in_one_program_as_they_would_one_by_one(monkeypatch):
    from quest.learners.mlp import recipe as mlp_recipe

    programs: list[int] = []
    train_many = mlp_recipe.train_many

    def counted(x, y, jobs, recipe, **kwargs):
        programs.append(len(jobs))
        return train_many(x, y, jobs, recipe, **kwargs)

    monkeypatch.setattr(mlp_recipe, "train_many", counted)  # the engine call the MLP's recipe makes
    learner, data = mlp_tuning(hidden_layers=[8], batch_size=16)
    space = {
        "hidden_layers": [[8], [16, 8]],
        "learning_rate": {"low": 0.001, "high": 0.05, "log": True},
        "dropout_rate": {"low": 0.0, "high": 0.5},
        "l2": {"low": 0.000001, "high": 0.01, "log": True},
    }
    found = {}
    for batch in (1, 8):
        programs.clear()
        plan = plan_of(learner, data, space, metric="log_loss", trials=8, seed=0, study=f"b{batch}", together=batch)
        found[batch] = plan.search("mlp")
        assert sum(programs) == 8 and len(programs) == (8 if batch == 1 else 2)
    architectures = {r.values["hidden_layers"] for r in found[8]}
    assert architectures == {(8,), (16, 8)}  # both programs trained several trials
    for one, together in zip(found[1], found[8], strict=True):
        assert one.values == together.values
        assert together.validation == pytest.approx(one.validation, rel=1e-4)
        assert together.test == pytest.approx(one.test, rel=1e-4)


def test_a_trial_that_diverges_among_others_fails_alone_and_the_others_score_as_alone():
    from quest.core.errors import TrainingDiverged

    learner, _ = mlp_tuning(optimizer="sgd", hidden_layers=[8], batch_size=16, epochs=5)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2)).astype(np.float32) * np.float32([1.0, 5.0])
    y = (3 * x[:, 0] + rng.normal(size=120)).astype(np.float32)
    problem = Problem("regression", n_classes=0, n_features=2)
    data = TuneData(x, y, np.arange(90), np.arange(90, 120), x[90:], y[90:], problem=problem)
    score = scorer(learner, data, metric="rmse", seed=0)
    trials = [({"learning_rate": 0.001}, 0), ({"learning_rate": 100.0}, 1), ({"learning_rate": 0.0001}, 2)]
    outcomes = score(trials)
    assert isinstance(outcomes[1], TrainingDiverged) and "learning_rate (this network's is 100)" in str(outcomes[1])
    for index in (0, 2):
        assert outcomes[index] == score([trials[index]])[0]


def test_only_the_mlp_on_the_fast_engine_is_handed_several_trials_at_once():
    params = params_from_dict(repo_params())
    assert registry.subject(params).trials_together
    assert not registry.subject(params_from_dict(repo_params(train={"engine": "fit"}))).trials_together
    for name in ("realmlp", "logreg"):  # RealMLP trains its fits together, but only those with the same values
        assert not registry.learner(name, params).trials_together
