"""Optuna studies that many workers share, each trial of the budget run to the end exactly once.

A study's budget is fixed when it is created: one waiting trial per slot 0 .. trials-1. A worker claims a
waiting trial with the storage's row lock, so no two workers ever hold the same one. While it runs, a
heartbeat thread shows the worker is alive. A trial whose worker has stopped beating for the grace period
(the worker was killed, or its machine died) is failed by the next worker that looks, and a copy of it with
the same slot and the same values waits for a taker. An interrupted worker (Ctrl-C, SIGTERM) hands its trial
back the same way, at once. A slot's result is its one trial that completed, or that failed on its own.

Values are drawn per (seed, slot, hyperparameter), never by trial number or claim order, so which worker runs
a slot, and how often it was retried, does not change what it runs.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.core.compat import study_storage, trial_id
from quest.core.errors import QuestError, TrainingDiverged, first_line, shown_uri
from quest.core.processes import this_process

if TYPE_CHECKING:
    import optuna

SLOT = "quest.slot"  # trial user attribute: the trial's place in the budget
WORKER = "quest.worker"  # trial system attribute: host:pid of the worker that claimed it
BUDGET = "quest.budget"  # study user attribute, set once every slot is queued
ERROR = "error"  # trial user attribute of a trial that failed on its own (not retried)
FILL_WAIT_SECONDS = 60.0  # how long a joining worker waits for the study's creator to queue its slots


@dataclass(frozen=True)
class Slot:
    """A finished slot: its sampled values (encoded as Optuna stores them) and scores; NaN when it failed."""

    slot: int
    params: dict[str, Any]
    validation: float
    test: float
    runs: int  # trials that ran this slot: 1, or more when a worker died or was interrupted mid-trial


_opened: dict[tuple[str, int], Any] = {}  # one storage (one connection pool) per URL for the whole process


def storage(url: str | None, *, heartbeat: int) -> optuna.storages.BaseStorage | None:
    """Optuna's RDB storage at `url` with heartbeats every `heartbeat` seconds; None (in memory) for None.

    Every study of a process shares it: a storage per study would hold a connection per study per worker, and
    PostgreSQL refuses clients beyond max_connections (100 by default).
    """
    if url is None:
        return None
    if (url, heartbeat) not in _opened:
        _opened[url, heartbeat] = _open_storage(url, heartbeat)
    return _opened[url, heartbeat]


def _open_storage(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    try:
        with _settled():
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
            )
    except Exception as error:  # SQLAlchemy's URL, driver and connection errors, and Optuna's schema check
        raise QuestError(f"params.yaml: tune.storage {shown_uri(url)} cannot be opened: {first_line(error)}") from None


@contextmanager
def _settled() -> Iterator[None]:
    """Quiet Optuna's "experimental" warnings on heartbeats and retries: there since 2.8, pinned in the lock."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def per_slot_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's random search, each hyperparameter of slot n drawn by a RandomSampler seeded by (seed, n, name).

    One seeded RandomSampler would replay its first draws when a stored study is resumed, and would hand out
    values in claim order when workers share it; seeding by slot and name makes any worker, on any retry,
    draw exactly what one uninterrupted process would.
    """
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler, RandomSampler

    class PerSlotRandomSampler(BaseSampler):
        def infer_relative_search_space(
            self, study: optuna.Study, trial: optuna.trial.FrozenTrial
        ) -> dict[str, BaseDistribution]:
            return {}

        def sample_relative(
            self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, BaseDistribution]
        ) -> dict[str, Any]:
            return {}

        def sample_independent(
            self,
            study: optuna.Study,
            trial: optuna.trial.FrozenTrial,
            param_name: str,
            param_distribution: BaseDistribution,
        ) -> Any:
            slot = trial.user_attrs.get(SLOT, trial.number)
            entropy = np.random.SeedSequence([seed, slot, zlib.crc32(param_name.encode("utf-8"))])
            sampler = RandomSampler(seed=int(entropy.generate_state(1)[0]))
            return sampler.sample_independent(study, trial, param_name, param_distribution)

    return PerSlotRandomSampler()


def open_study(
    name: str, *, url: str | None, heartbeat: int, trials: int, seed: int, lower_is_better: bool
) -> optuna.Study:
    """The study `name`: created with its `trials` slots queued, or joined when it exists already."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = storage(url, heartbeat=heartbeat)
    sampler = per_slot_sampler(seed)
    try:
        study = optuna.create_study(
            storage=stored,
            sampler=sampler,
            study_name=name,
            direction="minimize" if lower_is_better else "maximize",
        )
    except optuna.exceptions.DuplicatedStudyError:  # another worker, or an earlier run, created it
        study = optuna.load_study(study_name=name, storage=stored, sampler=sampler)
        _wait_until_filled(study, name)
        return study
    for slot in range(trials):
        study.enqueue_trial({}, user_attrs={SLOT: slot})
    study.set_user_attr(BUDGET, trials)
    return study


def _wait_until_filled(study: optuna.Study, name: str) -> None:
    deadline = time.monotonic() + FILL_WAIT_SECONDS
    while BUDGET not in study.user_attrs:
        if time.monotonic() > deadline:
            raise QuestError(
                f"tune.storage: study {name} exists but its trials were never queued (its creator stopped "
                f"within seconds of starting); delete it with `optuna delete-study --study-name {name}`"
            )
        time.sleep(0.5)


