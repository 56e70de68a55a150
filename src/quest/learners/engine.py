"""The fast engine: Keras MLPs trained inside compiled JAX programs, many networks at once.

On tabular data an MLP's arithmetic is tiny and `model.fit` spends its time on per-step dispatch. Here the
network is still the Keras model from quest.learners.mlp.network, but its forward pass runs through
`stateless_call` inside `lax.scan` over an epoch's mini-batches and `lax.while_loop` over epochs, with the data
resident on the device; shuffling, early stopping and best-weight restore happen there too. Several networks (CV folds,
seeds, training-set fractions) train in one program: `jax.vmap` over jobs whose rows are padded index lists,
so a job's mini-batches are exactly the ones it would see trained alone.

With train.data_parallel above 1 the program runs on that many devices (GSPMD): the data, weights and
optimiser state are replicated, and every mini-batch's rows are sharded across a one-axis mesh named "batch",
so each device computes its rows' gradients and XLA sums them across devices before the update.

The host takes control back every block of epochs, only to report progress and per-epoch curves.
Import only after `quest.learners.backend.configure` picked the jax backend.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import keras
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from quest.core import processes, progress
from quest.core.errors import TooLarge
from quest.learners.backend import data_parallel_devices
from quest.learners.callbacks import EpochHook, NonFiniteLoss
from quest.learners.jobs import FitResult, Job, standardiser

BLOCKS = 5  # at least this many host round trips per run: progress lines and MLflow batches
BLOCK_SECONDS = 2.0  # and at most this long between them, so a long run reports and answers Ctrl-C
PROGRESS_SECONDS = 10.0  # a progress line every fifth of the run, or this often if that is sooner
_timings: ContextVar[dict[str, float] | None] = ContextVar("quest_engine_timings", default=None)


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Inside the block, each train_many run that is given no `timings` of its own fills the dict this yields
    (the last run's figures win): how a benchmark reads the engine's split of the work without reaching into the
    learners that call it."""
    found: dict[str, float] = {}
    token = _timings.set(found)
    try:
        yield found
    finally:
        _timings.reset(token)


def train_many(
    x: np.ndarray,
    y: np.ndarray,
    jobs: Sequence[Job],
    recipe: Recipe,
    *,
    hooks: Sequence[Sequence[EpochHook]] = (),
    label: str = "",
    timings: dict[str, float] | None = None,
) -> list[FitResult]:
    """Train one fresh network of `recipe` per job, all in one vectorised program; results in job order.

    Each job's network starts from the weights the recipe draws for its seed (and, where the recipe looks at
    data, for its fit rows), learns with early stopping on its validation rows and ends holding its best
    epoch's weights. `hooks[j]` receive job j's per-epoch logs after each block of epochs. `timings`, when
    given, receives the seconds spent compiling and training and the number of training rows processed
    (`samples`).
    """
    if keras.backend.backend() != "jax":
        raise RuntimeError("the fast engine needs the jax backend: run quest.learners.backend.configure first")
    started = time.perf_counter()
    program = _Program.build(x, y, jobs, recipe)
    parts = _parts(program, recipe, len(jobs))
    compiling = time.perf_counter()
    block = program.block.lower(*parts[0], np.int32(0)).compile()
    compiled = time.perf_counter()
    check_memory(block, parts=len(parts), jobs=len(jobs))
    names = _history_names(recipe.task)
    job_hooks = [list(hooks[j]) if j < len(hooks) else [] for j in range(len(jobs))]
    for group in job_hooks:
        for hook in group:
            hook.on_train_begin()
    progress = _ProgressLine(label, networks=len(jobs), epochs=recipe.epochs, started=started, parts=len(parts))
    narrower = program.block if recipe.narrows else None
    if len(parts) == 1:
        state = _train(block, program.state, program.per_job, epochs=recipe.epochs, names=names, hooks=job_hooks,
                       progress=progress, narrower=narrower)  # fmt: skip
    else:
        state = _train_side_by_side(block, parts, epochs=recipe.epochs, names=names, hooks=job_hooks,
                                    progress=progress)  # fmt: skip
    for group in job_hooks:
        for hook in group:
            hook.on_train_end()
    timings = timings if timings is not None else _timings.get()
    if timings is not None:
        epochs_run = np.asarray(state["epoch"])
        timings["build"] = compiling - started
        timings["compile"] = compiled - compiling
        timings["train"] = time.perf_counter() - compiled
        rows = sum(len(job.fit_rows) * int(e) for job, e in zip(jobs, epochs_run, strict=True))
        timings["samples"] = float(rows * recipe.members)
    # Each job's weights are sliced on the host: an eager slice of a device array compiles a program per weight.
    kept = {key: jax.tree.map(np.asarray, state[key]) for key in ("best_trainable", "best_non_trainable", "epoch")}
    history = np.asarray(state["history"])
    return [
        _result(recipe, model, {**kept, "history": history}, j, names, shift=program.shift[j], scale=program.scale[j])
        for j, model in enumerate(program.models)
    ]


