"""The lecture's eight classic models plus histogram gradient boosting, scikit-learn's estimators for
classification and (with the same row names) regression: one learner per row."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.kernel_approximation import Nystroem, RBFSampler
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from quest.learners import wide
from quest.learners.base import Learner, Problem
from quest.learners.estimators import EstimatorModel, for_task

# Random Fourier features for the "logistic regression on RBF features" row.
RBF_COMPONENTS = 300

Factory = Callable[[int, int, dict], BaseEstimator]  # (n_features, seed, hyperparameters) -> unfitted estimator


def _rbf_features(n_features: int, seed: int) -> RBFSampler:
    # gamma = 1 / n_features on standardised inputs: the same width as SVC's gamma="scale".
    return RBFSampler(gamma=1.0 / n_features, n_components=RBF_COMPONENTS, random_state=seed)


def _ridge(hyper: dict) -> Ridge:
    """Ridge with the classification row's knob: C is inverse regularisation, so alpha = 1 / C."""
    hyper = dict(hyper)
    return Ridge(alpha=1.0 / hyper.pop("C", 1.0), **hyper)


def _with(defaults: dict, hyper: dict) -> dict:
    return {**defaults, **hyper}


CLASSIFIERS: dict[str, tuple[str, Factory]] = {
    "logreg": (
        "logistic regression",
        lambda d, s, h: LogisticRegression(**_with({"max_iter": 5000}, h), random_state=s),
    ),
    "logreg_rbf": (
        "logistic regression on RBF random features",
        lambda d, s, h: make_pipeline(
            _rbf_features(d, s), LogisticRegression(**_with({"max_iter": 5000}, h), random_state=s)
        ),
    ),
    "knn5": ("k-nearest neighbours, k=5", lambda d, s, h: KNeighborsClassifier(n_neighbors=5, **h)),
    "knn15": ("k-nearest neighbours, k=15", lambda d, s, h: KNeighborsClassifier(n_neighbors=15, **h)),
    "tree": ("decision tree", lambda d, s, h: DecisionTreeClassifier(random_state=s, **h)),
    "forest": (
        "random forest, 200 trees",
        lambda d, s, h: RandomForestClassifier(**_with({"n_estimators": 200}, h), random_state=s),
    ),
    "boosting": ("gradient boosting", lambda d, s, h: GradientBoostingClassifier(random_state=s, **h)),
    # Platt-calibrated probabilities, as scikit-learn 1.9 recommends instead of SVC(probability=True).
    "svm_rbf": (
        "RBF-kernel SVM",
        lambda d, s, h: CalibratedClassifierCV(
            SVC(kernel="rbf", random_state=s, **h), method="sigmoid", ensemble=False
        ),
    ),
    "hgb": ("histogram gradient boosting", lambda d, s, h: HistGradientBoostingClassifier(random_state=s, **h)),
}

REGRESSORS: dict[str, tuple[str, Factory]] = {
    "logreg": ("ridge regression", lambda d, s, h: _ridge(h)),
    "logreg_rbf": (
        "ridge regression on RBF random features",
        lambda d, s, h: make_pipeline(_rbf_features(d, s), _ridge(h)),
    ),
    "knn5": ("k-nearest neighbours, k=5", lambda d, s, h: KNeighborsRegressor(n_neighbors=5, **h)),
    "knn15": ("k-nearest neighbours, k=15", lambda d, s, h: KNeighborsRegressor(n_neighbors=15, **h)),
    "tree": ("decision tree", lambda d, s, h: DecisionTreeRegressor(random_state=s, **h)),
    "forest": (
        "random forest, 200 trees",
        lambda d, s, h: RandomForestRegressor(**_with({"n_estimators": 200}, h), random_state=s),
    ),
    "boosting": ("gradient boosting", lambda d, s, h: GradientBoostingRegressor(random_state=s, **h)),
    "svm_rbf": ("RBF-kernel SVR", lambda d, s, h: SVR(kernel="rbf", **h)),
    "hgb": ("histogram gradient boosting", lambda d, s, h: HistGradientBoostingRegressor(random_state=s, **h)),
}


