"""The CatBoost, LightGBM and XGBoost rows: the libraries' defaults (CatBoost's iteration count and XGBoost's
300 histogram trees named where they differ), seeded, on the threads this process may use (XGBoost on one),
through the learner interface like every other row."""

import numpy as np
import pytest

from quest.core import processes
from quest.core.errors import QuestError
from quest.learners import registry
from quest.learners.base import Problem
from quest.learners.gbdt.catboost import ITERATIONS, LIBRARY_ITERATIONS, CatBoost
from quest.learners.gbdt.lightgbm import LightGBM
from quest.learners.gbdt.xgboost import XGBoost
from quest.learners.registry import params_from_dict
from tests.conftest import repo_params

LEARNERS = [CatBoost(), LightGBM(), XGBoost()]
RANDOM = {"catboost": {}, "lightgbm": {"subsample": 0.7, "subsample_freq": 1}, "xgboost": {"subsample": 0.7}}


def table(task: str, n: int = 90):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    if task == "classification":
        return x, np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])  # three classes
    return x, 1000.0 * x[:, 0] - 300.0 * x[:, 2] ** 2 + rng.normal(size=n)


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda learner: learner.name)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_each_row_is_seeded_and_gives_the_same_outputs_on_one_thread_or_two(learner, task, monkeypatch):
    x, y = table(task)
    problem = Problem(task, 3 if task == "classification" else 0, 5)
    outputs = []
    for threads in (1, 2, 2):
        monkeypatch.setattr(processes, "_threads", threads)
        outputs.append(learner.build(problem, seed=3, hyper={}).fit(x[:70], y[:70]).output(x[70:]))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[1], outputs[2])
    if task == "classification":
        assert outputs[0].shape == (20, 3) and np.allclose(outputs[0].sum(axis=1), 1.0)
        assert (outputs[0].argmax(axis=1) == y[70:]).mean() > 0.6
    else:  # in the target's units, though the model learns the standardised target
        assert np.corrcoef(outputs[0], y[70:])[0, 1] > 0.8 and np.abs(outputs[0]).max() > 100
    # The seed reaches the model where it draws anything: CatBoost's defaults do; LightGBM's and XGBoost's draw only
    # once bagging.
    hyper = RANDOM[learner.name]
    drawn = [learner.build(problem, seed=seed, hyper=hyper).fit(x[:70], y[:70]).output(x[70:]) for seed in (3, 4)]
    assert not np.array_equal(*drawn)


@pytest.mark.parametrize("learner", LEARNERS, ids=lambda learner: learner.name)
def test_a_fold_without_a_class_still_answers_for_every_class(learner):
    x, y = table("classification")
    seen = y != 2
    output = learner.build(Problem("classification", 3, 5), seed=0, hyper={}).fit(x[seen], y[seen]).output(x)
    assert output.shape == (len(x), 3) and (output[:, 2] == 0).all()


def test_catboost_refuses_a_single_class_as_a_value_error_in_one_line():
    x, _ = table("classification")
    with pytest.raises(ValueError, match=r"^Target contains only one unique value$"):
        CatBoost().build(Problem("classification", 2, 5), seed=0, hyper={}).fit(x, np.zeros(len(x), dtype=int))


def test_the_table_names_catboosts_iterations_where_they_differ_from_the_library():
    import catboost

    x, y = table("classification", n=20)
    library = catboost.CatBoostClassifier(verbose=False, allow_writing_files=False, thread_count=1).fit(x, y)
    assert ITERATIONS != LIBRARY_ITERATIONS == library.get_all_params()["iterations"]
    model = CatBoost().build(Problem("classification", 2, 5), seed=0, hyper={}).estimator
    assert model.get_params()["iterations"] == ITERATIONS
    assert f"{ITERATIONS} iterations (library default {LIBRARY_ITERATIONS})" in CatBoost().describe(
        Problem("classification", 2, 5)
    )


def test_the_tuning_spaces_in_params_yaml_build_and_a_wrong_name_fails_before_the_search():
    params = params_from_dict(repo_params())
    problem = Problem("classification", 2, 5)
    for learner in LEARNERS:
        learner.check_space(params.tune.spaces[learner.name], problem)
    with pytest.raises(QuestError, match=r"tune\.spaces\.lightgbm: 'min_data' is not a LightGBM hyperparameter"):
        LightGBM().check_space({"min_data": [1]}, problem)
    with pytest.raises(QuestError, match=r"tune\.spaces\.catboost: .*unexpected keyword argument 'leaves'"):
        CatBoost().check_space({"leaves": [1]}, problem)


def test_a_missing_library_skips_its_row_with_a_notice(monkeypatch, capsys):
    from quest.learners.gbdt import catboost as catboost_gbdt
    from quest.learners.gbdt import lightgbm as lightgbm_gbdt

    monkeypatch.setattr(catboost_gbdt.CatBoost, "requires", "no_such_catboost_for_quest")
    monkeypatch.setattr(lightgbm_gbdt.LightGBM, "requires", "no_such_lightgbm_for_quest")
    params = params_from_dict(repo_params(compare={"models": ["logreg", "lightgbm", "catboost"]}))
    assert [learner.name for learner in registry.entrants(params, who="compare")] == ["logreg"]
    err = capsys.readouterr().err
    assert "compare: notice: skipping catboost: its library (no_such_catboost_for_quest) is not installed" in err
    assert "compare: notice: skipping lightgbm: its library (no_such_lightgbm_for_quest) is not installed" in err
