"""A command stopped at any moment: one line, exit 130 or 143, no traceback, its cleanups run; a stage whose
dvc parent is gone stops too. Real processes and real signals, on a command small enough to read."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support import running

# A command with quest's run_cli: it says it is ready on stdout, then does what argv[1] asks.
COMMAND = textwrap.dedent(
    """
    import functools, hashlib, sys, time
    from pathlib import Path
    from quest.core import interrupts
    from quest.core.errors import run_cli

    def main(argv):
        marker = Path(sys.argv[2])
        interrupts.on_stop(lambda: marker.with_suffix(".stopped").write_text("ran"))
        with interrupts.cleanup(lambda: marker.with_suffix(".cleaned").write_text("ran")):
            with interrupts.during("doing " + sys.argv[1]):
                print("ready", flush=True)
                if sys.argv[1] == "python":  # the main thread in Python: it unwinds by itself
                    while True:
                        time.sleep(0.01)
                elif sys.argv[1] == "native":  # the main thread in C for a long time: the watchdog ends it
                    hashlib.pbkdf2_hmac("sha256", b"x", b"y", 10**9)
                elif sys.argv[1] == "gc":  # most of the time inside a callback whose exceptions Python ignores
                    import gc
                    gc.callbacks.append(lambda phase, info: time.sleep(0.05))
                    while True:
                        gc.collect()
                elif sys.argv[1] == "publishing":  # a signal while outputs are replaced waits for them
                    with interrupts.publishing():
                        time.sleep(1.5)
                        marker.write_text("published")
                    while True:
                        time.sleep(0.01)

    run_cli("quest demo", main)
    """
)


def start(tmp_path: Path, mode: str, env: dict | None = None) -> subprocess.Popen:
    script = tmp_path / "demo.py"
    script.write_text(COMMAND)
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    process = subprocess.Popen(
        [sys.executable, str(script), mode, str(tmp_path / "marker")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout.readline() == "ready\n"
    return process


@pytest.mark.parametrize(("mode", "sent", "code", "word"), [
    ("python", signal.SIGTERM, 143, "terminated"),
    ("python", signal.SIGINT, 130, "interrupted"),
    ("native", signal.SIGTERM, 143, "terminated"),
    ("native", signal.SIGINT, 130, "interrupted"),
])  # fmt: skip
def test_a_signal_ends_the_command_in_one_line_whatever_its_main_thread_is_doing(tmp_path, mode, sent, code, word):
    process = start(tmp_path, mode)
    time.sleep(0.5)  # from "ready" into the loop or the native call
    started = time.monotonic()
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code
    assert stderr == f"quest demo: {word} while doing {mode}; nothing half-written was kept\n"
    assert time.monotonic() - started < 10  # not when the native call would have returned
    assert (tmp_path / "marker.stopped").read_text() == "ran"  # on_stop: however it ends
    # The scoped cleanup is for the watchdog's ending only; a main thread that unwinds runs its own.
    assert (tmp_path / "marker.cleaned").exists() == (mode == "native")


def test_a_signal_inside_a_callback_whose_exceptions_python_ignores_still_stops_the_command(tmp_path):
    # JAX collects garbage with a callback: a Terminated raised there was printed as 'Exception ignored' and lost.
    process = start(tmp_path, "gc")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert stderr == "quest demo: terminated while doing gc; nothing half-written was kept\n"


def test_the_watchdog_never_ends_the_process_between_two_outputs(tmp_path):
    process = start(tmp_path, "publishing")
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and stderr.startswith("quest demo: terminated")
    assert (tmp_path / "marker").read_text() == "published"


def test_a_second_signal_while_the_first_is_handled_changes_nothing(tmp_path):
    process = start(tmp_path, "native")
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.count("\n") == 1 and "Traceback" not in stderr


# A stage still in its imports: quest.stages is imported first, the command is armed seconds later.
IMPORTING = textwrap.dedent(
    """
    import time
    import quest.stages
    time.sleep(600)
    from quest.core.errors import run_cli
    """
)


DASH = shutil.which("dash")


@pytest.mark.parametrize(
    ("script", "doing", "shell"),
    [
        (COMMAND, " while doing python", None),
        (IMPORTING, "", None),
        pytest.param(COMMAND, " while doing python", DASH, marks=pytest.mark.skipif(not DASH, reason="no dash")),
    ],
    ids=["armed", "importing", "dash"],
)
def test_a_stage_whose_dvc_is_gone_terminates(tmp_path, script, doing, shell):
    # A stand-in for dvc: it starts the stage with DVC_STAGE set, says the stage's pid, and is killed. dvc runs a
    # command through $SHELL -c, /bin/sh where SHELL is unset: bash becomes the command; dash (Debian's /bin/sh)
    # waits for it, so the stage's parent lives on when dvc is killed.
    demo = tmp_path / "demo.py"
    demo.write_text(script)
    command = [sys.executable, str(demo), "python", str(tmp_path / "marker")]
    launcher = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        env = {{**os.environ, "DVC_STAGE": "demo", "PYTHONPATH": {str(REPO / "src")!r}}}
        command = {[shell, "-c", shlex.join(command)] if shell else command!r}
        stage = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                 stderr=open({str(tmp_path / "stage.err")!r}, "w"))
        children = f"/proc/{{stage.pid}}/task/{{stage.pid}}/children"
        while {bool(shell)} and not open(children).read().split():
            time.sleep(0.01)
        print(open(children).read().split()[0] if {bool(shell)} else stage.pid, flush=True)
        time.sleep(600)
        """
    )
    dvc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    stage = int(dvc.stdout.readline())
    time.sleep(1.0)  # the stage is in its loop, or (IMPORTING) was never armed
    dvc.kill()
    dvc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and running(stage):
        time.sleep(0.1)
    assert not running(stage), "the stage ran on after its parent was killed"
    printed = (tmp_path / "stage.err").read_text()
    assert printed == (
        f"quest demo: terminated (its dvc, process {dvc.pid}, is gone){doing}; nothing half-written was kept\n"
    )
