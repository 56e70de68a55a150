"""The lecture's eight classic models plus the peers a practitioner would pick (histogram gradient boosting,
XGBoost), for classification and (with the same row names) regression."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

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
from sklearn.kernel_approximation import RBFSampler
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

# Random Fourier features for the "logistic regression on RBF features" row.
RBF_COMPONENTS = 300

Factory = Callable[[int, int], BaseEstimator]  # (n_features, seed) -> unfitted estimator
# Rows whose library is optional: skipped with a notice when it is not installed.
REQUIRES = {"xgboost": "xgboost"}


def _xgboost(kind: str, seed: int) -> BaseEstimator:
    import xgboost

    estimator = xgboost.XGBClassifier if kind == "classifier" else xgboost.XGBRegressor
    return estimator(n_estimators=300, learning_rate=0.1, tree_method="hist", random_state=seed, n_jobs=1)


def _rbf_features(n_features: int, seed: int) -> RBFSampler:
    # gamma = 1 / n_features on standardised inputs: the same width as SVC's gamma="scale".
    return RBFSampler(gamma=1.0 / n_features, n_components=RBF_COMPONENTS, random_state=seed)


CLASSIFIERS: dict[str, tuple[str, Factory]] = {
    "logreg": ("logistic regression", lambda d, s: LogisticRegression(max_iter=5000, random_state=s)),
    "logreg_rbf": (
        "logistic regression on RBF random features",
        lambda d, s: make_pipeline(_rbf_features(d, s), LogisticRegression(max_iter=5000, random_state=s)),
    ),
    "knn5": ("k-nearest neighbours, k=5", lambda d, s: KNeighborsClassifier(n_neighbors=5)),
    "knn15": ("k-nearest neighbours, k=15", lambda d, s: KNeighborsClassifier(n_neighbors=15)),
    "tree": ("decision tree", lambda d, s: DecisionTreeClassifier(random_state=s)),
    "forest": ("random forest, 200 trees", lambda d, s: RandomForestClassifier(n_estimators=200, random_state=s)),
    "boosting": ("gradient boosting", lambda d, s: GradientBoostingClassifier(random_state=s)),
    # Platt-calibrated probabilities, as scikit-learn 1.9 recommends instead of SVC(probability=True).
    "svm_rbf": (
        "RBF-kernel SVM",
        lambda d, s: CalibratedClassifierCV(SVC(kernel="rbf", random_state=s), method="sigmoid", ensemble=False),
    ),
    "hgb": ("histogram gradient boosting", lambda d, s: HistGradientBoostingClassifier(random_state=s)),
    "xgboost": ("XGBoost (hist, 300 trees)", lambda d, s: _xgboost("classifier", s)),
}

REGRESSORS: dict[str, tuple[str, Factory]] = {
    "logreg": ("ridge regression", lambda d, s: Ridge(alpha=1.0)),
    "logreg_rbf": (
        "ridge regression on RBF random features",
        lambda d, s: make_pipeline(_rbf_features(d, s), Ridge(alpha=1.0)),
    ),
    "knn5": ("k-nearest neighbours, k=5", lambda d, s: KNeighborsRegressor(n_neighbors=5)),
    "knn15": ("k-nearest neighbours, k=15", lambda d, s: KNeighborsRegressor(n_neighbors=15)),
    "tree": ("decision tree", lambda d, s: DecisionTreeRegressor(random_state=s)),
    "forest": ("random forest, 200 trees", lambda d, s: RandomForestRegressor(n_estimators=200, random_state=s)),
    "boosting": ("gradient boosting", lambda d, s: GradientBoostingRegressor(random_state=s)),
    "svm_rbf": ("RBF-kernel SVR", lambda d, s: SVR(kernel="rbf")),
    "hgb": ("histogram gradient boosting", lambda d, s: HistGradientBoostingRegressor(random_state=s)),
    "xgboost": ("XGBoost (hist, 300 trees)", lambda d, s: _xgboost("regressor", s)),
}


def available(name: str) -> bool:
    """Whether the library behind a baseline is installed."""
    module = REQUIRES.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def describe(name: str, task: str) -> str:
    return (CLASSIFIERS if task == "classification" else REGRESSORS)[name][0]


def make_baseline(name: str, *, task: str, n_features: int, seed: int) -> BaseEstimator:
    """A fresh, seeded estimator; regression targets are standardised inside (SVR and kNN need it)."""
    registry = CLASSIFIERS if task == "classification" else REGRESSORS
    estimator = registry[name][1](n_features, seed)
    if task == "regression":
        return TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler())
    return estimator


def model_output(estimator: BaseEstimator, x: np.ndarray, *, task: str, n_classes: int) -> np.ndarray:
    """Probabilities over all `n_classes` (a fold may lack a class the estimator never saw), or predictions."""
    if task == "regression":
        return np.asarray(estimator.predict(x), dtype=np.float64)
    proba = np.zeros((len(x), n_classes))
    proba[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(x)
    return proba
