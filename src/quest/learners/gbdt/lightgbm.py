"""LightGBM, the strongest gradient-boosted trees once tuned on TabArena: the library's defaults (100 trees of
31 leaves), seeded, on as many threads as this process may use, and deterministic (its histogram layout is
fixed, so the same seed gives the same trees on every run)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from quest.core import processes
from quest.core.errors import QuestError
from quest.learners import wide
from quest.learners.base import Learner, Problem
from quest.learners.estimators import EstimatorModel, for_task

# LightGBM's own parameters that its scikit-learn classes take through **kwargs (the rest have named arguments).
NATIVE = ("extra_trees", "max_bin", "min_data_per_group", "path_smooth", "linear_tree")


class LightGBM(Learner):
    name = "lightgbm"
    kind = "classic"
    requires = "lightgbm"

    def describe(self, problem: Problem) -> str:
        return wide.described("LightGBM, library defaults (100 trees, 31 leaves)", self, problem)

    def wide_recipe(self, problem: Problem) -> str:
        return f"{wide.BINS} bins a column"

    def build(self, problem: Problem, *, seed: int, hyper: Mapping[str, Any]) -> EstimatorModel:
        import lightgbm

        estimator = lightgbm.LGBMClassifier if problem.task == "classification" else lightgbm.LGBMRegressor
        settings = {
            "random_state": seed,
            "n_jobs": processes.threads(),
            "deterministic": True,
            "force_col_wise": True,  # else LightGBM picks row- or column-wise by timing them: not reproducible
            "verbose": -1,
        }
        if problem.wide:  # quest.learners.wide: each column on fewer bins
            settings["max_bin"] = wide.BINS
        model = for_task(estimator(**{**settings, **hyper}), problem.task)
        return EstimatorModel(model, task=problem.task, n_classes=problem.n_classes)

    def check_space(self, space: Mapping[str, Any], problem: Problem) -> None:
        """LightGBM takes any keyword and only warns when it fits: unknown names fail here instead."""
        import lightgbm

        known = sorted({*inspect.signature(lightgbm.LGBMModel.__init__).parameters, *NATIVE} - {"self", "kwargs"})
        for key in space:
            if key not in known:
                raise QuestError(
                    f"params.yaml: tune.spaces.{self.name}: {key!r} is not a LightGBM hyperparameter quest knows "
                    f"(known: {', '.join(known)})"
                )
        super().check_space(space, problem)
