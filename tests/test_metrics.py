import math

import numpy as np
import pytest

from quest.core.errors import QuestError
from quest.evaluation.metrics import classification_scores, primary_metric, regression_scores


def test_binary_scores_match_a_hand_computed_example():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    scores = classification_scores(y, proba)
    assert scores["accuracy"] == 0.5
    assert scores["balanced_accuracy"] == 0.5
    assert scores["f1"] == 0.5  # one true positive, one false positive, one false negative
    assert scores["roc_auc"] == 0.75  # 3 of the 4 positive/negative pairs are ordered correctly
    expected_log_loss = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.3)) / 4
    assert scores["log_loss"] == pytest.approx(expected_log_loss, rel=1e-12)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_multiclass_uses_macro_averages_and_tolerates_an_absent_class():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.5, 0.2, 0.3]])
    scores = classification_scores(y, proba)
    assert scores["accuracy"] == 0.75
    assert scores["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert scores["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    one_class = classification_scores(np.array([1, 1]), np.array([[0.2, 0.8], [0.6, 0.4]]))
    assert math.isnan(one_class["roc_auc"])


def test_regression_scores():
    scores = regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert scores["mae"] == pytest.approx(2 / 3)
    assert scores["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert scores["r2"] == pytest.approx(-1.0)


def test_primary_metric():
    assert primary_metric("auto", "classification") == "accuracy"
    assert primary_metric("auto", "regression") == "r2"
    # TabArena's: ROC AUC for two classes, log loss for more, RMSE for regression.
    assert primary_metric("tabarena", "classification", 2) == "roc_auc"
    assert primary_metric("tabarena", "classification", 3) == "log_loss"
    assert primary_metric("tabarena", "regression", 0) == "rmse"
    allowed = "allows auto, tabarena, r2, rmse, mae"
    with pytest.raises(QuestError, match=f"compare.metric is accuracy but a regression task {allowed}"):
        primary_metric("accuracy", "regression")
