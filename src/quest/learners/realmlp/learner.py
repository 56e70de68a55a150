"""The `realmlp` row: RealMLP-TD (Holzmüller et al., NeurIPS 2024) ported to Keras 3, trained by quest's fast
engine with every split's network in one compiled program. The network and its recipe are
quest.learners.realmlp.network; nothing here imports Keras at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.learners import wide
from quest.learners.base import Problem
from quest.learners.neural import RecipeLearner
from quest.learners.realmlp.params import RealMlpParams
from quest.params import TrainParams

if TYPE_CHECKING:
    from quest.learners.jobs import Job
    from quest.learners.realmlp.network import RealMlpRecipe

NAME = "realmlp"
# The realmlp keys a search space may vary.
TUNABLE = (
    "hidden_layers",
    "activation",
    "embedding_frequencies",
    "embedding_sigma",
    "embedding_dims",
    "embedding_lr_factor",
    "one_hot_max",
    "categorical_embedding",
    "scale_lr_factor",
    "dropout_rate",
    "weight_decay",
    "learning_rate",
    "beta2",
    "label_smoothing",
    "epochs",
    "batch_size",
)


class RealMLP(RecipeLearner):
    """RealMLP-TD with the `realmlp` params; a fit's `hyper` replaces realmlp keys (a tuning trial's values).
    It trains on the fast engine, so on the jax backend, on the device `train.device` names."""

    name, section, tunable = NAME, "realmlp", TUNABLE
    spec: RealMlpParams

    def __init__(self, spec: RealMlpParams, train: TrainParams, *, seed: int) -> None:
        super().__init__(spec, train, seed=seed)

    def describe(self, problem: Problem) -> str:
        spec = self.table_spec(problem)
        layers = "-".join(str(units) for units in spec.hidden_layers)
        if spec.epochs == self.spec.epochs:
            return wide.described(f"RealMLP-TD in Keras ({layers}, {spec.epochs} epochs)", self, problem)
        text = (
            f"RealMLP-TD in Keras ({layers}), scalable: {spec.epochs} epochs instead of {self.spec.epochs}, the "
            "steps of compare.scale_threshold's rows"
        )
        return wide.described(text, self, problem)

    def wide_recipe(self, problem: Problem) -> str:
        return "no numeric embeddings" if self.spec.embedding_frequencies else ""

    def wide_values(self) -> dict[str, Any]:
        return {"embedding_frequencies": 0}  # each column one input, as RealMLP-TD-S

    def has_stand_in(self) -> bool:
        return True

    def large_values(self, problem: Problem) -> dict[str, Any]:
        """Past compare.scale_threshold training rows, RealMLP runs every epoch of batches of 256, so its cost grows
        with the rows: it trains the optimiser steps it takes on the threshold's rows, its schedules spread over
        fewer epochs (realmlp.epochs x the threshold's share of the rows)."""
        return {"epochs": max(1, round(self.spec.epochs * problem.row_share))}

    def recipe(self, spec: RealMlpParams, problem: Problem, x: np.ndarray, jobs: Sequence[Job]) -> RealMlpRecipe:
        from quest.learners.realmlp.network import Layout, RealMlpRecipe

        layout = Layout.of(x.shape[1], problem.feature_columns, problem.feature_names, one_hot_max=spec.one_hot_max)
        return RealMlpRecipe(
            spec, layout, task=problem.task, n_classes=problem.n_classes, data_parallel=self.train.data_parallel
        )
