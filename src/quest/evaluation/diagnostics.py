"""The MLP's test-set diagnostics as data: ROC and precision-recall lines, and the CSV tables DVC plots."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def roc_pr_lines(y_true: np.ndarray, proba: np.ndarray, labels: tuple[str, ...]) -> tuple[dict, dict]:
    """ROC and PR lines: the positive class of a binary problem, else one-vs-rest per class."""
    classes = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    roc, pr = {}, {}
    for k in classes:
        positive = y_true == k
        if positive.all() or not positive.any():
            continue  # a curve needs both outcomes
        fpr, tpr, _ = skm.roc_curve(positive, proba[:, k])
        precision, recall, _ = skm.precision_recall_curve(positive, proba[:, k])
        name = labels[k]
        roc[f"{name} (AUC {skm.auc(fpr, tpr):.3f})"] = (fpr, tpr)
        pr[f"{name} (AP {skm.average_precision_score(positive, proba[:, k]):.3f})"] = (recall, precision)
    return roc, pr


def csv_table(header: list[str], columns: list[np.ndarray]) -> str:
    rows = [",".join(header)]
    rows += [",".join(_cell(value) for value in row) for row in zip(*columns, strict=True)]
    return "\n".join(rows) + "\n"


def _cell(value: object) -> str:
    return repr(float(value)) if isinstance(value, float | np.floating) else str(value)
