"""What the networks' learners share: a Keras network per fit, trained by quest's engines with each split's own
seeded initialisation (NetworkLearner), and a network whose section is one frozen spec trained by its recipe
(RecipeLearner: RealMLP, TabM)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.core.errors import QuestError, TrainingDiverged
from quest.learners.base import Fit, Fitted, Learner, OnFailure, Problem
from quest.learners.callbacks import EpochHook, NonFiniteLoss
from quest.params import TrainParams

if TYPE_CHECKING:
    from quest.learners.backend import DeviceInfo
    from quest.learners.jobs import FitResult, Job


SEED_STRIDE = 10007  # between a split's extra seeds: far from the next split's seed + split + 1


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
        """One fresh network per job with `hyper` over the defaults, trained together where the engine can;
        `hooks[j]` watch job j's epochs."""
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
    ) -> list[Fitted | None]:
        """Fits with the same hyperparameters train together, in one call of the engine; a fit marked `keep`
        gives its network back with its outputs."""
        if not fits:
            return []
        self.configure()
        from quest.learners.jobs import plan_job
        from quest.learners.networks import predict

        outputs: list[Fitted | None] = [None] * len(fits)
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
                    plan_job(
                        fits[i].rows,
                        y,
                        task=problem.task,
                        validation_fraction=fraction,
                        seed=fits[i].seed,
                        division=problem.division,
                    ),  # fmt: skip
                    hyper=tuple(sorted(own[i].items())),
                )
                for i in members
            ]
            hooks = [fits[i].hooks for i in members]
            try:
                results = self.train_jobs(x, y, jobs, problem, hyper, label, hooks=hooks)
            except ValueError as error:
                if on_failure is None:
                    raise
                for i in members:
                    on_failure(fits[i], error)
                continue
            for i, result in zip(members, results, strict=True):
                answers = [predict(result.model, inputs, task=problem.task) for inputs in fits[i].predict]
                outputs[i] = Fitted(answers, trained=result if fits[i].keep else None)
        return outputs


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
                f"(it is {self.train.backend}) or leave {self.name} out of compare.models"
            )

    def configure(self) -> DeviceInfo:
        self.check_ready()
        return super().configure()

    def settings(self, problem: Problem) -> dict[str, Any]:
        return {**dataclasses.asdict(self.table_spec(problem)), "device": self.train.device}

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

    def wide_values(self) -> dict[str, Any]:
        """The section's values on a wide table (quest.learners.wide), under a fit's own; none by default."""
        return {}

    def large_values(self, problem: Problem) -> dict[str, Any]:
        """The section's values past compare.scale_threshold training rows, under a fit's own; none by default."""
        return {}

    def table_values(self, problem: Problem) -> dict[str, Any]:
        """The section's values this table's recipes set: the wide one's, the large one's."""
        return {**(self.wide_values() if problem.wide else {}), **(self.large_values(problem) if problem.large else {})}

    def table_spec(self, problem: Problem) -> Any:
        """The section's params as this table trains them, before a fit's own values."""
        values = self.table_values(problem)
        return self.with_hyper(values) if values else self.spec

    def recipe(self, spec: Any, problem: Problem, x: np.ndarray, jobs: Sequence[Job]) -> Any:
        """The engine's recipe for `spec` on this problem's inputs and jobs."""
        raise NotImplementedError

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
        from quest.learners.engine import train_many

        values = {**self.table_values(problem), **hyper}
        recipe = self.recipe(self.with_hyper(values), problem, x, jobs)
        try:
            return train_many(x, y, jobs, recipe, hooks=hooks, label=label)
        except NonFiniteLoss as found:
            network = f"{label} network {found.job + 1}/{len(jobs)}" if label else f"network {found.job + 1}"
            raise TrainingDiverged(
                f"{self.name} diverged: its {network}'s {found.curve} is {found.value} at epoch {found.epoch}; try a "
                f"lower {self.section}.learning_rate (this one's is {recipe.learning_rate:g})"
            ) from None