def _nystroem(d: int, s: int, h: dict) -> Nystroem:
    return Nystroem(gamma=h.pop("gamma", 1.0 / d), n_components=RBF_COMPONENTS, random_state=s)


def _hgb_for_boosting(h: dict) -> dict:
    """Gradient boosting's knobs in histogram gradient boosting's names."""
    h = dict(h)
    if "n_estimators" in h:
        h["max_iter"] = h.pop("n_estimators")
    return h


# Above `compare.scale_threshold` training rows, the rows whose cost grows fastest switch to these: the kernel SVM
# is quadratic to cubic in rows, exact gradient boosting sorts every feature at every split, and each of the random
# forest's 200 trees grows on a bootstrap as large as the training split. Its stand-in draws FOREST_ROWS rows for
# each tree (scikit-learn's max_samples): on the 43 152 training rows of the diamonds table, 100 trees took 7.0 s
# instead of 17.7 s on one core, for a test R² of 0.9806 instead of 0.9811.
FOREST_ROWS = 10_000
FOREST = f"random forest, 200 trees, each on a {FOREST_ROWS} row bootstrap"
SCALABLE_CLASSIFIERS: dict[str, tuple[str, Factory]] = {
    "svm_rbf": (
        "RBF SVM, scalable: Nystroem features + logistic regression",
        lambda d, s, h: make_pipeline(_nystroem(d, s, h), LogisticRegression(max_iter=5000, random_state=s, **h)),
    ),
    "boosting": (
        "gradient boosting, scalable: histogram-based",
        lambda d, s, h: HistGradientBoostingClassifier(random_state=s, **_hgb_for_boosting(h)),
    ),
    "forest": (
        FOREST,
        lambda d, s, h: RandomForestClassifier(
            **_with({"n_estimators": 200, "max_samples": FOREST_ROWS}, h), random_state=s
        ),
    ),
}
SCALABLE_REGRESSORS: dict[str, tuple[str, Factory]] = {
    "svm_rbf": (
        "RBF SVR, scalable: Nystroem features + ridge",
        lambda d, s, h: make_pipeline(_nystroem(d, s, h), _ridge(h)),
    ),
    "boosting": (
        "gradient boosting, scalable: histogram-based",
        lambda d, s, h: HistGradientBoostingRegressor(random_state=s, **_hgb_for_boosting(h)),
    ),
    "forest": (
        FOREST,
        lambda d, s, h: RandomForestRegressor(
            **_with({"n_estimators": 200, "max_samples": FOREST_ROWS}, h), random_state=s
        ),
    ),
}


# Past `compare.wide_threshold` model inputs, the boosted rows' wide recipes (quest.learners.wide): the histogram
# ones on fewer bins, exact gradient boosting on a share of the columns at each split. Its histogram stand-in, past
# compare.scale_threshold rows, takes histogram boosting's.
WIDE: dict[str, tuple[dict[str, Any], str]] = {
    "boosting": ({"max_features": wide.SHARE}, f"{wide.SHARED} a split"),
    "hgb": ({"max_bins": wide.BINS}, f"{wide.BINS} bins a column"),
}


def _wide(name: str, large: bool) -> str:
    """The row whose wide recipe `name` takes: its stand-in's past compare.scale_threshold."""
    return "hgb" if large and name == "boosting" else name


def _registry(task: str, large: bool) -> dict[str, tuple[str, Factory]]:
    exact = CLASSIFIERS if task == "classification" else REGRESSORS
    if not large:
        return exact
    return {**exact, **(SCALABLE_CLASSIFIERS if task == "classification" else SCALABLE_REGRESSORS)}


def scaled(name: str) -> bool:
    """Whether a row has a scalable stand-in for large training sets."""
    return name in SCALABLE_CLASSIFIERS


def describe(name: str, task: str, *, large: bool = False) -> str:
    return _registry(task, large)[name][0]


