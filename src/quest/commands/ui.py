"""`make ui` (python -m quest.commands.ui): the MLflow UI for the repository's store, opened on the runs.

MLflow 3 opens an experiment on its GenAI overview ("Traces: 0"), which quest does not use, and a new browser
profile keeps doing so; the runs page has an address of its own (`#/experiments/<id>/runs`). So this starts
`mlflow ui` on 127.0.0.1, waits until it answers, then says (and opens, where there is a browser) the runs page
of quest's experiment and of the suite's: each comparison and the suite are parent runs there, their models and
tables a click on the row's expander away.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path

from quest.core import paths
from quest.core.errors import QuestError, run_cli
from quest.params import read_params, suite_experiment
from quest.tracking.store import tracking_uri


def runs_page(base: str, experiment_id: str) -> str:
    """The address of an experiment's runs in the MLflow UI (not its GenAI overview)."""
    return f"{base}/#/experiments/{experiment_id}/runs"


def experiment_ids(uri: str, names: list[str]) -> dict[str, str]:
    """The ids of those of `names` the store holds."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = {}
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            found[name] = experiment.experiment_id
    return found


def wait_until_up(base: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                raise QuestError(f"mlflow ui exited ({process.returncode}) before it answered at {base}") from None
            if time.monotonic() > deadline:
                raise QuestError(f"mlflow ui did not answer at {base} within {seconds:.0f} s") from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quest.commands.ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=paths.PARAMS, help="params file (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--no-browser", action="store_true", help="say the address only; open no browser")
    args = parser.parse_args(argv)

    root = paths.repo_root(args.params.resolve().parent)
    params = read_params(args.params, sections=None)
    uri = tracking_uri(root)
    base = f"http://127.0.0.1:{args.port}"
    names = [params.mlflow.experiment, suite_experiment(params.mlflow.experiment)]
    if uri.startswith(("http://", "https://")):  # a team server (MLFLOW_TRACKING_URI): its own UI, running already
        found = experiment_ids(uri, names)
        for name in names:
            if name in found:
                print(f"ui: {name}: {runs_page(uri.rstrip('/'), found[name])}", file=sys.stderr)
        return
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ]  # fmt: skip
    )
    try:
        wait_until_up(base, process)
        found = experiment_ids(uri, names)
        pages = [f"{name}: {runs_page(base, found[name])}" for name in names if name in found]
        if not pages:
            print(f"ui: MLflow UI at {base}; no quest run yet (make repro or make suite)", file=sys.stderr, flush=True)
        for page in pages:
            print(f"ui: {page}", file=sys.stderr, flush=True)
        if pages and not args.no_browser:
            webbrowser.open(pages[0].split(": ", 1)[1])
        process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    run_cli("quest ui", main)
