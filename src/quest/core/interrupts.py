"""How a command ends when it is interrupted, at whatever moment: one line, exit 130 (SIGINT) or 143 (SIGTERM),
no traceback, no output half-written, every MLflow run it opened ended KILLED, no worker left behind.

Python runs a signal's handler in the main thread, between two bytecodes. A main thread that is inside a native
fit (CatBoost's, a compiled network's) or waiting for a thread that is, would see the signal only when that
returns, minutes later. So a watchdog thread wakes on each signal too (`signal.set_wakeup_fd`):
1. at once, it kills the worker processes registered here (`workers`): they ignore SIGINT and SIGTERM, so a
   signal to the whole process group (Ctrl-C, `timeout`, a CI runner) never reaches their native code;
2. it gives the main thread `grace` seconds to unwind through its own cleanup (Terminated or KeyboardInterrupt
   reaches `run_cli`, which calls `finish`);
3. if the main thread has not finished by then, the watchdog ends the process itself: it waits for any output
   being published (`publishing`) to be complete, runs the cleanups registered for the moment (`cleanup`: a
   staging directory goes), prints the one line and exits.
Either way the callbacks registered with `on_stop` run once (an MLflow store ends this process's runs KILLED).

Under DVC (DVC_STAGE is set) a thread also watches the stage's dvc from the moment quest.stages is imported
(`watch_dvc`), so a stage whose `dvc` is gone (killed, or a CI job that timed out) terminates as on SIGTERM
instead of running on as an orphan that could still write. dvc runs a command through $SHELL -c (/bin/sh where
SHELL is unset): bash becomes the command, dash waits for it, so dvc is the parent or the parent's parent.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Terminated(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt, not an error)
    """SIGTERM, raised in the main thread so that cleanup runs: staging directories go, MLflow runs end KILLED."""


EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 128 + signal.SIGTERM}
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
GRACE = 3.0  # seconds the main thread has to unwind by itself before the watchdog ends the process
PARENT_POLL = 0.5  # seconds between two looks at whether the parent is still there
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "busybox"})  # what dvc may run a command in


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """A process's name, state, parent and start time from /proc; None when it is gone (or there is no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces and parentheses
    return text[text.index("(") + 1 : text.rindex(")")], fields[0], int(fields[1]), int(fields[19])


def _above_shells(parent: int) -> tuple[int, int | None]:
    """The first process above `parent` that is not a shell (`parent` itself if it is not one: dvc), with its
    start time, which tells it from a later process given the same pid (None without /proc)."""
    pid = parent
    while (found := _stat(pid)) is not None:
        name, _, up, start = found
        if name not in SHELLS or up <= 1:
            return pid, start
        pid = up
    return pid, None


def _alive(pid: int, start: int | None) -> bool:
    """Whether the process `_above_shells` found still runs (without /proc, the parent's own check is all)."""
    if start is None:
        return True
    found = _stat(pid)
    return found is not None and found[1] != "Z" and found[3] == start


# At import: a stage imports this first, and its dvc may be gone before it is armed. Only a stage under DVC
# walks /proc for it; every other command watches nothing.
_PARENT = os.getppid()
_DVC = _above_shells(_PARENT) if os.environ.get("DVC_STAGE") is not None else (_PARENT, None)

_state = threading.Lock()
_cleanups: dict[int, Callable[[], None]] = {}  # for the moment: run only when the watchdog ends the process
_on_stop: dict[int, Callable[[], None]] = {}  # for the process's life: run however it ends after a signal
_workers: set[int] = set()
_activities: list[str] = []
_doing: list[str] = []  # the activities when the signal came
_raised: list[bool] = []  # whether the main thread's handler has raised already
_publishing = threading.RLock()
_ended = threading.Event()
_received: list[int] = []
_reason: list[str] = []  # why, when it is not a signal sent to us (the parent is gone)
_prog = ""
_grace = GRACE