# What a training run holds beyond XLA's layout of its programs: the networks' state and each part's copy of it
# on the host, the runtime's own buffers. Measured: RealMLP's 16 networks on a 200 x 3 000 table peaked at
# 11.1 GB resident for a layout of 2 programs of 2.8 GB (5.5 GB); with its inputs encoded by a gather and the
# state donated to the program (its output reuses it), at 5.4 GB for 2 of 1.36 GB (2.7 GB).
BEYOND_LAYOUT = 2.0


def check_memory(block: Any, *, parts: int, jobs: int) -> None:
    """Before a step runs: a TooLarge error when the compiled programs would not fit in the memory available.
    XLA's own buffer assignment says what one program holds (its inputs, outputs and temporaries); `parts` of
    them run side by side."""
    stats = block.memory_analysis()
    if stats is None:
        return
    # An output that reuses a donated input (the networks' state) is not held twice.
    one = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    one -= stats.alias_size_in_bytes
    need = one * parts * BEYOND_LAYOUT
    available = _device_free()
    if available is not None and need > available:
        raise TooLarge(
            f"its {jobs} networks would need about {processes.size_text(need)} ({BEYOND_LAYOUT:g} x XLA's layout of "
            f"{parts} program{'s' if parts > 1 else ''} of {processes.size_text(one)}) and "
            f"{processes.size_text(available)} is available"
        )


def _device_free() -> int | None:
    """Bytes the programs may take where they run: the host's (quest.core.processes) on the CPU, the accelerator's
    free memory elsewhere (None where it does not say); QUEST_MEMORY_LIMIT, when set, in either case."""
    if jax.default_backend() == "cpu" or os.environ.get(processes.MEMORY_LIMIT_ENV):
        return processes.memory_available()
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def _cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parts(program: _Program, recipe: Recipe, jobs: int) -> list[tuple[dict, dict]]:
    """The (state, per_job) of each program that runs side by side: the jobs split into equal parts, one per CPU
    core, for a recipe that spreads (a small network's step keeps one core busy, whatever the jobs); the last
    job is repeated to even them, and its copies are dropped afterwards. One part on other devices."""
    count = min(jobs, _cores()) if recipe.spreads and jax.default_backend() == "cpu" else 1
    if count <= 1 or jax.device_count() > 1 and str(recipe.data_parallel) != "1":
        return [(program.state, program.per_job)]
    size = math.ceil(jobs / count)
    parts = math.ceil(jobs / size)  # 5 jobs on 4 cores: 3 parts of 2
    order = np.minimum(np.arange(parts * size), jobs - 1).reshape(parts, size)
    # On the host: an eager slice of a device array would compile a program of its own for every weight.
    return [
        tuple(jax.tree.map(lambda value, taken=taken: np.asarray(value)[taken], tree)
              for tree in (program.state, program.per_job))
        for taken in order
    ]  # fmt: skip


class _Halt:
    """The earliest epoch at which parts run side by side stop (never, until a part meets a non-finite loss)."""

    def __init__(self) -> None:
        self.epoch: float = math.inf
        self.lock = threading.Lock()

    def at(self, epoch: int) -> None:
        with self.lock:
            self.epoch = min(self.epoch, epoch)


def _train_side_by_side(
    block: Callable,
    parts: list[tuple[dict, dict]],
    *,
    epochs: int,
    names: Sequence[str],
    hooks: list[list[EpochHook]],
    progress: _ProgressLine,
) -> dict:
    """`_train` on each part in a thread of its own (XLA runs a program's steps on the thread that calls it), then
    the jobs' states back together in job order. A part that meets a non-finite loss halts the others once they
    have checked the epochs before it, so the earliest such epoch (then the lowest job) is the one reported, as
    in one program."""
    size, jobs = parts[0][0]["epoch"].shape[0], len(hooks)
    stop = _Halt()

    def run(number: int) -> dict:
        index = np.arange(number * size, (number + 1) * size)
        part_hooks = [hooks[j] if j < jobs else [] for j in index]  # a repeated job reports nothing
        state, per_job = parts[number]
        return _train(block, state, per_job, epochs=epochs, names=names, hooks=part_hooks, progress=progress,
                      part=number, stop=stop, numbers=np.minimum(index, jobs - 1))  # fmt: skip

    with ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="quest-engine") as pool:
        futures = [pool.submit(run, number) for number in range(len(parts))]
        try:
            states, failures = [], []
            for future in futures:
                try:
                    states.append(future.result())
                except NonFiniteLoss as found:
                    failures.append(found)
        except BaseException:
            stop.at(0)
            raise
    if failures:
        raise min(failures, key=lambda found: (found.epoch, found.job))
    return jax.tree.map(lambda *values: np.concatenate([np.asarray(v) for v in values])[:jobs], *states)