def make_baseline(
    name: str,
    *,
    task: str,
    n_features: int,
    seed: int,
    hyper: dict | None = None,
    large: bool = False,
    wide: bool = False,
) -> BaseEstimator:
    """A fresh, seeded estimator with the row's defaults, or with `hyper` (a tuning trial's values) over them;
    regression targets are standardised inside (SVR and kNN need it). `large`: the training set is past
    `compare.scale_threshold`, so rows with a scalable stand-in use it. `wide`: the inputs are past
    `compare.wide_threshold`, so rows with a wide recipe take its settings under `hyper`'s."""
    recipe = _wide(name, large)
    settings = {**WIDE[recipe][0], **(hyper or {})} if wide and recipe in WIDE else dict(hyper or {})
    return for_task(_registry(task, large)[name][1](n_features, seed, settings), task)


class Baseline(Learner):
    """One row of the tables above, as a learner: scikit-learn's estimator behind `Model`."""

    kind = "classic"

    def __init__(self, name: str) -> None:
        if name not in CLASSIFIERS:
            raise ValueError(f"no baseline named {name!r}")
        self.name = name

    def describe(self, problem: Problem) -> str:
        return wide.described(describe(self.name, problem.task, large=problem.large), self, problem)

    def has_stand_in(self) -> bool:
        return scaled(self.name)

    def wide_recipe(self, problem: Problem) -> str:
        recipe = _wide(self.name, problem.large)
        return WIDE[recipe][1] if recipe in WIDE else ""

    def build(self, problem: Problem, *, seed: int, hyper: Mapping[str, Any]) -> BaselineModel:
        estimator = make_baseline(
            self.name,
            task=problem.task,
            n_features=problem.n_features,
            seed=seed,
            hyper=dict(hyper),
            large=problem.large,
            wide=problem.wide,
        )
        return BaselineModel(estimator, task=problem.task, n_classes=problem.n_classes)


class BaselineModel(EstimatorModel):
    """A classic row's estimator, fitted to the rows it gets: k capped at the rows, Platt's folds at the rarest
    class."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> BaselineModel:
        _cap_neighbours(self.estimator, len(x))
        if isinstance(self.estimator, CalibratedClassifierCV):
            self.estimator = _calibration_for(self.estimator, y)
        self.estimator.fit(x, y)
        return self


_CAPPED: set[tuple[int, int]] = set()  # (k, rows) said already, so a notice comes once per process


def _cap_neighbours(estimator: BaseEstimator, rows: int) -> None:
    """k-nearest neighbours with fewer training rows than k use every row (k = rows), with a notice."""
    key = "regressor__n_neighbors" if isinstance(estimator, TransformedTargetRegressor) else "n_neighbors"
    k = estimator.get_params().get(key)
    if k is None or rows >= k or rows < 1:
        return
    estimator.set_params(**{key: rows})
    if (k, rows) not in _CAPPED:
        _CAPPED.add((k, rows))
        print(f"quest: notice: k-nearest neighbours with k={k} fits {rows} rows, so k is {rows} there", file=sys.stderr)


def _calibration_for(calibrated: CalibratedClassifierCV, y: np.ndarray) -> BaseEstimator:
    """Platt scaling's cross-validation, fitted to the rows: 5 stratified folds (scikit-learn's default) when
    every class has 5 rows, as many folds as the rarest class has rows when it has 2 to 4, and, for a class of
    a single row, in-sample: a logistic regression on the decision values of the SVM fitted on every row."""
    rarest = int(np.unique(y, return_counts=True)[1].min())
    if rarest >= 2:
        return calibrated.set_params(cv=min(5, rarest))
    return _InSamplePlatt(calibrated.estimator)


class _InSamplePlatt:
    """Platt scaling without held-out rows: what is left when a class has one row to learn from."""

    def __init__(self, estimator: BaseEstimator) -> None:
        from sklearn.base import clone

        self.svm, self.platt = clone(estimator), LogisticRegression()

    def _decisions(self, x: np.ndarray) -> np.ndarray:
        values = self.svm.decision_function(x)
        return values.reshape(len(x), -1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> _InSamplePlatt:
        self.svm.fit(x, y)
        self.platt.fit(self._decisions(x), y)
        self.classes_ = self.platt.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.platt.predict_proba(self._decisions(x))
