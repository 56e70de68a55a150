"""The `mlp` row: quest's Keras MLP as a learner, trained by the engine `train.engine` names.

The network itself is quest.learners.mlp.network; `fast` (quest.learners.engine) trains all of a call's networks
in one compiled program, `fit` (quest.learners.mlp.fit) is Keras' own model.fit, one network after another.
Nothing here imports Keras at import time: the backend is configured first (quest.learners.backend).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.core.errors import TrainingDiverged
from quest.learners.base import Problem
from quest.learners.callbacks import EpochHook, NonFiniteLoss, Progress
from quest.learners.neural import NetworkLearner
from quest.params import TrainParams

if TYPE_CHECKING:
    from quest.learners.jobs import FitResult, Job

NAME = "mlp"
# The train keys a search space may vary.
TUNABLE = ("hidden_layers", "activation", "dropout_rate", "l2", "learning_rate", "batch_size", "optimizer")
# Those the fast engine lets each network of one program have its own of: fits (tuning trials) that differ only
# in them train together. Dropout and L2 only while on (above 0), as their layers and penalties are then there.
# Not the batch size: one program with several takes as many steps as the smallest batches need, each as wide as
# the largest. Tried on the default space's 30 trials, that was slower than a program per batch size, and its
# wider sums moved one trial's score.
PER_JOB = ("learning_rate", "dropout_rate", "l2")


def fit_mlps(
    x: np.ndarray,
    y: np.ndarray,
    jobs: Sequence[Job],
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    hooks: Sequence[Sequence[EpochHook]] = (),
    label: str = "",
    feature_names: Sequence[str] = (),
) -> list[FitResult]:
    """One fresh MLP per job, trained by the engine `spec.engine` names; results in job order.

    `fast` trains every job together in compiled JAX programs; `fit` is Keras' own `model.fit`, one job after
    another, kept as the reference. `hooks[j]` see job j's epochs. Both engines stop at the first epoch whose
    loss or val_loss is not finite: TrainingDiverged names the network, the epoch and what to try.
    """
    try:
        if spec.engine == "fast" and jobs:
            from quest.learners.mlp.recipe import fit_many

            return fit_many(x, y, jobs, task=task, n_classes=n_classes, spec=spec, hooks=hooks, label=label)
        from quest.learners.mlp.fit import fit_one
        from quest.learners.mlp.network import job_spec

        results = []
        for index, job in enumerate(jobs):
            try:
                job_hooks = hooks[index] if index < len(hooks) else ()
                own = job_spec(spec, job)
                results.append(fit_one(x, y, job, task=task, n_classes=n_classes, spec=own, hooks=job_hooks))
            except NonFiniteLoss as found:
                raise NonFiniteLoss(job=index, epoch=found.epoch, curve=found.curve, value=found.value) from None
        return results
    except NonFiniteLoss as found:
        raise TrainingDiverged(diverged(found, x, jobs, label=label, spec=spec, feature_names=feature_names)) from None


def diverged(
    found: NonFiniteLoss,
    x: np.ndarray,
    jobs: Sequence[Job],
    *,
    label: str,
    spec: TrainParams,
    feature_names: Sequence[str],
) -> str:
    """What went wrong, where, and what to try: a lower learning rate, or rescaling the most extreme input."""
    from quest.learners.mlp.network import job_spec

    network = f"{label} network {found.job + 1}/{len(jobs)}" if label and len(jobs) > 1 else f"{label} network".strip()
    job = jobs[found.job]
    rate = job_spec(spec, job).learning_rate
    rows = x[job.fit_rows]
    extremes = np.abs(rows).max(axis=0) if rows.size else np.zeros(x.shape[1])
    widest = int(np.argmax(extremes)) if extremes.size else -1
    column = ""
    if widest >= 0:
        name = feature_names[widest] if widest < len(feature_names) else f"input {widest + 1}"
        column = f", or rescale {name!r}, its most extreme input (up to {extremes[widest]:.3g} after scaling)"
    return (
        f"the MLP diverged: the {network}'s {found.curve} is {found.value} at epoch {found.epoch}; try a lower "
        f"train.learning_rate (this network's is {rate:g}){column}"
    )


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    n_classes: int,
    spec: TrainParams,
    seed: int,
    hooks: Sequence[EpochHook] = (),
    feature_names: Sequence[str] = (),
) -> FitResult:
    """Build and fit a fresh MLP on all of (x, y); early stopping on a validation slice of it restores the best
    epoch's weights."""
    from quest.learners.jobs import plan_job

    job = plan_job(
        np.arange(len(y)), y, task=task, validation_fraction=spec.early_stopping.validation_fraction, seed=seed
    )
    return fit_mlps(
        x,
        y,
        [job],
        task=task,
        n_classes=n_classes,
        spec=spec,
        hooks=[hooks],
        label="final",
        feature_names=feature_names,
    )[0]


class MLP(NetworkLearner):
    """The Keras MLP of `train` params; a fit's `hyper` replaces train keys (a tuning trial's values)."""

    name, section, tunable = NAME, "train", TUNABLE

    def __init__(self, train: TrainParams, *, seed: int) -> None:
        super().__init__(train, seed=seed, copies=train.seeds)

    def settings(self, problem: Problem) -> dict[str, Any]:
        return dataclasses.asdict(self.train)

    def describe(self, problem: Problem) -> str:
        return "Keras MLP"

    def validation_fraction(self, hyper: Mapping[str, Any]) -> float:
        return self.train.early_stopping.validation_fraction

    def per_job(self, hyper: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """On the fast engine, tuning trials that differ only in learning rate, dropout rate and L2 (the latter two
        both on, or both off) train in one program."""
        if not self.trials_together:
            return super().per_job(hyper)
        spec = dataclasses.replace(self.train, **hyper)
        varied = {k: v for k, v in hyper.items() if k in PER_JOB}
        shared = {k: v for k, v in hyper.items() if k not in PER_JOB}
        shared.update({"dropout_on": spec.dropout_rate > 0, "l2_on": spec.l2 > 0})
        return tuple(sorted(shared.items())), varied

    @property
    def trials_together(self) -> bool:  # the fast engine gives each network its own values of PER_JOB
        return self.train.engine == "fast"

    def train_jobs(
        self,
        x: np.ndarray,
        y: np.ndarray,
        jobs: Sequence[Job],
        problem: Problem,
        hyper: Mapping[str, Any],
        label: str,
        *,
        hooks: Sequence[Sequence[EpochHook]] = (),
    ) -> list[FitResult]:
        spec = dataclasses.replace(self.train, **hyper)
        # A job's own hooks (the train stage's final network); else, on the fit engine, a progress line per
        # network as it goes (the fast engine reports all its networks at once).
        progress = bool(label) and spec.engine == "fit"
        watched = []
        for n in range(len(jobs)):
            own = list(hooks[n]) if n < len(hooks) else []
            watched.append(own or ([Progress(f"{label} {n + 1}/{len(jobs)}", spec.epochs)] if progress else []))
        return fit_mlps(
            x,
            y,
            jobs,
            task=problem.task,
            n_classes=problem.n_classes,
            spec=spec,
            hooks=watched if any(watched) else (),
            label=label,
            feature_names=problem.feature_names,
        )
