"""Which process this is, and whether another one still runs: how runs and trials a dead process left behind
are found (MLflow runs, Optuna trials, staging directories all record host:pid)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from quest.core.errors import QuestError


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


@contextmanager
def threads_at_most(count: int) -> Iterator[None]:
    """In the block, this process's libraries keep to `count` threads: those with pools of their own (CatBoost,
    LightGBM) read `threads()`, OpenMP and BLAS are held by threadpoolctl (scikit-learn's own dependency)."""
    from threadpoolctl import threadpool_limits

    share_cores(count)
    with threadpool_limits(limits=count):
        yield


MEMORY_LIMIT_ENV = "QUEST_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_available() -> int:
    """Bytes this process may still take: QUEST_MEMORY_LIMIT when set (`4G`, `512M`, bytes), else the smaller of
    the kernel's MemAvailable and what the cgroup the process runs in leaves it."""
    given = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    text = given.upper().removesuffix("B").removesuffix("I")
    if text:
        number, unit = (text[:-1], text[-1]) if text[-1] in _UNITS else (text, "")
        try:
            return int(float(number) * _UNITS[unit])
        except ValueError:
            raise QuestError(
                f"{MEMORY_LIMIT_ENV} must be a size such as 4G, 512M or a number of bytes (got {given!r})"
            ) from None
    found = [value for value in (_meminfo_available(), _cgroup_left()) if value is not None]
    return min(found) if found else 2**62  # nothing says: no guard


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left() -> int | None:
    """cgroup v2: memory.max less memory.current for this process's group; None where there is no limit."""
    try:
        group = Path("/proc/self/cgroup").read_text(encoding="utf-8").strip().split("::", 1)[1]
        base = Path(f"/sys/fs/cgroup{group}")
        limit = (base / "memory.max").read_text(encoding="utf-8").strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text(encoding="utf-8").strip())
    except (OSError, IndexError, ValueError):
        return None


def size_text(count: float) -> str:
    """Bytes for a person: `9.1 GB`, `512 MB`."""
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"
