"""Where a stage's wall time goes (start-up and imports, compute, MLflow, the rest), for the benchmarks.

Stages mark their phases with `phase(name)`; nested phases are exclusive (an inner phase's time leaves the
outer one). Nothing is written unless the environment variable QUEST_TIMINGS names a file: then each stage
appends one JSON line to it when it ends, and `benchmarks/bench.py` adds the lines up.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

ENV = "QUEST_TIMINGS"

_spent: dict[str, float] = {}
_stack: list[list[float]] = []  # per open phase: [start, time taken by phases nested in it]


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the time inside the block as `name`, less any phase nested in it."""
    _stack.append([time.perf_counter(), 0.0])
    try:
        yield
    finally:
        started, nested = _stack.pop()
        elapsed = time.perf_counter() - started
        _spent[name] = _spent.get(name, 0.0) + elapsed - nested
        if _stack:
            _stack[-1][1] += elapsed


def process_age() -> float:
    """Seconds since this process started (interpreter start-up and every import included); 0 where unknown."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


def record(stage: str, startup: float) -> None:
    """Append this stage's split to the QUEST_TIMINGS file, when there is one."""
    target = os.environ.get(ENV)
    if not target:
        return
    total = process_age()
    spent = {name: round(value, 3) for name, value in sorted(_spent.items())}
    other = total - startup - sum(_spent.values())
    line = {"stage": stage, "total": round(total, 3), "startup": round(startup, 3), **spent, "other": round(other, 3)}
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def timed(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of `phase`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with phase(name):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def duration_text(seconds: float) -> str:
    """A wall time as people read it on a console: 45s, 3m 07s, 1h 02m."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {seconds_left:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"
