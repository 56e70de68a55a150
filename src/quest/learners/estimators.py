"""A scikit-learn-style estimator as a model quest scores: a regressor learns the standardised target, and every
model answers probabilities over all classes or predictions. The classic rows and the GBDTs build on it."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.compose import TransformedTargetRegressor
from sklearn.preprocessing import StandardScaler

from quest.learners.base import Output


def for_task(estimator: BaseEstimator, task: str) -> BaseEstimator:
    """A regressor learns the standardised target (and answers in the target's units); a classifier is as given.
    Standardising is invertible, so scikit-learn's numerical round-trip check is off: on targets spanning many
    orders of magnitude it only printed a warning that the inverse is not exact."""
    if task == "regression":
        return TransformedTargetRegressor(regressor=estimator, transformer=StandardScaler(), check_inverse=False)
    return estimator


def model_output(estimator: BaseEstimator, x: np.ndarray, *, task: str, n_classes: int) -> np.ndarray:
    """Probabilities over all `n_classes` (a fold may lack a class the estimator never saw), or predictions."""
    if task == "regression":
        return np.asarray(estimator.predict(x), dtype=np.float64)
    proba = np.zeros((len(x), n_classes))
    proba[:, np.asarray(estimator.classes_, dtype=int)] = estimator.predict_proba(x)
    return proba


class EstimatorModel:
    """A fresh scikit-learn-style estimator that answers `output`: probabilities over every class, or predictions."""

    def __init__(self, estimator: BaseEstimator, *, task: str, n_classes: int) -> None:
        self.estimator, self.task, self.n_classes = estimator, task, n_classes

    def fit(self, x: np.ndarray, y: np.ndarray) -> EstimatorModel:
        self.estimator.fit(x, y)
        return self

    def output(self, x: np.ndarray) -> Output:
        return model_output(self.estimator, x, task=self.task, n_classes=self.n_classes)
