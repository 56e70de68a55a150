"""One way to score every learner: fit on the shared CV splits' training rows and score the held-out rows,
fit on the whole training split and score the test split. The comparison, the train stage's CV of the MLP,
the learning curves and the tuning trials all go through `scores_of`, so a model scores the same wherever
it is scored.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.core import cluster, interrupts, processes, progress
from quest.core.errors import QuestError, TooLarge, first_line
from quest.data.artifacts import Prepared
from quest.evaluation.metrics import scores
from quest.learners.base import Fit, Learner, OnFailure, Problem

if TYPE_CHECKING:
    from quest.learners.jobs import FitResult


@dataclass(frozen=True)
class ModelResult:
    """A model's scores on the shared splits and on the test split."""

    name: str
    folds: dict[str, list[float]]  # metric -> one score per shared fold
    test: dict[str, float]  # metric -> held-out test score
    seconds: float = 0.0  # wall time of CV + final fit (logged, never written to DVC-tracked files)
    # The final fit's trained network, where the learner can save one (a neural learner, which runs in this
    # process); None for an estimator and for a result read back from files.
    model: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Skipped:
    """A model left out of the comparison before it trained, and why (it would not fit in memory)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Scored:
    """Rows whose outputs are scored: one learner's fits on them (several seeds, averaged) are one score."""

    rows: np.ndarray  # training rows the models learn from
    targets: tuple[np.ndarray, ...]  # per input scored: its true values
    inputs: tuple[np.ndarray, ...]  # the inputs scored
    index: int  # the split or trial number: the learner draws its seeds from it
    keep: bool = False  # the final fit: the first copy's model comes back with its scores, where it can be saved
    hooks: tuple[Any, ...] = ()  # epoch hooks watching the first copy's network (the train stage's final MLP)
    copies: int | None = None  # the first n of the learner's copies only (None: all)
    hyper: Mapping[str, Any] = field(default_factory=dict)  # this cell's values over the call's (a trial's)


@dataclass(frozen=True)
class CellResult:
    """One cell's scores, per scored input every metric (the mean over the learner's copies), and its first
    copy's trained network where the cell asked to keep it and the learner can save one (Fitted.trained)."""

    scores: list[dict[str, float]]
    trained: FitResult | None = None

    @property
    def model(self) -> Any:
        return self.trained.model if self.trained is not None else None


def scores_of(
    learner: Learner,
    x: np.ndarray,
    y: np.ndarray,
    cells: Sequence[Scored],
    problem: Problem,
    *,
    seed: int,
    hyper: dict | None = None,
    label: str = "",
    on_failure: OnFailure | None = None,
) -> list[list[dict[str, float]] | None]:
    """Per cell, per scored input, every metric (`results_of`'s scores)."""
    found = results_of(learner, x, y, cells, problem, seed=seed, hyper=hyper, label=label, on_failure=on_failure)
    return [cell.scores if cell is not None else None for cell in found]


def results_of(
    learner: Learner,
    x: np.ndarray,
    y: np.ndarray,
    cells: Sequence[Scored],
    problem: Problem,
    *,
    seed: int,
    hyper: dict | None = None,
    label: str = "",
    on_failure: OnFailure | None = None,
) -> list[CellResult | None]:
    """Per cell, its scores: per scored input, every metric, the mean over the models the learner fits on the
    cell's rows of (x, y) (one per seed it draws); and its kept model. All the fits go to the learner at once;
    a cell none of whose fits could be made is None."""
    fits, owner = [], []
    for number, cell in enumerate(cells):
        for copy, copy_seed in enumerate(learner.seeds(seed, cell.index)[: cell.copies]):
            first = copy == 0
            values = {**(hyper or {}), **cell.hyper}
            hooks = cell.hooks if first else ()
            fits.append(Fit(cell.rows, cell.inputs, copy_seed, hyper=values, keep=cell.keep and first, hooks=hooks))
            owner.append(number)
    fitted = learner.fit_predict(x, y, fits, problem, label=label, on_failure=on_failure)
    per_cell: list[list[list[dict[str, float]]]] = [[] for _ in cells]
    kept: list[FitResult | None] = [None] * len(cells)
    for number, done in zip(owner, fitted, strict=True):
        if done is not None:
            cell = cells[number]
            for out in done.outputs:
                _check_finite(learner.name, out)
            per_cell[number].append(
                [scores(problem.task, truth, out) for truth, out in zip(cell.targets, done.outputs, strict=True)]
            )
            if done.trained is not None:
                kept[number] = done.trained
    return [
        CellResult(_mean_over_copies(copies), kept[number]) if copies else None
        for number, copies in enumerate(per_cell)
    ]