def arm(prog: str, *, grace: float = GRACE) -> None:
    """In the main thread of a command, before its work: SIGTERM raises Terminated, and the watchdog starts."""
    global _prog, _grace
    _prog, _grace = prog, grace
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    threading.excepthook = functools.partial(_thread_failed, threading.excepthook)
    sys.unraisablehook = functools.partial(_unraisable, sys.unraisablehook)
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read,), name="quest-interrupts", daemon=True).start()
    watch_dvc()


_watching: list[bool] = []


def watch_dvc() -> None:
    """Under DVC (DVC_STAGE is set), from now on: when the process that started this one is gone, terminate.
    Once per process; quest.stages calls it on import, before the stage's imports (seconds), so that a dvc
    killed during them is seen too (by `arm`, the orphan's parent would already be its new one)."""
    if os.environ.get("DVC_STAGE") is None:
        return
    with _state:
        if _watching:
            return
        _watching.append(True)
    _watch_parent(_PARENT, _parent_gone, _ended, above=_DVC)


def _thread_failed(original: Callable, failure: threading.ExceptHookArgs) -> None:
    """A thread's exception after a signal is the stop's doing (a process pool whose workers were killed
    fails its bookkeeping thread): no traceback for it; before a signal, Python's usual report."""
    if received() is None:
        original(failure)


def _unraisable(original: Callable, failure: Any) -> None:
    """Our Terminated or KeyboardInterrupt raised inside a callback whose exceptions Python ignores (JAX runs one
    on every garbage collection): lost there, so the signal is sent again for the main thread to take up where
    it can raise (the watchdog ends the process after `grace` seconds if it never can). Other ones as usual."""
    if isinstance(failure.exc_value, Terminated | KeyboardInterrupt) and received() is not None:
        _raised.clear()
        # From another thread, a moment later: sent from here, it would raise inside this hook at once.
        threading.Timer(0.05, os.kill, (os.getpid(), received())).start()
        return
    original(failure)


def _terminate(signum: int, frame: object) -> None:
    _note(signum)
    _raise(Terminated)


def _interrupt(signum: int, frame: object) -> None:
    _note(signum)
    _raise(KeyboardInterrupt)


def _note(signum: int) -> None:
    """Record the first signal, and what the command was doing then (its unwinding closes those blocks)."""
    with _state:
        if not _received:
            _received.append(signum)
            _doing.extend(_activities)


def _raise(kind: type[BaseException]) -> None:
    """Raise `kind` in the main thread now, or, while it publishes outputs, once they are all in place; once
    only: a second signal while the first unwinds is the watchdog's to handle."""
    if _raised:
        return
    _raised.append(True)
    if _main_publishing:
        _deferred.append(kind)
        return
    raise kind


def completed() -> None:
    """The command's work is done (its outputs published): a signal from now on changes nothing, and the
    interpreter's teardown (seconds, with JAX or TensorFlow loaded) is not cut short."""
    _ended.set()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # SIG_IGN outlives the interpreter's restoring of handlers
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def received() -> int | None:
    """The signal this process was stopped by, if any (the first one)."""
    return _received[0] if _received else None


def _watch(read: int) -> None:
    while True:
        try:
            data = os.read(read, 64)
        except OSError:
            return
        signals = [number for number in data if number in EXIT_CODES]
        if signals:
            _note(signals[0])
            stop_workers()
            if not _ended.wait(_grace):
                _end_here()
            return


def _watch_parent(
    parent: int, gone: Callable[[int], None], stop: threading.Event, *, above: tuple[int, int | None] | None = None
) -> None:
    """On a thread, until `stop` is set: when `parent` is no longer this process's parent, or the process
    `above` it (pid, start time) has ended, `gone(pid)` with the pid of the one that went (`above`'s if given)."""
    watched = above or (parent, None)

    def watch() -> None:
        while not stop.wait(PARENT_POLL):
            if os.getppid() != parent or not _alive(*watched):
                gone(watched[0])
                return

    threading.Thread(target=watch, name="quest-parent", daemon=True).start()


def _parent_gone(dvc: int) -> None:
    _reason.append(f"its dvc, process {dvc}, is gone")
    if not _prog:  # still importing, not armed: no handler to raise in, nothing written yet; end it from here
        _note(signal.SIGTERM)
        _end_here()
    os.kill(os.getpid(), signal.SIGTERM)  # the same path as a SIGTERM from outside


