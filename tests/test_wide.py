"""Wide tables: past compare.wide_threshold model inputs the models whose cost grows fastest with the columns
take their wide recipes (quest.learners.wide), and every place that names a model says so."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import yaml

from quest.core.errors import QuestError
from quest.evaluation.scoring import ModelResult
from quest.learners import registry, wide
from quest.learners.base import Problem
from quest.learners.registry import params_from_dict
from tests.conftest import repo_params
from tests.support import TINY_REALMLP

NARROW = Problem("classification", 2, 40)
WIDE = dataclasses.replace(NARROW, wide=True)
# Each boosted row's library settings on a wide table, and the values they take.
SETTINGS = {
    "boosting": {"max_features": wide.SHARE},
    "hgb": {"max_bins": wide.BINS},
    "xgboost": {"max_bin": wide.BINS},
    "lightgbm": {"max_bin": wide.BINS},
    "catboost": {"border_count": wide.BINS, "rsm": wide.SHARE},
}


def _estimator(name: str, problem: Problem, hyper: dict | None = None):
    learner = registry.learner(name, params_from_dict(repo_params()))
    return learner.build(problem, seed=0, hyper=hyper or {}).estimator


def test_the_threshold_is_a_positive_count_of_inputs():
    params = params_from_dict(repo_params(compare={"wide_threshold": 40}))
    assert not params.compare.wide(40) and params.compare.wide(41)
    with pytest.raises(QuestError, match=r"^params.yaml: compare.wide_threshold must be a positive count of model "):
        params_from_dict(repo_params(compare={"wide_threshold": 0}))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_boosted_model_takes_its_wide_settings_only_on_a_wide_table_and_a_trial_keeps_its_own(name):
    for key, value in SETTINGS[name].items():
        assert _estimator(name, NARROW).get_params().get(key) != value  # its library's default elsewhere
        assert _estimator(name, WIDE).get_params()[key] == value
        trial = 64 if isinstance(value, int) else 0.5
        assert _estimator(name, WIDE, {key: trial}).get_params()[key] == trial


def test_boostings_histogram_stand_in_takes_histogram_boostings_wide_recipe():
    problem = dataclasses.replace(WIDE, large=True)
    stand_in = _estimator("boosting", problem)
    assert type(stand_in).__name__ == "HistGradientBoostingClassifier"
    assert stand_in.get_params()["max_bins"] == wide.BINS and stand_in.get_params()["max_features"] == 1.0
    learner = registry.learner("boosting", params_from_dict(repo_params()))
    assert learner.describe(problem).endswith(f"; wide table: {wide.BINS} bins a column")


@pytest.mark.parametrize("name", ["logreg", "forest", "boosting", "lightgbm", "catboost", "realmlp", "tabm"])
def test_a_row_names_its_wide_recipe_only_on_a_wide_table(name):
    learner = registry.learner(name, params_from_dict(repo_params()))
    narrow, wide_text = learner.describe(NARROW), learner.describe(WIDE)
    if name in ("logreg", "forest"):  # the forest already samples columns at each split; the rest cost little
        assert wide_text == narrow and learner.wide_recipe(WIDE) == ""
    else:
        assert "wide table" not in narrow
        assert wide_text.startswith(narrow.split(" (")[0]) and wide_text.endswith(
            f"; wide table: {learner.wide_recipe(WIDE)}"
        )


def test_the_networks_leave_out_their_numeric_embeddings_on_a_wide_table():
    params = params_from_dict(repo_params())
    realmlp, tabm = registry.learner("realmlp", params), registry.learner("tabm", params)
    assert realmlp.settings(NARROW)["embedding_frequencies"] == 16
    assert realmlp.settings(WIDE)["embedding_frequencies"] == 0
    assert (tabm.settings(NARROW)["embedding"], tabm.settings(WIDE)["embedding"]) == ("piecewise", "none")
    assert tabm.describe(WIDE) == "TabM in Keras (k=32, 3x512); wide table: no piecewise-linear embeddings"


def test_the_realmlp_that_trains_on_a_wide_table_has_no_embedding_unless_a_trial_sets_one(monkeypatch):
    from quest.learners.jobs import plan_job

    learner = registry.learner("realmlp", params_from_dict(repo_params()))
    seen = []

    def recipe(spec, problem, x, jobs):
        seen.append(spec.embedding_frequencies)
        raise LookupError("stop before training")

    monkeypatch.setattr(learner, "recipe", recipe)
    x, y = np.zeros((20, 3), np.float32), np.arange(20) % 2
    jobs = [plan_job(np.arange(20), y, task="classification", validation_fraction=0.2, seed=0)]
    for problem, hyper in ((NARROW, {}), (WIDE, {}), (WIDE, {"embedding_frequencies": 8})):
        with pytest.raises(LookupError):
            learner.train_jobs(x, y, jobs, problem, hyper, "")
    assert seen == [16, 0, 8]


def test_compare_on_a_wide_table_says_so_in_its_notice_table_and_report(tmp_path, capsys):
    from quest.data.artifacts import read_prepared
    from quest.stages.compare import compare
    from quest.stages.prepare import main as prepare

    settings = repo_params(
        compare={"models": ["logreg", "lightgbm", "realmlp"], "wide_threshold": 20},  # breast cancer: 30 inputs
        prepare={"repeats": 1},
        realmlp=TINY_REALMLP,
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings))
    prepare(["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "processed")])
    prepared = read_prepared(tmp_path / "processed")
    splits = prepared.schema.folds * prepared.schema.repeats
    metrics = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss")
    subject = ModelResult("mlp", {name: [0.9] * splits for name in metrics}, dict.fromkeys(metrics, 0.9))
    found = compare(params_from_dict(settings), prepared, subject)
    err = capsys.readouterr().err
    assert (
        "compare: notice: 30 model inputs > compare.wide_threshold (20): lightgbm and realmlp run with their wide "
        "recipes (docs/performance.md)"
    ) in err
    assert found.descriptions["lightgbm"].endswith(f"; wide table: {wide.BINS} bins a column")
    assert found.descriptions["realmlp"].endswith("; wide table: no numeric embeddings")
    assert found.descriptions["logreg"] == "logistic regression"
    assert "The table is wide (30 model inputs > `compare.wide_threshold`, 20)" in found.report
    assert f"| lightgbm | classic | {found.descriptions['lightgbm']} |" in found.report
    narrow = compare(params_from_dict(repo_params(**{**settings, "compare": {**settings["compare"],
                                                                              "wide_threshold": 30}})),
                     prepared, subject)  # fmt: skip
    assert "wide" not in narrow.report and "wide_threshold" not in capsys.readouterr().err


def test_the_tuning_says_which_models_are_tuned_with_their_wide_recipes(capsys):
    params = params_from_dict(repo_params(compare={"wide_threshold": 30}))
    learners = [registry.learner(name, params) for name in ("logreg", "xgboost", "catboost")]
    registry.recipe_notices("tune", learners, WIDE, params, n_train=100, verb="are tuned")
    assert capsys.readouterr().err == (
        "tune: notice: 40 model inputs > compare.wide_threshold (30): xgboost and catboost are tuned with their wide "
        "recipes (docs/performance.md)\n"
    )
    registry.recipe_notices("tune", learners, NARROW, params, n_train=100, verb="are tuned")
    assert capsys.readouterr().err == ""


def test_past_the_scale_threshold_realmlp_trains_the_steps_of_the_thresholds_rows_unless_a_trial_sets_its_epochs(
    monkeypatch,
):
    from quest.learners.jobs import plan_job

    large = dataclasses.replace(NARROW, large=True, row_share=10_000 / 43_152)  # diamonds' training rows
    learner = registry.learner("realmlp", params_from_dict(repo_params()))
    assert (learner.settings(NARROW)["epochs"], learner.settings(large)["epochs"]) == (256, 59)
    scalable = "RealMLP-TD in Keras (256-256-256), scalable: 59 epochs instead of 256, the steps of compare.scale_"
    assert learner.describe(large).startswith(scalable)
    assert learner.describe(NARROW) == "RealMLP-TD in Keras (256-256-256, 256 epochs)" and learner.has_stand_in()
    seen = []

    def recipe(spec, problem, x, jobs):
        seen.append((spec.epochs, spec.embedding_frequencies))
        raise LookupError("stop before training")

    monkeypatch.setattr(learner, "recipe", recipe)
    x, y = np.zeros((20, 3), np.float32), np.arange(20) % 2
    jobs = [plan_job(np.arange(20), y, task="classification", validation_fraction=0.2, seed=0)]
    both = dataclasses.replace(large, wide=True)
    for problem, hyper in ((large, {}), (both, {}), (large, {"epochs": 100})):
        with pytest.raises(LookupError):
            learner.train_jobs(x, y, jobs, problem, hyper, "")
    assert seen == [(59, 16), (59, 0), (100, 16)]
    few = registry.learner("realmlp", params_from_dict(repo_params(realmlp={"epochs": 2})))
    assert few.settings(dataclasses.replace(large, row_share=0.01))["epochs"] == 1  # never none


def test_a_problem_is_large_past_the_scale_threshold_and_knows_the_thresholds_share_of_its_rows():
    from quest.data.splits import RANDOM
    from tests.support import prepared_with

    prepared = prepared_with(np.zeros((1, 40), np.int64), RANDOM, n_folds=2)
    assert Problem.of(prepared) == Problem.of(prepared, scale_threshold=40)
    assert (Problem.of(prepared).large, Problem.of(prepared).row_share) == (False, 1.0)
    past = Problem.of(prepared, scale_threshold=30)
    assert (past.large, past.row_share) == (True, 0.75)
