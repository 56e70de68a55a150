"""Helpers the tests share (and benchmarks/bench.py): a throwaway copy of the repository and the commands run in
it, the tiny params, a free port, one-line errors, toy comparisons. One module, so that no test imports another."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from quest.core.errors import run_cli
from quest.data.artifacts import Prepared, Schema, Split
from quest.data.splits import Division
from quest.evaluation.scoring import ModelResult
from tests.conftest import REPO, merge, stop_group

# A throwaway copy of this repository, its tiny params, and the commands run in it

MODELS = [
    *["mlp", "logreg", "logreg_rbf", "knn5", "knn15", "tree", "forest", "boosting", "svm_rbf"],
    *["hgb", "xgboost", "lightgbm", "catboost", "realmlp", "tabm"],  # tabm is opt-in: listed here
]


TINY = {
    "prepare": {"folds": 2, "repeats": 2},
    "train": {
        "hidden_layers": [8],
        "epochs": 5,
        "batch_size": 32,
        "learning_rate": 0.01,  # few epochs, so a quick learner: the tests check that every model learns
        "early_stopping": {"patience": 2, "validation_fraction": 0.2},
    },
    "realmlp": {"hidden_layers": [16, 16], "embedding_frequencies": 4, "epochs": 20},
    "tabm": {"members": 4, "width": 16, "bins": 8, "embedding_dims": 4, "batch_size": 32, "patience": 4},
    "compare": {"models": MODELS[1:]},
}


# The tests of plumbing (queues, temporary copies, servers) compare the MLP with one quick baseline: what they check
# does not depend on how many models run, and a tiny run of every model costs about 30 s more on 2 cores.
LIGHT = ["logreg"]


TINY_LIGHT = merge(TINY, {"compare": {"models": LIGHT}})


OUTPUTS = ("dvc.lock", "reports", "models", "data/processed", "mlflow.db", "mlartifacts", "mlruns", "suite/dvc.lock",
           "suite/tables")  # fmt: skip


def environment(cwd: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(cwd / "src")  # the copy's own code, not the checkout's
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run a command in the copy; a hang is a failure with whatever it printed, never a stuck CI job."""
    try:
        done = subprocess.run(
            args, cwd=cwd, env=environment(cwd) | (env or {}), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as error:
        printed = f"{error.stdout}\n{error.stderr}"
        raise AssertionError(f"{' '.join(args)} still running after {timeout:.0f} s\n{printed}") from None
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def git(cwd: Path, *args: str) -> None:
    run(["git", "-c", "user.name=quest test", "-c", "user.email=test@quest.local", *args], cwd)


def copy_repo(destination: Path, params: dict) -> Path:
    """The repository's tracked and new files, minus pipeline outputs, as a fresh git repo with `params`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        if name.startswith(OUTPUTS) or not (REPO / name).is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], destination)
    git(destination, "add", "-A")
    git(destination, "commit", "-qm", "copy")
    return destination


def mlflow_runs(root: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["quest"], output_format="list")


def raw_test_rows(project: Path) -> pd.DataFrame:
    """The test split's rows as the table has them, before any preprocessing."""
    from quest.data.sources import load_dataset
    from quest.learners.registry import load_params

    params = load_params(project / "params.yaml")
    table = load_dataset(params.data, seed=params.seed, root=project).features
    return table.iloc[np.load(project / "data" / "processed" / "test_rows.npy")].reset_index(drop=True)


def evaluated(project: Path) -> pd.DataFrame:
    """What evaluate answered for each test row (labels as strings, as the model gives them)."""
    return pd.read_csv(project / "reports" / "eval" / "predictions.csv", dtype={"actual": str, "label": str})


def same_answers(answers: pd.DataFrame, expected: pd.DataFrame) -> bool:
    """The same labels and, to the last bit, the same probabilities (or values)."""
    numbers = [column for column in answers.columns if column != "label"]
    labels = "label" not in answers or list(map(str, answers["label"])) == list(map(str, expected["label"]))
    return labels and np.array_equal(answers[numbers].to_numpy(float), expected[numbers].to_numpy(float))


def processes_under(root: Path) -> list[int]:
    """Processes working in `root` (queue workers, their experiment runs), by their working directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            found.append(int(entry.name))
    return found


def queue_diagnostics(root: Path) -> str:
    logs = sorted((root / ".dvc" / "tmp" / "exps").rglob("*.out"))
    return "\n".join(f"--- {log.relative_to(root)}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)


def run_queue(project: Path, overrides: list[list[str]], env: dict[str, str]) -> tuple[list[str], str]:
    """Queue one experiment per list of `-S` overrides and run them on two workers started with `env`;
    the names of the experiments that succeeded, and the queue's final status."""
    for override in overrides:
        run(["dvc", "exp", "run", "--queue", *override], project)
    # The workers are daemons that inherit the starter's stdout: read it from a file, never wait on a pipe.
    started = project / ".dvc" / "tmp" / "queue-start.log"
    with started.open("w") as log:
        starter = subprocess.Popen(["dvc", "queue", "start", "-j", "2"], cwd=project, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 600
        while True:
            status = run(["dvc", "queue", "status"], project, timeout=120).stdout
            if not re.search(r"\b(Running|Queued)\b", status):
                break
            assert time.monotonic() < deadline, f"queue not done in 600 s:\n{status}\n{queue_diagnostics(project)}"
            time.sleep(3)
    finally:
        run(["dvc", "queue", "stop", "--kill"], project, check=False, timeout=120)
        for pid in processes_under(project):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            starter.wait(timeout=30)
    names = re.findall(r"^\w+\s+(\S+)\s+.*\bSuccess\b", status, flags=re.MULTILINE)
    assert len(names) == len(overrides), f"{status}\n{queue_diagnostics(project)}"
    return names, status


# `quest` as a user runs it, and its one-line errors


def quest(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`quest ARGS` in `cwd`, with this environment less MLflow's and DVC's variables, plus `env`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "quest.commands.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def assert_user_error(done: subprocess.CompletedProcess, prefix: str, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert len(errors) == 1 and message in errors[0], done.stderr


# Servers on 127.0.0.1: a free port, MLflow's health, the addresses a listener is bound to


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Until MLflow on `port` answers /health; a process that exits or never answers fails with its log."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"MLflow on port {port} did not start:\n{log.read_text()}") from None
            time.sleep(0.5)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def bound_addresses(port: int) -> set[str]:
    """The local addresses a TCP listener on `port` is bound to (from `ss`)."""
    shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in shown.splitlines()}


# A stage's main() run as its command runs it, and the one error line it prints


def run_main(prog: str, main, argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        run_cli(prog, main, argv)
    except SystemExit as exit_:
        return int(exit_.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def one_error(stderr: str, prog: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


# Three models' toy scores, and the sizes and settings a verdict needs

KINDS = {"mlp": "neural", "logreg": "classic", "forest": "classic", "tree": "classic", "wide": "neural"}


SIZES = {"kinds": KINDS, "n_train": 30, "n_test": 10, "rope": 0.01}


DECIDE = {"probability": 0.95, "alpha": 0.05}


def results():
    return [
        ModelResult("mlp", {"accuracy": [0.9, 0.8, 0.9, 0.8]}, {"accuracy": 0.85}),
        ModelResult("logreg", {"accuracy": [0.7, 0.7, 0.8, 0.6]}, {"accuracy": 0.75}),
        ModelResult("forest", {"accuracy": [0.8, 0.6, 0.9, 0.8]}, {"accuracy": 0.70}),
    ]


# A RealMLP small enough for a test

TINY_REALMLP = {"hidden_layers": [8, 8], "embedding_frequencies": 4, "epochs": 2, "batch_size": 16}


# Processes


def running(pid: int) -> bool:
    """Whether `pid` runs: an exited process its new parent has not reaped yet (a zombie) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# A small CSV the stages accept

CSV = "age,fare,port,survived\n22,7.25,S,0\n38,71.3,C,1\n26,7.9,S,1\n35,53.1,S,1\n35,8.05,S,0\n54,51.9,S,0\n"


GOOD = "\n".join(CSV.splitlines() + [f"{20 + i},{10 + i}.5,{'SCQ'[i % 3]},{i % 2}" for i in range(40)]) + "\n"


# Prepared data with given folds


def prepared_with(
    folds: np.ndarray, division: Division, *, n_folds: int, repeats: int = 1, split: Split | None = None
) -> Prepared:
    rows = folds.shape[1]
    schema = Schema("t", "inline", "classification", "y", ("a", "b"), (), (), rows, 1, n_folds, repeats, split)
    zeros = np.zeros((rows, 0), dtype=np.float32)
    y = np.zeros(rows, dtype=np.int64)
    return Prepared(zeros, y, zeros[:1], y[:1], folds, schema, division)


# A local Dask cluster, started by make cluster's script


@contextmanager
def local_cluster(env: dict[str, str], workers: int = 2, log: Any = subprocess.DEVNULL) -> Iterator[str]:
    """`make cluster`'s script on free ports: a scheduler and `workers` single-threaded workers on 127.0.0.1; its
    dask:// address once every worker has joined (benchmarks/bench.py's cluster part starts it too)."""
    from distributed import Client

    port = free_port()
    env = env | {"QUEST_CLUSTER_PORT": str(port), "QUEST_CLUSTER_DASHBOARD": str(free_port()),
                 "QUEST_CLUSTER_WORKERS": str(workers)}  # fmt: skip
    script = subprocess.Popen([str(REPO / "scripts" / "cluster.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield f"dask://127.0.0.1:{port}"
    finally:
        stop_group(script)
