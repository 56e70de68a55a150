"""The plain MLP's recipe for the compiled engine (quest.learners.engine.train_many): the `train` params' network
from quest.learners.mlp.network, Keras' own optimizer and losses, and `fit_many`, which trains one per job.
Import only after `quest.learners.backend.configure` picked the jax backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras
import numpy as np

from quest.learners.callbacks import EpochHook
from quest.learners.engine import Loss, Penalty, Updater, model_losses, train_many
from quest.learners.jobs import FitResult, Job, output_size, to_target_units
from quest.learners.mlp.network import fresh_mlp, job_spec
from quest.learners.optimisers import KerasUpdater
from quest.params import TrainParams


def fit_many(
    x: np.ndarray,
    y: np.ndarray,
    jobs: Sequence[Job],
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    hooks: Sequence[Sequence[EpochHook]] = (),
    label: str = "",
    timings: dict[str, float] | None = None,
) -> list[FitResult]:
    """Train one fresh MLP (the `train` params' network) per job, all in one vectorised program; results in job
    order. See train_many."""
    recipe = MlpRecipe(spec, task=task, n_classes=n_classes)
    return train_many(x, y, jobs, recipe, hooks=hooks, label=label, timings=timings)


@dataclass(frozen=True)
class MlpRecipe:
    """The `train` params' MLP (quest.learners.mlp.network): Keras' own optimizer and losses on its probabilities,
    the best epoch the one with the lowest val_loss, as EarlyStopping(restore_best_weights=True) picks it."""

    spec: TrainParams
    task: str
    n_classes: int
    scheduled: bool = False
    drop_last: bool = False
    later_ties: bool = False
    members: int = 1
    narrows: bool = False
    spreads: bool = True

    @property
    def epochs(self) -> int:
        return self.spec.epochs

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def patience(self) -> int:
        return self.spec.early_stopping.patience

    @property
    def data_parallel(self) -> int | str:
        return self.spec.data_parallel

    def fresh(self, x: np.ndarray, y: np.ndarray, job: Job) -> keras.Model:
        spec = job_spec(self.spec, job)
        return fresh_mlp(x.shape[1], task=self.task, n_classes=self.n_classes, spec=spec, seed=job.seed)

    def updater(self, model: keras.Model) -> Updater:
        return KerasUpdater(model.optimizer)

    def penalty(self, model: keras.Model, jobs: Sequence[Job]) -> tuple[Penalty, dict[str, np.ndarray]]:
        """The L2 penalty of the kernels, each job at its own factor, computed as Keras' L2 regulariser does."""
        kernels = [i for i, variable in enumerate(model.trainable_variables) if variable.regularizer is not None]
        if not kernels:
            return model_losses, {}

        def penalty(losses: list, trainable: list, job: dict) -> jax.Array:
            return sum((job["l2"] * jnp.sum(jnp.square(trainable[i])) for i in kernels), jnp.zeros(()))

        return penalty, {"l2": np.array([job_spec(self.spec, job).l2 for job in jobs], dtype=np.float32)}

    def target(self, y: np.ndarray) -> np.ndarray:
        return _target(y, task=self.task, n_classes=self.n_classes)

    def train_loss(self) -> Loss:
        return _per_sample(self.task, self.n_classes)

    def validation_loss(self) -> Loss:
        return _per_sample(self.task, self.n_classes)

    def criterion(self, val_loss: jax.Array, val_metric: jax.Array) -> jax.Array:
        return val_loss

    def schedule(self, non_trainable: list, progress: jax.Array) -> list:
        return non_trainable

    def finish(self, model: keras.Model, *, shift: float, scale: float) -> None:
        if self.task == "regression":
            to_target_units(model, mean=shift, scale=scale)


def _target(y: np.ndarray, *, task: str, n_classes: int) -> np.ndarray:
    if task == "regression" or output_size(task, n_classes) == 1:
        return y.astype(np.float32).reshape(-1, 1)
    return y.astype(np.int32)


def _per_sample(task: str, n_classes: int) -> Loss:
    """(y_true, y_pred) -> loss and metric (accuracy, or absolute error) per row, as model.fit defines them."""
    regression = task == "regression"
    binary = not regression and output_size(task, n_classes) == 1

    def per_sample(y_true: jax.Array, y_pred: jax.Array) -> tuple[jax.Array, jax.Array]:
        if regression:
            return keras.losses.mean_squared_error(y_true, y_pred), jnp.abs(y_true - y_pred)[:, 0]
        if binary:
            hit = (y_pred[:, 0] > 0.5) == (y_true[:, 0] > 0.5)
            return keras.losses.binary_crossentropy(y_true, y_pred), hit.astype("float32")
        hit = jnp.argmax(y_pred, axis=-1) == y_true
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred), hit.astype("float32")

    return per_sample
