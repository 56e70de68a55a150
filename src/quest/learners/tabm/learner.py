"""The `tabm` row: TabM (Gorishniy et al., ICLR 2025) ported to Keras 3, trained by quest's fast engine with
every split's network in one compiled program. The network and its recipe are quest.learners.tabm.network;
nothing here imports Keras at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.learners import wide
from quest.learners.base import Problem
from quest.learners.neural import RecipeLearner
from quest.learners.tabm.params import TabmParams
from quest.params import TrainParams

if TYPE_CHECKING:
    from quest.learners.jobs import Job
    from quest.learners.tabm.network import TabmRecipe

NAME = "tabm"
# The tabm keys a search space may vary.
TUNABLE = (
    "arch",
    "members",
    "embedding",
    "bins",
    "embedding_dims",
    "blocks",
    "width",
    "dropout_rate",
    "learning_rate",
    "weight_decay",
    "batch_size",
)


class TabM(RecipeLearner):
    """TabM with the `tabm` params; a fit's `hyper` replaces tabm keys (a tuning trial's values). It trains on
    the fast engine, so on the jax backend, on the device `train.device` names."""

    name, section, tunable = NAME, "tabm", TUNABLE
    spec: TabmParams

    def __init__(self, spec: TabmParams, train: TrainParams, *, seed: int) -> None:
        super().__init__(spec, train, seed=seed)

    def describe(self, problem: Problem) -> str:
        spec = self.table_spec(problem)
        embedding = ", piecewise-linear embeddings" if spec.embedding == "piecewise" else ""
        arch = "TabM" if spec.arch == "tabm" else "TabM-mini"
        return wide.described(
            f"{arch} in Keras (k={spec.members}, {spec.depth}x{spec.width}{embedding})", self, problem
        )

    def wide_recipe(self, problem: Problem) -> str:
        return "no piecewise-linear embeddings" if self.spec.embedding == "piecewise" else ""

    def wide_values(self) -> dict[str, Any]:
        return {"embedding": "none"}  # each column one input, as TabM without embeddings

    def recipe(self, spec: TabmParams, problem: Problem, x: np.ndarray, jobs: Sequence[Job]) -> TabmRecipe:
        from quest.learners.tabm.network import TabmLayout, TabmRecipe

        layout = TabmLayout.of(x.shape[1], problem.feature_columns)
        rows = min(len(job.fit_rows) for job in jobs)
        return TabmRecipe(
            spec,
            layout,
            task=problem.task,
            n_classes=problem.n_classes,
            rows=rows,
            data_parallel=self.train.data_parallel,
        )