def claim(study: optuna.Study) -> optuna.Trial | None:
    """A waiting trial of `study`, now RUNNING and ours alone (the storage's row lock); None when none waits."""
    import optuna
    from optuna.trial import TrialState

    store = study_storage(study)
    for waiting in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not store.set_trial_state_values(trial_id(waiting), state=TrialState.RUNNING):
                continue  # another worker took it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        if _beats(store):
            store.record_heartbeat(trial_id(waiting))  # at once: a trial that never beat is never found stale
        store.set_trial_system_attr(trial_id(waiting), WORKER, this_process())
        return optuna.Trial(study, trial_id(waiting))
    return None


def _beats(store: Any) -> bool:
    """Whether `store` keeps heartbeats (RDB storage with an interval; in-memory storage never does)."""
    return getattr(store, "get_heartbeat_interval", lambda: None)() is not None


@contextmanager
def heartbeat(study: optuna.Study, trials: Sequence[optuna.Trial]) -> Iterator[None]:
    """While the body runs, record each of `trials`' heartbeats every interval (nothing for in-memory storage)."""
    store = study_storage(study)
    if not _beats(store):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(store.get_heartbeat_interval()):
            for trial in trials:
                store.record_heartbeat(trial_id(trial))

    thread = threading.Thread(target=beat, name=f"heartbeat-{trials[0].number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose workers stopped beating; each goes back in the queue as a copy."""
    if not _beats(study_storage(study)):
        return
    from optuna.storages import fail_stale_trials

    with _settled():
        fail_stale_trials(study)


def hand_back(study: optuna.Study, trial: optuna.Trial) -> None:
    """Fail an interrupted trial and queue its copy (same slot, same values) for the next taker."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    study.tell(trial, state=TrialState.FAIL)
    with _settled():
        RetryHeartbeatStaleTrialCallback()(study, study_storage(study).get_trial(trial_id(trial)))


def unfinished(study: optuna.Study) -> int:
    """Trials waiting or running: what `wait` waits for."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


Outcome = tuple[float, float] | ValueError | TrainingDiverged  # (validation, test), or why the trial failed
Claimed = list[tuple["optuna.Trial", int]]  # trials this worker holds, each with its slot


def work(
    study: optuna.Study,
    run_trials: Callable[[Claimed], list[Outcome]],
    *,
    wait: bool,
    batch: int = 1,
    poll: float = 1.0,
    on_done: Callable[[int, float], None] = lambda slot, validation: None,
) -> int:
    """Run waiting trials of `study` until none is left; with `wait`, also until no other worker holds one.

    The worker claims up to `batch` waiting trials at a time (a learner that trains trials together trains
    them in one program). `run_trials([(trial, slot), ...])` samples each trial's values and returns, per
    trial, (validation, test), or the ValueError (the estimator refused its values) or TrainingDiverged that
    fails it for good. Returns how many trials this worker finished.
    """
    from optuna.trial import TrialState

    finished = 0
    while True:
        fail_stale(study)
        claimed: Claimed = []
        while len(claimed) < batch and (trial := claim(study)) is not None:
            claimed.append((trial, int(trial.user_attrs.get(SLOT, trial.number))))
        if not claimed:
            if not wait or not unfinished(study):
                return finished
            time.sleep(poll)
            continue
        with heartbeat(study, [trial for trial, _ in claimed]):
            try:
                outcomes = run_trials(claimed)
            except BaseException:
                for trial, _ in claimed:
                    hand_back(study, trial)
                raise
        for (trial, slot), outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):  # a sampled learning rate may diverge: that trial fails
                reason = first_line(outcome)
                print(f"tune: notice: {study.study_name} slot {slot} failed: {reason}", file=sys.stderr)
                trial.set_user_attr(ERROR, reason)
                validation = test = math.nan
            else:
                validation, test = outcome
            if math.isfinite(test):
                trial.set_user_attr("test", test)
            if math.isfinite(validation):
                study.tell(trial, validation)
            else:
                if ERROR not in trial.user_attrs:
                    trial.set_user_attr(ERROR, "the score is not a finite number")
                study.tell(trial, state=TrialState.FAIL)
            finished += 1
            on_done(slot, validation)


def slots(study: optuna.Study, trials: int) -> list[Slot]:
    """Every slot's result in slot order; a QuestError when some slot has none yet."""
    from optuna.trial import TrialState

    complete: dict[int, list[optuna.trial.FrozenTrial]] = {}
    failed: dict[int, optuna.trial.FrozenTrial] = {}  # the last trial of the slot that failed on its own
    runs: dict[int, int] = {}
    for frozen in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        slot = frozen.user_attrs.get(SLOT, frozen.number)
        if frozen.state != TrialState.WAITING:
            runs[slot] = runs.get(slot, 0) + 1
        if frozen.state == TrialState.COMPLETE:
            complete.setdefault(slot, []).append(frozen)
        elif frozen.state == TrialState.FAIL and ERROR in frozen.user_attrs:
            failed[slot] = frozen
    results = {slot: found[0] for slot, found in complete.items()}
    results.update({slot: frozen for slot, frozen in failed.items() if slot not in results})
    missing = [slot for slot in range(trials) if slot not in results]
    if missing:
        raise QuestError(
            f"tune: study {study.study_name} has no result yet for {len(missing)} of its {trials} trials "
            f"(workers still running, or stopped); run the sweep again to finish them"
        )
    twice = sorted(slot for slot, found in complete.items() if len(found) > 1)
    if twice:  # the claim's row lock rules this out; say so loudly if it ever happens
        raise RuntimeError(f"study {study.study_name}: slots {twice} completed more than once")
    return [
        Slot(
            slot=slot,
            params=dict(results[slot].params),
            validation=float(results[slot].value) if results[slot].state == TrialState.COMPLETE else math.nan,
            test=float(results[slot].user_attrs.get("test", math.nan)),
            runs=runs[slot],
        )
        for slot in range(trials)
    ]
