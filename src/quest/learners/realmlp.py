"""The `realmlp` row: RealMLP-TD (Holzmüller et al., NeurIPS 2024) ported to Keras 3, trained by quest's fast
engine with every split's network in one compiled program. The network and its recipe are
quest.learners.realmlp_network; nothing here imports Keras at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.errors import QuestError, TrainingDiverged
from quest.learners.base import Problem
from quest.learners.callbacks import NonFiniteLoss
from quest.learners.mlp import NetworkLearner
from quest.params import RealMlpParams, TrainParams

if TYPE_CHECKING:
    from quest.learners.network import FitResult, Job

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


class RealMLP(NetworkLearner):
    """RealMLP-TD with the `realmlp` params; a fit's `hyper` replaces realmlp keys (a tuning trial's values).
    It trains on the fast engine, so on the jax backend, on the device `train.device` names."""

    name, section, tunable = NAME, "realmlp", TUNABLE

    def __init__(self, spec: RealMlpParams, train: TrainParams, *, seed: int) -> None:
        super().__init__(train, seed=seed, copies=spec.seeds)
        self.spec = spec

    def check_ready(self) -> None:
        if self.train.backend != "jax":
            raise QuestError(
                f"params.yaml: realmlp trains on the fast engine, which compiles with JAX: set train.backend: jax "
                f"(it is {self.train.backend}) or leave realmlp out of compare.baselines"
            )

    def configure(self):  # noqa: ANN201 (DeviceInfo, imported lazily)
        self.check_ready()
        return super().configure()

    def settings(self, problem: Problem) -> dict[str, Any]:
        return {**dataclasses.asdict(self.spec), "device": self.train.device}

    def describe(self, problem: Problem) -> str:
        layers = "-".join(str(units) for units in self.spec.hidden_layers)
        return f"RealMLP-TD in Keras ({layers}, {self.spec.epochs} epochs)"

    def check_space(self, space: Mapping[str, Any], problem: Problem) -> None:
        super().check_space(space, problem)
        for name, spec in space.items():  # every choice and both bounds must be values the params allow
            values = spec if isinstance(spec, list) else [spec["low"], spec["high"]]
            for value in values:
                try:
                    self.with_hyper({name: value})
                except QuestError as error:
                    raise QuestError(f"{error} in tune.spaces.realmlp.{name}") from None

    def with_hyper(self, hyper: Mapping[str, Any]) -> RealMlpParams:
        """The realmlp params with a fit's (or trial's) values in place; the params' own checks apply."""
        return dataclasses.replace(self.spec, **{k: tuple(v) if k == "hidden_layers" else v for k, v in hyper.items()})

    def validation_fraction(self, hyper: Mapping[str, Any]) -> float:
        return self.spec.validation_fraction

    def train_jobs(
        self, x: np.ndarray, y: np.ndarray, jobs: Sequence[Job], problem: Problem, hyper: Mapping[str, Any], label: str
    ) -> list[FitResult]:
        from quest.learners.engine import train_many
        from quest.learners.realmlp_network import Layout, RealMlpRecipe

        spec = self.with_hyper(hyper)
        layout = Layout.of(x.shape[1], problem.feature_columns, problem.feature_names, one_hot_max=spec.one_hot_max)
        recipe = RealMlpRecipe(
            spec, layout, task=problem.task, n_classes=problem.n_classes, data_parallel=self.train.data_parallel
        )
        try:
            return train_many(x, y, jobs, recipe, label=label)
        except NonFiniteLoss as found:
            network = f"{label} network {found.job + 1}/{len(jobs)}" if label else f"network {found.job + 1}"
            raise TrainingDiverged(
                f"realmlp diverged: its {network}'s {found.curve} is {found.value} at epoch {found.epoch}; try a "
                f"lower realmlp.learning_rate (this one's is {recipe.learning_rate:g})"
            ) from None
