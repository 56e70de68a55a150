"""XGBoost, the gradient-boosted trees most practitioners reach for first: histogram trees (its `hist` method),
300 of them at learning rate 0.1, seeded, on one thread (the process pool runs it beside the other rows)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quest.learners import wide
from quest.learners.base import Learner, Problem
from quest.learners.estimators import EstimatorModel, for_task

DEFAULTS = {"n_estimators": 300, "learning_rate": 0.1, "tree_method": "hist", "n_jobs": 1}


class XGBoost(Learner):
    name = "xgboost"
    kind = "classic"
    requires = "xgboost"

    def describe(self, problem: Problem) -> str:
        return wide.described("XGBoost (hist, 300 trees)", self, problem)

    def wide_recipe(self, problem: Problem) -> str:
        return f"{wide.BINS} bins a column"

    def build(self, problem: Problem, *, seed: int, hyper: Mapping[str, Any]) -> EstimatorModel:
        import xgboost

        estimator = xgboost.XGBClassifier if problem.task == "classification" else xgboost.XGBRegressor
        settings = {**DEFAULTS, "random_state": seed}
        if problem.wide:  # quest.learners.wide: each column on fewer bins
            settings["max_bin"] = wide.BINS
        model = for_task(estimator(**{**settings, **hyper}), problem.task)
        return EstimatorModel(model, task=problem.task, n_classes=problem.n_classes)
