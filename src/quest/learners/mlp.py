"""The `mlp` row: quest's Keras MLP as a learner, trained by the engine `train.engine` names.

The network itself is quest.learners.network; `fast` (quest.learners.engine) trains all of a call's networks
in one compiled program, `fit` (quest.learners.fit) is Keras' own model.fit, one network after another.
Nothing here imports Keras at import time: the backend is configured first (quest.learners.backend).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.errors import QuestError, TrainingDiverged
from quest.learners.base import Fit, Learner, OnFailure, Output, Problem
from quest.learners.callbacks import EpochHook, NonFiniteLoss, Progress
from quest.params import TrainParams

if TYPE_CHECKING:
    from quest.learners.backend import DeviceInfo
    from quest.learners.network import FitResult, Job

NAME = "mlp"
SEED_STRIDE = 10007  # between a split's extra seeds: far from the next split's seed + split + 1
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
            from quest.learners.mlp_recipe import fit_many

            return fit_many(x, y, jobs, task=task, n_classes=n_classes, spec=spec, hooks=hooks, label=label)
        from quest.learners.fit import fit_one
        from quest.learners.network import job_spec

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
    from quest.learners.network import job_spec

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
    from quest.learners.network import plan_job

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


class NetworkLearner(Learner):
    """A Keras network trained by quest's engines: each split (and copy) its own seeded initialisation, the
    backend chosen before Keras is imported, and fits with the same hyperparameters trained together.
    Subclasses say how a group of jobs trains (`train_jobs`) and which validation fraction picks their epoch."""

    kind = "neural"
    trains_together = True
    section: str  # the params section a fit's `hyper` replaces keys of
    tunable: tuple[str, ...]  # the keys of that section a search space may vary

    def __init__(self, train: TrainParams, *, seed: int, copies: int) -> None:
        self.train, self.seed, self.copies = train, seed, copies
        self._device: DeviceInfo | None = None
        self._kept: Any = None

    def configure(self) -> DeviceInfo:
        """Pick the Keras backend and device (once), before anything imports Keras."""
        if self._device is None:
            from quest.learners import backend

            spec = self.train
            self._device = backend.configure(spec.backend, spec.device, self.seed, spec.data_parallel)
        return self._device

    def device_tags(self) -> dict[str, str]:
        device = self.configure()
        return {"quest.device": device.describe(), "quest.backend": device.backend}

    def seeds(self, seed: int, index: int) -> tuple[int, ...]:
        # Each split (and copy) its own, still seeded, initialisation; copy 0 keeps seed + split + 1.
        return tuple(seed + index + 1 + SEED_STRIDE * copy for copy in range(self.copies))

    def kept_model(self) -> Any:
        return self._kept

    def check_space(self, space: Mapping[str, Any], problem: Problem) -> None:
        for name in space:
            if name not in self.tunable:
                raise QuestError(
                    f"params.yaml: tune.spaces.{self.name}.{name} must be one of the {self.section} keys "
                    f"{', '.join(self.tunable)} (got {name!r})"
                )
        layers = space.get("hidden_layers")
        if layers is not None and not (
            isinstance(layers, list)
            and all(isinstance(c, list) and all(isinstance(u, int) and u >= 1 for u in c) for c in layers)
        ):
            raise QuestError(
                f"params.yaml: tune.spaces.{self.name}.hidden_layers must be a list of layer-size lists such as "
                f"[[32], [64, 32]] (got {layers!r})"
            )

    def validation_fraction(self, hyper: Mapping[str, Any]) -> float:
        raise NotImplementedError

    def per_job(self, hyper: Mapping[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """A fit's values split in two: (what must be the same for fits to train together, as a sorted tuple;
        what each network of a program may have its own of). The default: everything must be the same."""
        return tuple(sorted(hyper.items())), {}

    def train_jobs(
        self, x: np.ndarray, y: np.ndarray, jobs: Sequence[Job], problem: Problem, hyper: Mapping[str, Any], label: str
    ) -> list[FitResult]:
        """One fresh network per job with `hyper` over the defaults, trained together where the engine can."""
        raise NotImplementedError

    def fit_predict(
        self,
        x: np.ndarray,
        y: np.ndarray,
        fits: Sequence[Fit],
        problem: Problem,
        *,
        label: str = "",
        on_failure: OnFailure | None = None,
    ) -> list[list[Output] | None]:
        """Fits with the same hyperparameters train together, in one call of the engine."""
        if not fits:
            return []
        self.configure()
        from quest.learners.network import plan_job, predict

        outputs: list[list[Output] | None] = [None] * len(fits)
        groups: dict[tuple, list[int]] = {}
        own: list[dict[str, Any]] = []
        for index, fit in enumerate(fits):
            shared, varied = self.per_job(fit.hyper)
            groups.setdefault(shared, []).append(index)
            own.append(varied)
        for members in groups.values():
            hyper = {k: v for k, v in fits[members[0]].hyper.items() if k not in own[members[0]]}
            fraction = self.validation_fraction(hyper)
            jobs = [
                dataclasses.replace(
                    plan_job(fits[i].rows, y, task=problem.task, validation_fraction=fraction, seed=fits[i].seed),
                    hyper=tuple(sorted(own[i].items())),
                )
                for i in members
            ]
            try:
                results = self.train_jobs(x, y, jobs, problem, hyper, label)
            except ValueError as error:
                if on_failure is None:
                    raise
                for i in members:
                    on_failure(fits[i], error)
                continue
            for i, result in zip(members, results, strict=True):
                outputs[i] = [predict(result.model, inputs, task=problem.task) for inputs in fits[i].predict]
                if fits[i].keep:
                    self._kept = result.model
        return outputs


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
        self, x: np.ndarray, y: np.ndarray, jobs: Sequence[Job], problem: Problem, hyper: Mapping[str, Any], label: str
    ) -> list[FitResult]:
        spec = dataclasses.replace(self.train, **hyper)
        # The fast engine reports all its networks at once; the fit engine, each network as it goes.
        hooks = [[Progress(f"{label} {n + 1}/{len(jobs)}", spec.epochs)] for n in range(len(jobs))]
        return fit_mlps(
            x,
            y,
            jobs,
            task=problem.task,
            n_classes=problem.n_classes,
            spec=spec,
            hooks=hooks if label and spec.engine == "fit" else (),
            label=label,
            feature_names=problem.feature_names,
        )


class RecipeLearner(NetworkLearner):
    """A network whose params section is one frozen spec (`realmlp`, `tabm`) and which trains only on the fast
    engine, by its recipe (quest.learners.engine.Recipe): subclasses say how a spec becomes a recipe."""

    def __init__(self, spec: Any, train: TrainParams, *, seed: int) -> None:
        super().__init__(train, seed=seed, copies=spec.seeds)
        self.spec = spec

    def check_ready(self) -> None:
        if self.train.backend != "jax":
            raise QuestError(
                f"params.yaml: {self.name} trains on the fast engine, which compiles with JAX: set train.backend: jax "
                f"(it is {self.train.backend}) or leave {self.name} out of compare.baselines"
            )

    def configure(self) -> DeviceInfo:
        self.check_ready()
        return super().configure()

    def settings(self, problem: Problem) -> dict[str, Any]:
        return {**dataclasses.asdict(self.spec), "device": self.train.device}

    def check_space(self, space: Mapping[str, Any], problem: Problem) -> None:
        super().check_space(space, problem)
        for name, spec in space.items():  # every choice and both bounds must be values the params allow
            values = spec if isinstance(spec, list) else [spec["low"], spec["high"]]
            for value in values:
                try:
                    self.with_hyper({name: value})
                except QuestError as error:
                    raise QuestError(f"{error} in tune.spaces.{self.name}.{name}") from None

    def with_hyper(self, hyper: Mapping[str, Any]) -> Any:
        """The section's params with a fit's (or trial's) values in place; the params' own checks apply."""
        return dataclasses.replace(self.spec, **{k: tuple(v) if k == "hidden_layers" else v for k, v in hyper.items()})

    def validation_fraction(self, hyper: Mapping[str, Any]) -> float:
        return self.spec.validation_fraction

    def recipe(self, spec: Any, problem: Problem, x: np.ndarray, jobs: Sequence[Job]) -> Any:
        """The engine's recipe for `spec` on this problem's inputs and jobs."""
        raise NotImplementedError

    def train_jobs(
        self, x: np.ndarray, y: np.ndarray, jobs: Sequence[Job], problem: Problem, hyper: Mapping[str, Any], label: str
    ) -> list[FitResult]:
        from quest.learners.engine import train_many

        recipe = self.recipe(self.with_hyper(hyper), problem, x, jobs)
        try:
            return train_many(x, y, jobs, recipe, label=label)
        except NonFiniteLoss as found:
            network = f"{label} network {found.job + 1}/{len(jobs)}" if label else f"network {found.job + 1}"
            raise TrainingDiverged(
                f"{self.name} diverged: its {network}'s {found.curve} is {found.value} at epoch {found.epoch}; try a "
                f"lower {self.section}.learning_rate (this one's is {recipe.learning_rate:g})"
            ) from None