Loss = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
Penalty = Callable[[list, list, dict], jax.Array]  # (the network's own losses, trainable weights, job) -> scalar


def model_losses(losses: list, trainable: list, job: dict) -> jax.Array:
    """The penalty a network's own layers add (their regularisers), the same for every job."""
    return sum(losses, jnp.zeros(()))


class Updater(Protocol):
    """How a network's trainable weights move: an optimiser as pure functions of its state."""

    def variables(self, model: keras.Model) -> list[jax.Array]:
        """One network's initial optimiser state (the engine stacks it per job)."""

    def apply(self, state: list, grads: list, trainable: list, progress: jax.Array) -> tuple[list, list]:
        """(new trainable weights, new state) after one step; `progress` is the fraction of training done."""


class Recipe(Protocol):
    """What the engine needs to know about a family of networks: how to make one for a job, how it learns, what
    it minimises and how its best epoch is chosen. The MLP's is quest.learners.mlp.recipe.MlpRecipe; RealMLP's
    and TabM's live beside their networks."""

    task: str
    epochs: int
    batch_size: int
    patience: int  # epochs without a better criterion before a job stops; 0: never stop early
    data_parallel: int | str
    scheduled: bool  # whether its steps read the fraction of training done (schedules): traced only then
    drop_last: bool  # batches of min(batch_size, rows); an epoch skips the rows left over (else: a short batch)
    later_ties: bool  # an epoch that ties the best criterion becomes the best (else: the first one stays)
    members: int  # rows a batch holds per sampled row: an ensemble's members each draw their own batches
    narrows: bool  # once at most half its jobs still train, go on with those alone (worth a recompile)
    spreads: bool  # on a CPU, its jobs train as one program per core, side by side (a small network's steps)

    def fresh(self, x: np.ndarray, y: np.ndarray, job: Job) -> keras.Model:
        """A built network with the initial weights the job's seed (and, if the recipe looks, its rows) gives."""

    def updater(self, model: keras.Model) -> Updater: ...

    def penalty(self, model: keras.Model, jobs: Sequence[Job]) -> tuple[Penalty, dict[str, np.ndarray]]:
        """What the loss adds to the data term, as (losses, trainable, job) -> scalar, from the network's own
        losses or from per-job values; and those values, one per job, which the program reads from `job`."""

    def target(self, y: np.ndarray) -> np.ndarray:
        """The targets as the network's loss takes them."""

    def train_loss(self) -> Loss:
        """(y_true, y_pred) -> loss and metric per row, on the training batches."""

    def validation_loss(self) -> Loss:
        """The same on the validation rows (the curves' val_loss, and what `criterion` reads)."""

    def criterion(self, val_loss: jax.Array, val_metric: jax.Array) -> jax.Array:
        """What the best epoch minimises."""

    def schedule(self, non_trainable: list, progress: jax.Array) -> list:
        """The network's non-trainable state at `progress` (a scheduled dropout rate lives there)."""

    def finish(self, model: keras.Model, *, shift: float, scale: float) -> None:
        """Turn the trained network into the one that is kept (outputs in the target's units, probabilities)."""


class UniformJobs:
    """For a recipe whose jobs all train with its own settings: the network's own losses are its penalty."""

    def penalty(self, model: keras.Model, jobs: Sequence[Job]) -> tuple[Penalty, dict[str, np.ndarray]]:
        return model_losses, {}


