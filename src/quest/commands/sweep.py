"""`quest sweep`: worker processes share the tune stage's Optuna studies through tune.storage.

Each model's study holds the whole budget (tune.trials) from the moment it is created. Every worker takes
waiting trials of every study until none is left; the storage's row lock hands each trial to exactly one
worker, and a worker's heartbeat lets the others rerun the trial of a worker that died (quest.tuning.studies).
Workers on other machines join with the same command against the same storage: more workers only finish
sooner. The results do not depend on who ran what. `dvc repro` then runs the tune stage, which finds every
trial done and logs each once to MLflow; `make sweep` does all three steps.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from quest.core import arguments
from quest.core.errors import QuestError, Terminated, run_cli, shown_uri
from quest.learners.registry import load_params
from quest.params import Params


def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("tuning.sweep", __doc__, "params", "data")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes to start on this machine (default: %(default)s)"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the launcher: this process is one
    args = parser.parse_args(argv)
    params = load_params(args.params, table=args.table)
    if params.tune.trials == 0:
        raise QuestError("params.yaml: tune.trials is 0 (tuning off); a sweep needs a budget, e.g. tune.trials: 12")
    if params.tune.storage is None:
        raise QuestError(
            "params.yaml: tune.storage is null; a sweep's workers share their studies through it, e.g. "
            "postgresql+psycopg://quest@127.0.0.1:5433/optuna (`make server` starts that database)"
        )
    if args.worker is not None:
        work(args.worker, args.data, params)
    elif args.workers < 1:
        raise QuestError(f"--workers must be at least 1 (got {args.workers})")
    else:
        launch(args, params)


def launch(args: argparse.Namespace, params: Params) -> None:
    """Create the studies (their budget queued), start the workers, wait for them, then check every trial."""
    from quest.tuning import search, studies

    plan = search.plan(args.data, params, who="sweep")
    handles = {name: plan.open(name) for name in plan.models}
    print(
        f"sweep: {len(plan.models)} studies x {params.tune.trials} trials on {shown_uri(params.tune.storage)}; "
        f"starting {args.workers} workers",
        file=sys.stderr,
    )
    command = [sys.executable, "-m", "quest.commands.sweep", "--params", str(args.params), "--data", str(args.data)]
    workers = {}
    for number in range(1, args.workers + 1):
        workers[number] = subprocess.Popen([*command, "--worker", str(number)])
        print(f"sweep: worker {number} is process {workers[number].pid}", file=sys.stderr)
    started = time.perf_counter()
    try:
        codes = _wait(workers)
    except (KeyboardInterrupt, Terminated):
        for process in workers.values():  # each hands its running trial back before it exits
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers.values():
            process.wait()
        raise
    lost = [number for number, code in codes.items() if code != 0]
    for name, handle in handles.items():
        found = studies.slots(handle, params.tune.trials)  # a QuestError names the study when trials are missing
        reruns = sum(slot.runs - 1 for slot in found)
        again = f", {reruns} rerun after its worker stopped" if reruns else ""
        print(f"sweep: {name:<10} {len(found)}/{params.tune.trials} trials have a result{again}", file=sys.stderr)
    if lost:
        print(
            f"sweep: notice: worker {', '.join(map(str, lost))} stopped early; the others finished its trials",
            file=sys.stderr,
        )
    print(
        f"sweep: every study is complete ({time.perf_counter() - started:.0f} s); `dvc repro` collects the results "
        f"into reports/tuning and logs each trial once to MLflow",
        file=sys.stderr,
    )


def _wait(workers: dict[int, subprocess.Popen]) -> dict[int, int]:
    codes: dict[int, int] = {}
    while len(codes) < len(workers):
        for number, process in workers.items():
            if number not in codes and process.poll() is not None:
                codes[number] = process.returncode
                how = f"exit {process.returncode}" if process.returncode >= 0 else f"signal {-process.returncode}"
                print(f"sweep: worker {number} finished ({how})", file=sys.stderr)
        time.sleep(0.2)
    return codes


def work(number: int, data_dir: Path, params: Params) -> None:
    """One worker: the waiting trials of every study, then any that dead workers left, until none is left."""
    from quest.tuning import search

    who = f"sweep w{number}"
    plan = search.plan(data_dir, params, who=who)
    print(f"{who}: pid {', '.join([str(os.getpid()), *plan.devices()])}", file=sys.stderr)
    handles = {name: plan.open(name) for name in plan.models}
    ran = 0
    for wait in (False, True):  # first spread over every study, then wait for what others still hold
        for name, handle in handles.items():
            ran += plan.work(name, handle, wait=wait, who=who)
    print(f"{who}: done, ran {ran} trials", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest sweep", main)