def _check_finite(name: str, output: np.ndarray) -> None:
    """No NaN reaches a metric: a model whose outputs are not all finite ends the stage, naming it."""
    bad = int(np.count_nonzero(~np.isfinite(output)))
    if bad:
        raise QuestError(
            f"{name} gave {bad} non-finite output(s) of {output.size}; no metric is computed from them "
            "(look for extreme values in the table, or leave the model out of compare.models)"
        )


def _mean_over_copies(copies: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    return [
        {name: float(np.mean([copy[target][name] for copy in copies])) for name in copies[0][target]}
        for target in range(len(copies[0]))
    ]


def cv_cells(prepared: Prepared, *, limit: int | None = None) -> list[Scored]:
    """Every shared split (the first `limit`): fit on its training rows, score its held-out rows."""
    return [
        Scored(
            rows=np.flatnonzero(training),
            targets=(prepared.y_train[held_out],),
            inputs=(prepared.x_train[held_out],),
            index=split,
        )
        for split, training, held_out in prepared.splits()
        if limit is None or split < limit
    ]


def final_cell(prepared: Prepared) -> Scored:
    """The final fit: the whole training split, scored on the test split."""
    # Index -1: the final fit, whose network seeds draw `seed` itself (split n draws seed + n + 1), as in train.
    everything = np.arange(len(prepared.y_train))
    return Scored(rows=everything, targets=(prepared.y_test,), inputs=(prepared.x_test,), index=-1, keep=True)


def final_fit(
    learner: Learner,
    prepared: Prepared,
    problem: Problem,
    *,
    seed: int,
    hooks: Sequence[Any] = (),
    label: str = "final",
) -> FitResult:
    """The learner's model on the whole training split, trained as the comparison's final fit trains its first
    copy, and kept with how it trained; `hooks` watch its epochs. Nothing is scored: the test split is evaluate's."""
    everything = np.arange(len(prepared.y_train))
    cell = Scored(everything, targets=(), inputs=(), index=-1, keep=True, hooks=tuple(hooks), copies=1)
    (found,) = results_of(learner, prepared.x_train, prepared.y_train, [cell], problem, seed=seed, label=label)
    assert found is not None and found.trained is not None, f"{learner.name} keeps no model of its fits"
    return found.trained


def _per_metric(per_split: Sequence[list[dict[str, float]] | None]) -> dict[str, list[float]]:
    return {name: [split[0][name] for split in per_split] for name in per_split[0][0]}


def cross_validate(
    learner: Learner, prepared: Prepared, problem: Problem, *, seed: int, label: str = ""
) -> dict[str, list[float]]:
    """Per metric, one score per shared split, in split order."""
    cells = cv_cells(prepared)
    return _per_metric(scores_of(learner, prepared.x_train, prepared.y_train, cells, problem, seed=seed, label=label))


def evaluate(learner: Learner, prepared: Prepared, problem: Problem, *, seed: int) -> ModelResult:
    """CV on the shared folds and a fit on the whole training split scored on the test split, handed to the
    learner together (a learner that trains its fits together trains them all in one program)."""
    started = time.perf_counter()
    need, available = learner.memory_needed(*prepared.x_train.shape), processes.memory_available()
    if need > available:
        raise TooLarge(
            f"one fit would need about {processes.size_text(need)} and {processes.size_text(available)} is available"
        )
    try:
        cells = [*cv_cells(prepared), final_cell(prepared)]
        with interrupts.during(f"fitting {learner.name}"), progress.working_on(learner.name):
            found = results_of(learner, prepared.x_train, prepared.y_train, cells, problem, seed=seed)
    except ValueError as error:  # the estimator refused the table: name it, in one line
        raise QuestError(
            f"{learner.name} cannot be fitted on this table ({first_line(error)}); leave it out of compare.models"
        ) from None
    final = found[-1]
    assert final is not None and all(found), "without on_failure a refused fit raises"
    folds = _per_metric([cell.scores for cell in found[:-1]])
    seconds = time.perf_counter() - started
    return ModelResult(name=learner.name, folds=folds, test=final.scores[0], seconds=seconds, model=final.model)


def evaluate_or_skip(learner: Learner, prepared: Prepared, problem: Problem, *, seed: int) -> ModelResult | Skipped:
    """`evaluate`, or why the learner was skipped: it would not fit in the memory available (quest.core.errors.TooLarge,
    raised before any of its fits trains)."""
    try:
        return evaluate(learner, prepared, problem, seed=seed)
    except TooLarge as error:
        return Skipped(learner.name, str(error))


def evaluate_all(
    learners: Sequence[Learner],
    prepared: Prepared,
    problem: Problem,
    *,
    seed: int,
    workers: int | None = None,
    executor: str = "local",
) -> Iterator[ModelResult | Skipped]:
    """`evaluate_or_skip` for each learner, in order, spread over `workers` processes (all cores), or over a Dask
    cluster's workers when `executor` (or QUEST_EXECUTOR) names one (quest.core.cluster).

    Workers are forked, so they share the prepared arrays instead of receiving a pickled copy; each model's
    result is the same as in one process (its model, data and seed do not depend on where it runs). Learners
    that fill the cores with one fit run here, after the others, on every core; learners that train together run
    here too, on a thread beside the workers from the start.
    """
    workers = min(len(learners), workers or len(os.sched_getaffinity(0)))
    chosen = cluster.executor(executor)
    if chosen != "local":
        threads = max(1, len(os.sched_getaffinity(0)) // workers)  # what a local pool's worker would have
        yield from _on_cluster(chosen, learners, prepared, problem, seed=seed, threads=threads)
        return
    # Forking a process that runs JAX's or TensorFlow's threads can deadlock the child (a test process may
    # have them; the compare stage never imports them): run in this process then.
    forkable = workers > 1 and not any(runtime in sys.modules for runtime in ("jax", "tensorflow", "torch"))
    spread = [learner for learner in learners if forkable and not (learner.trains_together or learner.fills_cores)]
    if len(spread) < 2:
        yield from (evaluate_or_skip(learner, prepared, problem, seed=seed) for learner in learners)
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    work = _Work(tuple(spread), prepared, problem, seed, threads)
    context = multiprocessing.get_context("fork")
    names = [learner.name for learner in spread]
    pooled = f"the process pool ({', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''})"
    with (
        ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start, initargs=(work,)) as pool,
        ThreadPoolExecutor(max_workers=1) as beside,
        interrupts.during(pooled) as pool_done,
        _stopped_on_interrupt(),
    ):
        spread_results = pool.map(_evaluate, range(len(spread)))  # in order, each as soon as it is done
        for child in multiprocessing.active_children():  # the pool's workers, started by now
            interrupts.add_worker(child.pid)
        # Forked above, before any network is built: a compiled network's training leaves a core idle part of
        # the time (compiling is single-threaded), so it runs on a thread beside the workers, not after them.
        yield from _in_order(learners, spread, spread_results, pool_done, beside, prepared, problem, seed=seed)


def _on_cluster(
    chosen: str, learners: Sequence[Learner], prepared: Prepared, problem: Problem, *, seed: int, threads: int
) -> Iterator[ModelResult | Skipped]:
    """As the local pool, with the cluster's workers in its place: every learner one task, the networks (every fit
    in one compiled program) first, as a local run starts them first, then the models a pool would spread, then
    those that fill a machine's cores, with the threads each would have here."""
    cores = len(os.sched_getaffinity(0))
    tasks = [(learner, cores if learner.fills_cores else threads) for learner in learners]
    priorities = [2 if learner.trains_together else 0 if learner.fills_cores else 1 for learner in learners]
    with cluster.tasks(chosen, _evaluate_there, tasks, prepared, problem, seed, priorities=priorities) as remote:
        yield from remote


def _in_order(
    learners: Sequence[Learner],
    spread: Sequence[Learner],
    spread_results: Iterator[ModelResult | Skipped],
    spread_done: Callable[[], None],
    beside: ThreadPoolExecutor,
    prepared: Prepared,
    problem: Problem,
    *,
    seed: int,
) -> Iterator[ModelResult | Skipped]:
    """Every learner's result in the learners' order: the spread ones' as `spread_results` hands them over (in
    their order; `spread_done` once the last is in), the networks' from a thread `beside` started now, the others
    fitted here, after the spread ones that come before them."""
    networks = {
        learner.name: beside.submit(evaluate_or_skip, learner, prepared, problem, seed=seed)
        for learner in learners
        if learner.trains_together
    }
    left = len(spread)
    for learner in learners:
        if learner in spread:
            yield next(spread_results)
            left -= 1
            if not left:
                spread_done()
        elif learner.name in networks:
            yield networks[learner.name].result()
        else:
            yield evaluate_or_skip(learner, prepared, problem, seed=seed)


@dataclass(frozen=True)
class _Work:
    learners: tuple[Learner, ...]
    prepared: Prepared
    problem: Problem
    seed: int
    threads: int  # BLAS/OpenMP threads per worker, and the threads CatBoost and LightGBM start


_work: _Work | None = None  # set only inside a forked worker, by _start, from the pool's initargs


@contextmanager
def _stopped_on_interrupt() -> Iterator[None]:
    """The pool's workers ignore signals (a Ctrl-C or `timeout` reaches the whole process group): when the
    stage is stopped, quest.core.interrupts kills them; when the pool ends, they are no longer its to kill."""
    try:
        yield
    except BaseException:
        interrupts.stop_workers()  # at once: the pool's shutdown would wait for each to finish its model
        raise
    for child in multiprocessing.active_children():
        interrupts.remove_worker(child.pid)


def _start(work: _Work) -> None:
    global _work
    _work = work
    interrupts.as_worker(os.getppid())


def _evaluate(index: int) -> ModelResult | Skipped:
    assert _work is not None, "_evaluate runs in a worker that _start set up"
    # The workers already fill the cores: OpenMP/BLAS threads on top would only fight over them.
    with processes.threads_at_most(_work.threads):
        return evaluate_or_skip(_work.learners[index], _work.prepared, _work.problem, seed=_work.seed)


def _evaluate_there(task: tuple[Learner, int], prepared: Prepared, problem: Problem, seed: int) -> Any:
    """On a cluster's worker: what a pool worker runs, with the threads it would have here; a network comes back
    as the bytes of its saved archive (quest.learners.networks.network_archive), which the stage writes."""
    learner, threads = task
    with processes.threads_at_most(threads):
        found = evaluate_or_skip(learner, prepared, problem, seed=seed)
    if isinstance(found, ModelResult) and found.model is not None:
        from quest.learners.networks import network_archive

        found = dataclasses.replace(found, model=network_archive(found.model))
    return found
