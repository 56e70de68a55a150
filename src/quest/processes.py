"""Which process this is, and whether another one still runs: how runs and trials a dead process left behind
are found (MLflow runs, Optuna trials, staging directories all record host:pid)."""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def this_host() -> str:
    return socket.gethostname()


def alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_threads: int | None = None  # set in a worker process that shares the cores with others (compare's pool)


def threads() -> int:
    """Threads a model library may start here: this process's share of the cores when it is one of several
    workers, else every core it may run on."""
    return _threads or len(os.sched_getaffinity(0))


def share_cores(count: int) -> None:
    """Say that this process may use `count` threads (a worker of a pool that splits the cores)."""
    global _threads
    _threads = max(1, count)
