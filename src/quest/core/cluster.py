"""The comparison's and the learning curves' fits on a Dask cluster (`compare.executor: dask://host:port`, or
QUEST_EXECUTOR): the engine the field already runs and monitors (its dashboard, its deployment tools), not one
quest wrote.

Each learner is one task: a classic model's fits (its CV splits and its final fit), a network's every fit in one
compiled program, CatBoost's fits on a worker's every core. The prepared arrays are scattered once to every
worker (`broadcast`), not shipped with each task. MLflow logging and every output stay in the stage process: the
workers only compute, and a network comes back as the bytes of its saved archive. A worker that dies mid-task
has its task rerun on another (Dask's scheduler does so); a result does not depend on where it ran, since its
data, settings, seed and threads are the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from quest.core import interrupts
from quest.core.errors import QuestError
from quest.core.host import cpuinfo, installed_versions
from quest.params import EXECUTOR

ENV = "QUEST_EXECUTOR"  # overrides compare.executor (a team's CI pointing every run at its cluster)
SCHEME = "dask://"  # the one engine so far; EXECUTOR (quest.params) says what a setting may be
CONNECT_SECONDS = 10


def executor(setting: str) -> str:
    """The executor in force: QUEST_EXECUTOR when set, else compare.executor; `local` or dask://host:port."""
    chosen = os.environ.get(ENV) or setting
    if not EXECUTOR.fullmatch(chosen):
        where = ENV if os.environ.get(ENV) else "compare.executor"
        raise QuestError(f"{where} must be local or dask://host:port (got {chosen!r})")
    return chosen


def scheduler_address(chosen: str) -> str:
    return "tcp://" + chosen[len(SCHEME) :]


@contextmanager
def connected(chosen: str) -> Iterator[Any]:
    """A Dask client of the scheduler at `chosen` (dask://host:port), whose workers can run quest's tasks."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is in the lock
        raise QuestError("compare.executor names a Dask cluster and `distributed` is not installed") from None
    try:
        client = Client(scheduler_address(chosen), timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise QuestError(
            f"compare.executor {chosen}: no Dask scheduler answers there ({type(error).__name__}); start one "
            "(make cluster) or set compare.executor to local"
        ) from None
    try:
        check_workers(client, chosen)
        yield client
    finally:
        client.close()


SIMD_CAP = "NPY_DISABLE_CPU_FEATURES"  # set by quest's stages before numpy loads (quest.stages), and by make cluster
LIBRARIES = ("quest", "scikit-learn", "xgboost-cpu", "lightgbm", "numpy")


def _versions() -> dict[str, str]:
    """What a process has of what quest's tasks compute with: quest, the model libraries, numpy's SIMD cap, and
    whether its CPU has AVX-512 (where the cap matters)."""
    found = installed_versions(list(LIBRARIES))
    found[SIMD_CAP] = os.environ.get(SIMD_CAP, "unset")
    found["AVX-512"] = "yes" if "avx512f" in cpuinfo().get("flags", "").split() else "no"
    return found


def check_workers(client: Any, chosen: str) -> None:
    """Every worker has quest and the model libraries at this process's versions and, on a CPU like this one,
    numpy capped as quest's stages cap it; or one line says which worker differs how (a task would fail there
    with a traceback, or answer with other numbers)."""
    here = _versions()
    workers = client.run(_versions)
    if not workers:
        raise QuestError(f"compare.executor {chosen}: the scheduler has no worker; start some (make cluster)")
    for worker, there in sorted(workers.items()):
        differ = [f"{name} {there[name]} (here {here[name]})" for name in LIBRARIES if there[name] != here[name]]
        if differ:
            raise QuestError(
                f"compare.executor {chosen}: worker {worker} has {', '.join(differ)}: install quest's lock there "
                "(make setup) and restart it"
            )
        if there["AVX-512"] == here["AVX-512"] and there[SIMD_CAP] != here[SIMD_CAP]:
            raise QuestError(
                f"compare.executor {chosen}: worker {worker} has {SIMD_CAP} {there[SIMD_CAP]} (here {here[SIMD_CAP]}), "
                "so its numpy rounds otherwise: start workers with make cluster (scripts/cluster.sh), which sets it "
                "as quest's stages do"
            )


@contextmanager
def tasks(
    chosen: str,
    function: Callable[..., Any],
    items: Sequence[Any],
    shared: Any,
    *args: Any,
    priorities: Sequence[int] | None = None,
) -> Iterator[Iterator[Any]]:
    """function(item, shared, *args) for each item, a task each on the cluster `chosen` names (the higher its
    priority, the sooner it starts), `shared` scattered once to every worker: the results in the items' order,
    each as soon as it and those before it are done. Leaving the block early cancels what is left; a signal
    meanwhile names the cluster (quest.core.interrupts)."""
    with connected(chosen) as client, interrupts.during(f"the cluster at {chosen} ({len(items)} models)"):
        handle = client.scatter(shared, broadcast=True, hash=False)
        futures = [
            client.submit(function, item, handle, *args, pure=False, priority=priority)
            for item, priority in zip(items, priorities or [0] * len(items), strict=True)
        ]
        try:
            yield (future.result() for future in futures)
        finally:
            client.cancel(futures)
