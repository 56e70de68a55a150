import warnings

import numpy as np
import pytest

from quest.learners.classic.baselines import CLASSIFIERS, FOREST_ROWS, REGRESSORS, describe, make_baseline
from quest.learners.estimators import model_output
from quest.learners.registry import BASELINES

LECTURE_EIGHT = ["logreg", "logreg_rbf", "knn5", "knn15", "tree", "forest", "boosting", "svm_rbf"]
ALL = [*LECTURE_EIGHT, "hgb"]


def test_registries_hold_the_lecture_eight_then_histogram_boosting_for_both_tasks():
    assert list(CLASSIFIERS) == ALL == list(REGRESSORS) == list(BASELINES)


def toy(task: str, n: int = 60):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) if task == "classification" else 3.0 * x[:, 0] + rng.normal(size=n)
    return x, y


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_baseline_fits_predicts_and_is_seeded(name, task):
    x, y = toy(task)
    outputs = []
    for _ in range(2):
        estimator = make_baseline(name, task=task, n_features=4, seed=3)
        estimator.fit(x[:45], y[:45])
        outputs.append(model_output(estimator, x[45:], task=task, n_classes=2))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    if task == "classification":
        assert outputs[0].shape == (15, 2)
        np.testing.assert_allclose(outputs[0].sum(axis=1), 1.0)
    else:
        assert outputs[0].shape == (15,)


def test_a_target_spanning_many_orders_of_magnitude_fits_without_a_warning():
    """Standardising such a target cannot round-trip exactly in floats; scikit-learn's check said so on the
    console of every regression on it, though the regressor answers in the target's units all the same."""
    x, _ = toy("regression")
    y = np.r_[1e20, np.arange(1.0, len(x))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimator = make_baseline("tree", task="regression", n_features=4, seed=3).fit(x, y)
    assert np.isfinite(model_output(estimator, x, task="regression", n_classes=0)).all()


def test_probabilities_cover_classes_a_fold_never_saw():
    x, y = toy("classification")
    estimator = make_baseline("logreg", task="classification", n_features=4, seed=0).fit(x, y * 2)  # classes 0 and 2
    proba = model_output(estimator, x[:3], task="classification", n_classes=3)
    assert proba.shape == (3, 3)
    assert (proba[:, 1] == 0).all()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_past_the_threshold_the_kernel_svm_boosting_and_the_forest_switch_to_scalable_stand_ins(task):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.kernel_approximation import Nystroem

    svm = make_baseline("svm_rbf", task=task, n_features=4, seed=0, large=True, hyper={"C": 2.0, "gamma": 0.5})
    inner = svm.regressor if task == "regression" else svm
    assert isinstance(inner.steps[0][1], Nystroem) and inner.steps[0][1].gamma == 0.5
    boosting = make_baseline("boosting", task=task, n_features=4, seed=0, large=True, hyper={"n_estimators": 50})
    inner = boosting.regressor if task == "regression" else boosting
    assert isinstance(inner, HistGradientBoostingClassifier | HistGradientBoostingRegressor) and inner.max_iter == 50
    assert "scalable" in describe("svm_rbf", task, large=True) and "scalable" not in describe("svm_rbf", task)
    forest = make_baseline("forest", task=task, n_features=4, seed=0, large=True, hyper={"max_depth": 4})
    inner = forest.regressor if task == "regression" else forest
    assert (inner.max_samples, inner.n_estimators, inner.max_depth) == (FOREST_ROWS, 200, 4)
    small = make_baseline("forest", task=task, n_features=4, seed=0)
    assert (small.regressor if task == "regression" else small).max_samples is None
    assert describe("forest", task, large=True) == f"random forest, 200 trees, each on a {FOREST_ROWS} row bootstrap"
    knn = make_baseline("knn5", task=task, n_features=4, seed=0, large=True)
    assert type(knn) is type(make_baseline("knn5", task=task, n_features=4, seed=0))  # unchanged below and above