@dataclass
class _Program:
    """Everything a run of train_many trains with: the jobs' fresh networks and their stacked state, each job's
    rows and keys, and the jitted block of epochs (not yet compiled)."""

    models: list[keras.Model]
    state: dict
    per_job: dict
    shift: np.ndarray  # per job: the regression target's mean over its fit rows (0 for classification)
    scale: np.ndarray  # and its spread (1 for classification)
    block: Callable

    @classmethod
    def build(cls, x: np.ndarray, y: np.ndarray, jobs: Sequence[Job], recipe: Recipe) -> _Program:
        models = [recipe.fresh(x, y, job) for job in jobs]
        target = recipe.target(y)
        if recipe.task == "regression":
            shift, scale = _standardisers(target, jobs)
        else:
            shift, scale = np.zeros(len(jobs)), np.ones(len(jobs))
        sizes = [len(job.fit_rows) for job in jobs]
        devices = data_parallel_devices("jax", recipe.data_parallel, recipe.batch_size)
        width = min(recipe.batch_size, max(sizes)) if recipe.drop_last else recipe.batch_size
        full = [n // width for n in sizes]
        tail = max(n - f * width for n, f in zip(sizes, full, strict=True))
        # The tail layout: each job's whole batches, then one last step only as wide as the widest job's left-over
        # rows, where that cuts an epoch's rows by a fifth or more (it costs a second traced step); else every job's
        # last batch is padded to full width. A partial batch is the same batch either way, so only the cost moves.
        padded = math.ceil(max(sizes) / width) * width
        if recipe.drop_last or devices > 1 or not tail or max(full) * width + tail > 0.8 * padded:
            tail = 0
        fit_rows, fit_mask = _pad([job.fit_rows for job in jobs], multiple=width, least=max(full) * width + tail)
        validation_rows, validation_mask = _pad([job.validation_rows for job in jobs], multiple=1)
        per_job = {
            "key": np.stack([np.asarray(jax.random.PRNGKey(job.seed)) for job in jobs]),
            "fit_rows": fit_rows,
            "fit_mask": fit_mask,
            "validation_rows": validation_rows,
            "validation_mask": validation_mask,
            "shift": np.asarray(shift, dtype="float32"),
            "scale": np.asarray(scale, dtype="float32"),
        }
        # A job's own batches an epoch: its schedules run over its own steps, and with drop_last the scan stops
        # at the largest job's last whole batch.
        batches = [max(1, n // width) if recipe.drop_last else math.ceil(n / width) for n in sizes]
        # Whether some job meets an empty batch (it has fewer batches than the scan, or no rows left for the tail
        # step): only then must a step check that it has rows before it moves the weights.
        skips = bool(tail) or len(set(batches)) > 1 or min(sizes) == 0
        if recipe.scheduled or recipe.drop_last:
            per_job["batches"] = np.asarray(batches, dtype="float32")
        if tail:
            per_job["full"] = np.asarray(full, dtype="int32")
        template = models[0]
        penalty, values = recipe.penalty(template, jobs)
        per_job.update({name: np.asarray(value) for name, value in values.items()})
        updater = recipe.updater(template)
        if any(job.hyper for job in jobs):  # each job's optimiser state its own: its learning rate lives there
            optimizer = [recipe.updater(model).variables(model) for model in models]
        else:
            optimizer = [updater.variables(template)] * len(models)
        state = _initial_state(models, optimizer, epochs=recipe.epochs)
        # Built on the host and put on the device as they are: jnp.asarray, jnp.zeros and the like on the host's
        # values would each compile a small program per shape, which on a small table costs more than its training.
        data = (np.asarray(x, dtype="float32"), np.asarray(target))
        mesh = batch_mesh(devices)
        # everything on every device; only the batches are split, inside the program
        to = None if mesh is None else NamedSharding(mesh, PartitionSpec())
        state, per_job, data = jax.device_put((state, per_job, data), to)
        block = _compile_block(
            template,
            updater,
            recipe,
            *data,
            penalty=penalty,
            width=width,
            slots=max(batches) if recipe.drop_last else (max(full) if tail else None),
            tail=tail,
            skips=skips,
            batch_sharding=None if mesh is None else NamedSharding(mesh, PartitionSpec("batch")),
        )
        return cls(models=models, state=state, per_job=per_job, shift=shift, scale=scale, block=block)


def _train(
    block: Callable,
    state: dict,
    per_job: dict,
    *,
    epochs: int,
    names: Sequence[str],
    hooks: list[list[EpochHook]],
    progress: _ProgressLine,
    narrower: Callable | None = None,
    part: int = 0,
    stop: _Halt | None = None,
    numbers: np.ndarray | None = None,
) -> dict:
    """Run the compiled block until every job stopped or reached `epochs`, handing the host the epochs' logs
    after each block. The first block is one epoch and times it; the later ones last about BLOCK_SECONDS (or a
    fifth of the run, if that is shorter). Where the blocks end does not change the result, only when the host
    looks.

    With a `narrower` (the jitted block, for recipes that narrow), a block also returns once at most half of
    its jobs are still training, and the host carries on with those alone, compiled afresh for their number:
    a vectorised program computes every job until the last one stops, and an early stopper's epochs are
    thrown away. Where that happens depends only on when the jobs stop, so a run stays reproducible.

    Run side by side (`_train_side_by_side`), this is `part` of the jobs, numbered `numbers` among all of them,
    and it ends once it has checked the epochs before the one `stop` holds."""
    done, every, fifth = 0, 1, max(1, math.ceil(epochs / BLOCKS))
    index, whole = np.arange(len(hooks)), state
    numbers = index if numbers is None else numbers
    while done < min(epochs, math.inf if stop is None else stop.epoch):
        until = min(epochs, done + every)
        block_started = time.perf_counter()
        state = block(state, per_job, np.int32(until))
        history = np.asarray(state["history"])  # waits for the block: the dispatch above returns at once
        epochs_run = np.asarray(state["epoch"])
        reached = max(done + 1, int(epochs_run.max()))  # the jobs still training move in step
        per_epoch = (time.perf_counter() - block_started) / (reached - done)
        every = max(1, min(fifth, int(BLOCK_SECONDS / max(per_epoch, 1e-9))))
        try:
            _check_finite(history, epochs_run, names, start=done, until=reached)
        except NonFiniteLoss as found:
            if stop is not None:
                stop.at(found.epoch)  # the others check every epoch up to this one, then halt
            job = int(numbers[index[found.job]])
            raise NonFiniteLoss(job=job, epoch=found.epoch, curve=found.curve, value=found.value) from None
        _report_epochs(history, epochs_run, names, [hooks[j] for j in index], start=done, until=reached)
        done = reached
        training = ~np.asarray(state["stopped"]) & (epochs_run < epochs)
        active = int(np.sum(training))
        # A part's copies of its last job (to even the parts) count once: the line counts jobs, not networks.
        improving = np.unique(numbers[index[~np.asarray(state["stopped"])]]).size
        progress.after_block(done, active=improving, fifth=fifth, part=part)
        if active == 0:
            break
        if narrower is not None and 2 * active <= len(index):
            whole = _merge(whole, state, index)
            keep = np.nonzero(training)[0]
            state, per_job = jax.device_put(
                tuple(jax.tree.map(lambda value, keep=keep: np.asarray(value)[keep], tree) for tree in (state, per_job))
            )  # sliced on the host, as everywhere here: an eager gather compiles a program per shape
            index = index[keep]
            block = narrower.lower(state, per_job, np.int32(0)).compile()
    return _merge(whole, state, index) if len(index) < len(hooks) else state


def _merge(whole: dict, part: dict, index: np.ndarray) -> dict:
    """The stacked state of every job, with the jobs at `index` taken from `part`."""
    if len(index) == whole["epoch"].shape[0]:
        return part

    def merged(full: Any, some: Any) -> np.ndarray:  # on the host: an eager scatter compiles a program per shape
        values = np.array(full)
        values[index] = np.asarray(some)
        return values

    return jax.tree.map(merged, whole, part)


def _check_finite(history: np.ndarray, epochs_run: np.ndarray, names: Sequence[str], *, start: int, until: int) -> None:
    """Raise NonFiniteLoss for the earliest epoch (then the lowest job) of start..until whose loss or val_loss
    is NaN or infinite, among the epochs each job ran."""
    window = history[:, start:until]
    ran = np.arange(start, until)[None, :] < epochs_run[:, None]
    bad = ~np.isfinite(window[..., [0, 2]]).all(axis=-1) & ran
    if not bad.any():
        return
    jobs, epochs = np.nonzero(bad)
    first = np.lexsort((jobs, epochs))[0]
    job, epoch = int(jobs[first]), int(epochs[first]) + start
    curve = 0 if not np.isfinite(history[job, epoch, 0]) else 2
    raise NonFiniteLoss(job=job, epoch=epoch + 1, curve=names[curve], value=float(history[job, epoch, curve]))


def _report_epochs(
    history: np.ndarray,
    epochs_run: np.ndarray,
    names: Sequence[str],
    hooks: list[list[EpochHook]],
    *,
    start: int,
    until: int,
) -> None:
    """Each job's epochs start..until (those it ran) to its hooks, as Keras-style logs."""
    for j, group in enumerate(hooks):
        for epoch in range(start, min(until, int(epochs_run[j]))):
            logs = dict(zip(names, map(float, history[j, epoch]), strict=True))
            for hook in group:
                hook.on_epoch_end(epoch, logs)


class _ProgressLine:
    """`train: <label> N networks epoch e/E, k still improving, t s`: every fifth of the run, at least every
    PROGRESS_SECONDS, and at the end; silent without a label or for a single network."""

    def __init__(self, label: str, *, networks: int, epochs: int, started: float, parts: int = 1) -> None:
        self.label, self.networks, self.epochs, self.started = label, networks, epochs, started
        self.shown, self.last_line = 0, time.perf_counter()
        self.parts = [(0, 0)] * parts  # (epochs done, networks still improving) of each part run side by side
        self.lock = threading.Lock()
        self.model = progress.current()  # the parts' threads report under the model their caller works on

    def after_block(self, done: int, *, active: int, fifth: int, part: int = 0) -> None:
        with self.lock:  # parts side by side report from their threads: the line is the slowest part's epoch
            self.parts[part] = (done, active)
            slowest = min(d for d, _ in self.parts)
            progress.epochs_done(self.model, slowest, self.epochs)
            if self.label and self.networks > 1:
                self._after_block(slowest, sum(a for _, a in self.parts), fifth)

    def _after_block(self, done: int, active: int, fifth: int) -> None:
        due = done - self.shown >= fifth or time.perf_counter() - self.last_line >= PROGRESS_SECONDS
        if due or active == 0 or done == self.epochs:
            self.shown, self.last_line = done, time.perf_counter()
            print(
                f"train: {self.label} {self.networks} networks epoch {done}/{self.epochs}, {active} still improving, "
                f"{time.perf_counter() - self.started:.1f}s",
                file=sys.stderr,
                flush=True,
            )


def batch_mesh(devices: int) -> Mesh | None:
    """A one-axis mesh named "batch" over the first `devices` devices; None for one device (nothing to split)."""
    return Mesh(np.array(jax.devices()[:devices]), ("batch",)) if devices > 1 else None


def _standardisers(target: np.ndarray, jobs: Sequence[Job]) -> tuple[np.ndarray, np.ndarray]:
    """Per job, the mean and spread of its fit rows' target: the network learns the standardised target."""
    shift, scale = np.array([standardiser(target[job.fit_rows]) for job in jobs]).T
    return shift, scale


def _pad(rows: Sequence[np.ndarray], *, multiple: int, least: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Index lists of unequal length as one (jobs, width) array and its validity mask; width a `multiple`, and
    at least `least`."""
    width = max(least, 1, max(len(r) for r in rows))
    width = math.ceil(width / multiple) * multiple
    padded = np.zeros((len(rows), width), dtype=np.int32)
    mask = np.zeros((len(rows), width), dtype=bool)
    for j, r in enumerate(rows):
        padded[j, : len(r)] = r
        mask[j, : len(r)] = True
    return padded, mask


def _initial_state(models: Sequence[keras.Model], optimizer: Sequence[Sequence[jax.Array]], *, epochs: int) -> dict:
    def stacked(values: list[list]) -> list:  # on the host: an eager stack compiles a program per weight shape
        return [np.stack([np.asarray(v) for v in column]) for column in zip(*values, strict=True)]

    trainable = stacked([[v.value for v in m.trainable_variables] for m in models])
    non_trainable = stacked([[v.value for v in m.non_trainable_variables] for m in models])
    jobs = len(models)
    return {
        "trainable": trainable,
        "non_trainable": non_trainable,
        "optimizer": stacked([list(values) for values in optimizer]),
        "best_trainable": trainable,
        "best_non_trainable": non_trainable,
        "best_loss": np.full((jobs,), np.inf, dtype="float32"),
        "wait": np.zeros((jobs,), dtype="int32"),
        "epoch": np.zeros((jobs,), dtype="int32"),
        "stopped": np.zeros((jobs,), dtype=bool),
        "history": np.full((jobs, epochs, 4), np.nan, dtype="float32"),
    }


def _compile_block(
    model: keras.Model,
    updater: Updater,
    recipe: Recipe,
    x: jax.Array,
    target: jax.Array,
    *,
    penalty: Penalty = model_losses,
    width: int,
    slots: int | None = None,
    tail: int = 0,
    skips: bool = True,
    batch_sharding: NamedSharding | None = None,
) -> Callable:
    """block(state, per_job, until): every job trains on until it stops early or reaches epoch `until`.

    `slots` (drop_last, or with a `tail`) is how many whole batches the largest job takes an epoch: the scan stops
    there. `tail`, if not 0, is the width of one last step that takes each job's rows left over.
    `batch_sharding` splits every mini-batch's rows across its devices (the jobs axis is never split). `penalty`
    is what the loss adds to its data term (the recipe's). `skips`: some job meets batches without rows, which
    must leave its weights as they are (else every batch has rows, and the steps skip that check: a few percent
    of a small network's step).
    """
    labels = _labels(target, regression=recipe.task == "regression")
    step = _step(model, updater, recipe, x, labels, batch_sharding, penalty, skips=skips)
    epoch = _epoch(model, recipe, x, labels, step, penalty, width=width, slots=slots, tail=tail)

    def run(state: dict, job: dict, until: jax.Array) -> dict:
        return jax.lax.while_loop(lambda s: (s["epoch"] < until) & ~s["stopped"], lambda s: epoch(s, job), state)

    if not recipe.narrows:
        return jax.jit(jax.vmap(run, in_axes=(0, 0, None)), donate_argnums=0)
    every_epoch = jax.vmap(epoch)

    def run_all(state: dict, job: dict, until: jax.Array) -> dict:
        # The loop jax.vmap makes of `run`, written out: it also ends once at most half the jobs still train.
        def training(s: dict) -> jax.Array:
            return (s["epoch"] < until) & ~s["stopped"]

        def going(s: dict) -> jax.Array:
            active = training(s)
            return jnp.any(active) & (2 * jnp.sum(active) > active.shape[0])

        def advance(s: dict) -> dict:
            active, new = training(s), every_epoch(s, job)
            return jax.tree.map(lambda a, b: jnp.where(active.reshape(-1, *[1] * (a.ndim - 1)), a, b), new, s)

        return jax.lax.while_loop(going, advance, state)

    return jax.jit(run_all, donate_argnums=0)


def _labels(target: jax.Array, *, regression: bool) -> Callable[[jax.Array, dict], jax.Array]:
    """(rows, job) -> the targets the job's network learns: standardised per job for regression."""

    def labels(rows: jax.Array, job: dict) -> jax.Array:
        picked = target[rows]
        return (picked - job["shift"]) / job["scale"] if regression else picked

    return labels


def _masked(values: jax.Array, weights: jax.Array) -> jax.Array:
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _step(
    model: keras.Model,
    updater: Updater,
    recipe: Recipe,
    x: jax.Array,
    labels: Callable[[jax.Array, dict], jax.Array],
    batch_sharding: NamedSharding | None,
    penalty: Penalty,
    *,
    skips: bool,
) -> Callable:
    """step(job, carry, batch): one mini-batch's gradient step, for lax.scan over an epoch's batches; with
    `skips`, a batch without rows leaves everything as it was."""
    per_sample = recipe.train_loss()

    def step(job: dict, carry: tuple, batch: tuple) -> tuple:
        trainable, non_trainable, opt, sums = carry
        rows, valid, progress = batch if recipe.scheduled else (*batch, None)
        if batch_sharding is not None:  # under vmap the constraint applies to the rows axis, not to the jobs'
            rows = jax.lax.with_sharding_constraint(rows, batch_sharding)
            valid = jax.lax.with_sharding_constraint(valid, batch_sharding)
        weights = valid.astype("float32")
        x_batch, y_batch = x[rows], labels(rows, job)
        scheduled = recipe.schedule(non_trainable, progress) if recipe.scheduled else non_trainable

        def objective(variables: list) -> tuple:
            y_pred, updated, penalties = model.stateless_call(
                variables, scheduled, x_batch, training=True, return_losses=True
            )
            loss, metric = per_sample(y_batch, y_pred)
            total = _masked(loss, weights) + penalty(penalties, variables, job)
            return total, (updated, jnp.sum(metric * weights))

        (total, (updated, metric_sum)), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
        new_trainable, new_opt = updater.apply(opt, grads, trainable, progress)
        count = jnp.sum(weights)
        live = count > 0  # a job with fewer rows than the widest one skips its trailing empty batches

        def keep(new: list, old: list) -> list:
            return [jnp.where(live, a, b) for a, b in zip(new, old, strict=True)] if skips else new

        sums = sums + jnp.stack([total * count, metric_sum, count])
        return (keep(new_trainable, trainable), keep(updated, non_trainable), keep(new_opt, opt), sums), None

    return step


def _epoch(
    model: keras.Model,
    recipe: Recipe,
    x: jax.Array,
    labels: Callable[[jax.Array, dict], jax.Array],
    step: Callable,
    penalty: Penalty,
    *,
    width: int,
    slots: int | None = None,
    tail: int = 0,
) -> Callable[[dict, dict], dict]:
    """epoch(state, job): shuffle on the device, scan the batches of `width` rows (then the `tail` step), score
    the validation rows, and keep the best weights as EarlyStopping(restore_best_weights=True) would, by the
    recipe's criterion."""
    epochs, members = recipe.epochs, recipe.members
    patience = recipe.patience or epochs  # 0 means: never stop early
    per_sample = recipe.validation_loss()

    def batched(values: jax.Array, count: int, size: int) -> jax.Array:
        """Shuffled rows, (members, n) or (n,), as `count` batches of `size`; member i's at i, members + i, ..."""
        if members == 1:
            return values.reshape(count, size)
        return values.reshape(members, count, size).transpose(1, 2, 0).reshape(count, size * members)

    def epoch(state: dict, job: dict) -> dict:
        index = state["epoch"]
        # Shuffle on the device: random keys for the job's rows (each member its own), padding sorted last.
        shape = job["fit_mask"].shape if members == 1 else (members, *job["fit_mask"].shape)
        keys = jax.random.uniform(jax.random.fold_in(job["key"], index), shape)
        order = jnp.argsort(jnp.where(job["fit_mask"], keys, 2.0), axis=-1)
        rows, valid = job["fit_rows"][order], job["fit_mask"][order]
        last = None
        if tail:  # the job's whole batches are scanned; its left-over rows take the last, narrower step
            start = job["full"] * width
            last = tuple(
                batched(jax.lax.dynamic_slice_in_dim(values, start, tail, axis=-1), 1, tail)[0]
                for values in (rows, valid)
            )
            valid = valid & (jnp.arange(valid.shape[-1]) < start)
            rows, valid = rows[..., : slots * width], valid[..., : slots * width]
        count = valid.shape[-1] // width
        rows, valid = batched(rows, count, width), batched(valid, count, width)
        if recipe.drop_last:  # the rows past the job's last whole batch sit out this epoch
            rows, valid = rows[:slots], valid[:slots]
            valid = valid & (jnp.arange(rows.shape[0], dtype="float32")[:, None] < job["batches"])
        batches: tuple = (rows, valid)
        if recipe.scheduled:  # the fraction of the job's steps done before each batch
            steps = index * job["batches"] + jnp.arange(rows.shape[0], dtype="float32")
            batches = (rows, valid, steps / (epochs * job["batches"]))
        carry = (state["trainable"], state["non_trainable"], state["optimizer"], jnp.zeros(3))
        if rows.shape[0]:
            carry, _ = jax.lax.scan(functools.partial(step, job), carry, batches)
        if last is not None:
            if recipe.scheduled:
                last = (*last, (index * job["batches"] + job["full"]) / (epochs * job["batches"]))
            carry, _ = step(job, carry, last)
        trainable, non_trainable, opt, sums = carry

        weights = job["validation_mask"].astype("float32")
        y_pred, _, penalties = model.stateless_call(
            trainable, non_trainable, x[job["validation_rows"]], training=False, return_losses=True
        )
        loss, metric = per_sample(labels(job["validation_rows"], job), y_pred)
        val_loss = _masked(loss, weights) + penalty(penalties, trainable, job)
        val_metric = _masked(metric, weights)
        count = jnp.maximum(sums[2], 1.0)
        row = jnp.stack([sums[0] / count, sums[1] / count, val_loss, val_metric])

        criterion = recipe.criterion(val_loss, val_metric)
        # As EarlyStopping: min_delta 0, NaN never improves; a tie moves the best only for later_ties.
        improved = criterion <= state["best_loss"] if recipe.later_ties else criterion < state["best_loss"]

        def choose(new: list, old: list) -> list:
            return [jnp.where(improved, a, b) for a, b in zip(new, old, strict=True)]

        wait = jnp.where(improved, 0, state["wait"] + 1)
        return {
            "trainable": trainable,
            "non_trainable": non_trainable,
            "optimizer": opt,
            "best_trainable": choose(trainable, state["best_trainable"]),
            "best_non_trainable": choose(non_trainable, state["best_non_trainable"]),
            "best_loss": jnp.where(improved, criterion, state["best_loss"]),
            "wait": wait,
            "epoch": index + 1,
            "stopped": wait >= patience,
            "history": state["history"].at[index].set(row),
        }

    return epoch


def _history_names(task: str) -> tuple[str, str, str, str]:
    metric = "mae" if task == "regression" else "accuracy"
    return ("loss", metric, "val_loss", f"val_{metric}")


def _result(
    recipe: Recipe, model: keras.Model, state: dict, job: int, names: Sequence[str], *, shift: float, scale: float
) -> FitResult:
    """Job `job`'s network as a Keras model holding its best epoch's weights, with its curves."""
    for variable, value in zip(model.trainable_variables, state["best_trainable"], strict=True):
        variable.assign(value[job])
    for variable, value in zip(model.non_trainable_variables, state["best_non_trainable"], strict=True):
        variable.assign(value[job])
    epochs_run = int(state["epoch"][job])
    rows = np.asarray(state["history"][job, :epochs_run], dtype=np.float64)
    curves = {name: [float(v) for v in rows[:, i]] for i, name in enumerate(names)}
    recipe.finish(model, shift=shift, scale=scale)
    best = _best_epoch(recipe, rows, epochs_run)
    return FitResult(model=model, history=curves, best_epoch=best, epochs_run=epochs_run)


def _best_epoch(recipe: Recipe, rows: np.ndarray, epochs_run: int) -> int:
    """The 1-based epoch whose weights were kept: the first (or, for later_ties, the last) with the lowest
    criterion, as the program chose."""
    # In float32 on the host, as the program computed it (jax arrays here would compile programs of their own).
    criterion = np.asarray(recipe.criterion(rows[:, 2].astype(np.float32), rows[:, 3].astype(np.float32)), np.float64)
    if not np.isfinite(criterion).any():
        return epochs_run
    if recipe.later_ties:
        return len(criterion) - int(np.nanargmin(criterion[::-1]))
    return int(np.nanargmin(criterion)) + 1
