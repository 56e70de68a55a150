"""Scores shared by the MLP and every baseline, so the same keys mean the same thing everywhere."""

from __future__ import annotations

import numpy as np

from quest.core.errors import QuestError

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("r2", "rmse", "mae")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


def primary_metric(metric: str, task: str, n_classes: int = 2) -> str:
    """The comparison's metric: `auto` is accuracy for classification and r2 for regression; `tabarena` is what
    TabArena judges each task on, ROC AUC for two classes, log loss for more, RMSE for regression, so that a
    table's numbers sit beside the published ones (accuracy flatters on imbalanced tables)."""
    if metric == "auto":
        return "accuracy" if task == "classification" else "r2"
    if metric == "tabarena":
        return "rmse" if task == "regression" else "roc_auc" if n_classes <= 2 else "log_loss"
    allowed = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    if metric not in allowed:
        raise QuestError(f"compare.metric is {metric} but a {task} task allows auto, tabarena, {', '.join(allowed)}")
    return metric


def classification_scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1, ROC AUC and log loss; macro averages when there are 3+ classes.

    `proba` holds one column per class of the whole problem, so a fold missing a class still scores.
    """
    from sklearn import metrics as skm  # here, not at the top: the report stage reads this module's names only

    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 outputs sum to 1 only up to rounding
    n_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    labels = np.arange(n_classes)
    binary = n_classes == 2
    scores = {
        "accuracy": skm.accuracy_score(y_true, predicted),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, predicted),
        "f1": skm.f1_score(
            y_true,
            predicted,
            average="binary" if binary else "macro",
            labels=None if binary else labels,
            zero_division=0,
        ),
        "log_loss": skm.log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=labels),
    }
    if len(np.unique(y_true)) < 2:
        scores["roc_auc"] = float("nan")  # undefined with one class present
    elif binary:
        scores["roc_auc"] = skm.roc_auc_score(y_true, proba[:, 1])
    else:
        scores["roc_auc"] = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
    return {name: float(scores[name]) for name in CLASSIFICATION_METRICS}


def regression_scores(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    # float64: the squared errors of float32 targets overflow near 1e19
    y_true, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    return {
        "r2": float(skm.r2_score(y_true, predicted)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, predicted))),
        "mae": float(skm.mean_absolute_error(y_true, predicted)),
    }


def scores(task: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """All metrics of a task from a model's output: probabilities (classification) or predictions."""
    return classification_scores(y_true, output) if task == "classification" else regression_scores(y_true, output)