def stop_workers() -> None:
    """Kill the registered worker processes now (a stopped command's pool would wait for their models)."""
    with _state:
        pids = list(_workers)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def line() -> str:
    """What the command prints when it stops on a signal: what it was doing, and what it kept."""
    signum = received() or signal.SIGTERM
    doing = f" while {'; '.join(_doing)}" if _doing else ""
    why = f" ({_reason[0]})" if _reason else ""
    prog = _prog or f"quest {Path(sys.argv[0]).stem}"  # before `arm`: python -m quest.stages.compare → compare
    return f"{prog}: {WORDS[signum]}{why}{doing}; nothing half-written was kept"


def finish() -> int:
    """The main thread has unwound after a signal: say so in one line (once) and return the exit code."""
    with _publishing:  # the watchdog may be ending the process from its side at this moment
        _ended.set()
        stop_workers()
        _run(_on_stop)
        _say()
    return EXIT_CODES[received() or signal.SIGTERM]


def _run(callbacks: dict[int, Callable[[], None]]) -> None:
    with _state:
        functions = list(callbacks.values())
        callbacks.clear()  # once: the watchdog and the main thread may both get here
    for function in reversed(functions):
        with contextlib.suppress(Exception):
            function()


_said: list[bool] = []


def _say() -> None:
    with _state:
        if _said:
            return
        _said.append(True)
    with contextlib.suppress(Exception):
        print(line(), file=sys.stderr, flush=True)


def _end_here() -> None:
    """The main thread is stuck in native code: end the process from here, cleanly."""
    with _publishing:  # never between two outputs of one publication
        _ended.set()
        stop_workers()
        _run(_cleanups)
        _run(_on_stop)
        _say()
        os._exit(EXIT_CODES[received() or signal.SIGTERM])


@contextlib.contextmanager
def cleanup(function: Callable[[], None]) -> Iterator[None]:
    """Inside the block, `function` runs if the watchdog has to end the process (the main thread's own unwinding
    handles the block otherwise)."""
    with _state:
        key = id(function)
        _cleanups[key] = function
    try:
        yield
    finally:
        with _state:
            _cleanups.pop(key, None)


def on_stop(function: Callable[[], None]) -> None:
    """`function` runs once if a signal stops the process, whichever thread ends it (an MLflow store ends this
    process's runs KILLED)."""
    with _state:
        _on_stop[id(function)] = function


_main_publishing: list[bool] = []  # non-empty while the main thread is inside `publishing`
_deferred: list[type[BaseException]] = []  # the exception a signal raises once the main thread has published


@contextlib.contextmanager
def publishing() -> Iterator[None]:
    """Outputs replace their predecessors inside this block: a signal takes effect once it ends, whichever
    thread handles it."""
    main = threading.current_thread() is threading.main_thread()
    with _publishing:
        if main:
            _main_publishing.append(True)
        try:
            yield
        finally:
            if main:
                _main_publishing.pop()
    if main and _deferred and not _main_publishing:
        raise _deferred.pop()


@contextlib.contextmanager
def during(activity: str) -> Iterator[Callable[[], None]]:
    """Name what the command is doing inside the block, for the line it prints if it is stopped; the block may
    say it is done sooner by calling what this yields."""

    def done() -> None:
        with _state:
            if activity in _activities:
                _activities.remove(activity)

    with _state:
        _activities.append(activity)
    try:
        yield done
    finally:
        done()


def activities() -> list[str]:
    """What the command is doing now (its open `during` blocks), oldest first."""
    with _state:
        return list(_activities)


def add_worker(pid: int) -> None:
    with _state:
        _workers.add(pid)


def remove_worker(pid: int) -> None:
    with _state:
        _workers.discard(pid)


def as_worker(parent: int) -> None:
    """In a worker process the command forked: signals are for the command to handle, not for the worker's
    native code (the command kills it), and a worker whose command is gone exits."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    _watch_parent(parent, lambda _: os._exit(1), threading.Event())  # a fresh event: the command's was forked
