"""MLflow at the edge: where runs go, what every run is tagged with, and finding runs again.

Nothing here runs at import; stages call `start` after their computation is set up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from quest import __version__
from quest.errors import QuestError, Terminated, first_line
from quest.files import dvc_md5, file_md5
from quest.tracking.provenance import check_strict

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# Tag keys. MLflow's own `mlflow.source.git.commit` makes the UI show the commit next to the run.
TAG_MODEL = "quest.model"
TAG_GROUP = "quest.comparison"
TAG_MODEL_MD5 = "quest.model_md5"
TAG_COMPARISON_MD5 = "quest.comparison_md5"  # the comparison table a parent run wrote
TAG_GIT_COMMIT = "mlflow.source.git.commit"
TAG_PARENT = "mlflow.parentRunId"
TAG_PROCESS = "quest.process"  # host:pid of the process a run was logged from, to find runs it left behind


def _store_root(root: Path) -> Path:
    return Path(os.environ.get("DVC_ROOT") or root).resolve()


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the SQLite store at the repo root as an absolute URI.

    DVC exports DVC_ROOT (the parent repo, also for queued experiments that run in a temporary copy), so runs
    land in the main store wherever the stage runs.
    """
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{_store_root(root) / DB_NAME}"


@contextmanager
def killed_on_interrupt() -> Iterator[None]:
    """Inside an active run: Ctrl-C or SIGTERM ends it KILLED (MLflow would say FAILED), then goes on up."""
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        import mlflow

        mlflow.end_run(status="KILLED")
        raise


def start(experiment: str, root: Path) -> None:
    """Point MLflow at the store and experiment; quiet its console chatter."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # It logs each database error with a traceback, then raises it; quest reports it once, in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    check_strict(git_state(root)[1])
    uri = tracking_uri(root)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    if uri.startswith("sqlite:"):
        busy_seconds()  # a bad QUEST_SQLITE_BUSY_SECONDS fails here, in one line, not inside a connection
        wait_when_busy()
    try:
        _open_store(mlflow, uri, experiment, root)
    except Exception as error:  # whatever the store raises (OSError, SQLAlchemy, MLflow): one line, no work lost
        raise QuestError(f"MLflow store {shown_uri(uri)} cannot be opened: {first_line(error)}") from None
    end_orphans(experiment)


def _open_store(mlflow: Any, uri: str, experiment: str, root: Path) -> None:
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:"):
        mlflow.set_experiment(experiment)
        return
    # Parallel workers (`dvc queue start -j N`) must not both create the schema of a new SQLite store, nor
    # both create the experiment: the first opening of the store is serialised by a lock file beside it.
    with _exclusive(_store_root(root) / f"{DB_NAME}.lock"):
        if mlflow.get_experiment_by_name(experiment) is None:
            # MLflow would put artifacts under ./mlruns of the current directory, which for a queued DVC
            # experiment is a temporary copy; keep them beside the store instead.
            mlflow.create_experiment(experiment, artifact_location=(_store_root(root) / ARTIFACTS_DIR).as_uri())
        mlflow.set_experiment(experiment)


def busy_seconds() -> float:
    """How long a write waits for a SQLite store another process holds: QUEST_SQLITE_BUSY_SECONDS, or 60."""
    text = os.environ.get("QUEST_SQLITE_BUSY_SECONDS", "60")
    try:
        seconds = float(text)
    except ValueError:
        raise QuestError(f"QUEST_SQLITE_BUSY_SECONDS must be a number of seconds (got {text!r})") from None
    if not 0 <= seconds <= 86400:
        raise QuestError(f"QUEST_SQLITE_BUSY_SECONDS must be from 0 to 86400 (got {text!r})")
    return seconds


def wait_when_busy() -> None:
    """Make every SQLite connection SQLAlchemy opens from now on wait up to busy_seconds() for a lock (another
    worker's burst of writes, a `sqlite3` shell left in a transaction) before failing with "database is locked"."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _set_busy_timeout):
        event.listen(Engine, "connect", _set_busy_timeout)


def _set_busy_timeout(connection: Any, record: Any) -> None:
    import sqlite3

    if isinstance(connection, sqlite3.Connection):
        connection.execute(f"PRAGMA busy_timeout = {int(busy_seconds() * 1000)}")


def this_process() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_orphans(experiment: str) -> list[str]:
    """End KILLED the runs of `experiment` still RUNNING whose process, on this host, is gone: killed with
    SIGKILL, or out of memory, it could not end them itself. Runs of live processes and of other hosts are
    left alone. Returns the ended runs' ids."""
    import mlflow
    from mlflow.tracking import MlflowClient

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    client, host = MlflowClient(), this_process().rsplit(":", 1)[0]
    ended = []
    running = client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500)
    for run in running:
        where, _, pid = run.data.tags.get(TAG_PROCESS, "").rpartition(":")
        if where == host and pid.isdigit() and not alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
            print(
                f"notice: MLflow run {run.info.run_name} ({run.info.run_id}) was left RUNNING by process {pid}, "
                f"which is gone; it is now KILLED",
                file=sys.stderr,
            )
    return ended


def check_server(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer fails the stage now, in one line, before any work is done
    (MLflow's own client would retry for minutes and then raise a traceback)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # it answered: an auth or routing matter, which MLflow reports itself
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise QuestError(
            f"MLFLOW_TRACKING_URI {shown_uri(uri)}: no MLflow server answers there ({reason}); start it "
            "(make server) or unset MLFLOW_TRACKING_URI to log to mlflow.db"
        ) from None


def shown_uri(uri: str) -> str:
    """`uri` with any password replaced, fit for a message or a log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """For a SQLite store, the lock that serialises parallel workers' bursts of writes; no-op for a server."""
    if not tracking_uri(root).startswith("sqlite:"):
        yield
        return
    with _exclusive(_store_root(root) / f"{DB_NAME}.lock"):
        yield


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock (POSIX advisory lock on `lock_path`), released when the block ends."""
    import fcntl

    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dvc_managed_paths(root: Path) -> list[str]:
    """dvc.lock and every output dvc.yaml declares: DVC rewrites them during `dvc repro`."""
    import yaml

    try:
        stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")).get("stages", {})
    except (OSError, AttributeError, yaml.YAMLError):
        return ["dvc.lock"]
    managed = ["dvc.lock"]
    for stage in stages.values():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                managed.append(next(iter(entry)) if isinstance(entry, dict) else str(entry))
    return managed


def git_state(root: Path) -> tuple[str, list[str]]:
    """(commit, uncommitted paths) of the repo at `root`, ignoring what DVC manages; ("unknown", []) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    managed = [path.rstrip("/") for path in dvc_managed_paths(root)]
    changed = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()]
    dirty = [path for path in changed if not any(path == m or path.startswith(m + "/") for m in managed)]
    return commit, dirty


def provenance_tags(
    root: Path, data_dir: Path, device: str | None = None, backend: str | None = None
) -> dict[str, str]:
    """Tags every quest run carries: code, data and where it ran."""
    commit, dirty = git_state(root)
    tags = {
        TAG_GIT_COMMIT: commit,
        "quest.git_dirty": str(bool(dirty)).lower(),
        "quest.data_dvc_md5": dvc_md5(data_dir) if data_dir.exists() else "missing",
        "quest.version": __version__,
        "quest.python": sys.version.split()[0],
        TAG_PROCESS: this_process(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["quest.dvc_exp"] = os.environ["DVC_EXP_NAME"]
    if device:
        tags["quest.device"] = device
    if backend:
        tags["quest.backend"] = backend
    return tags


def environment(root: Path, *, seed: int, backend: str, device: str) -> dict:
    """The environment fingerprint of a run started now in `root`."""
    from quest.tracking.provenance import fingerprint

    commit, dirty = git_state(root)
    return fingerprint(root, commit=commit, dirty=bool(dirty), seed=seed, backend=backend, device=device)


def log_provenance(fingerprint: dict, params: object) -> None:
    """The environment fingerprint and the whole resolved params.yaml, as artifacts of the active run."""
    import dataclasses

    import mlflow

    mlflow.log_dict(fingerprint, "environment.json")
    mlflow.log_dict(dataclasses.asdict(params), "params.json")


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested params as MLflow's flat `a.b.c` keys; lists as their YAML-ish text."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    if isinstance(value, list | tuple):
        return {prefix: "[" + ", ".join(map(str, value)) + "]"}
    return {prefix: value}


def find_run(experiment: str, tags: Mapping[str, str]) -> str | None:
    """The newest run of `experiment` carrying all `tags`, or None."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return None
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = mlflow.search_runs(
        experiment_ids=[found.experiment_id],
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


def model_params(model: str, estimator: str, *, task: str, dataset: str, folds: int, seed: int) -> dict[str, object]:
    """The params every model run carries, so the UI's compare view lines the MLP up with each baseline."""
    return {"model": model, "estimator": estimator, "task": task, "dataset": dataset, "folds": folds, "seed": seed}


def log_training_data(x: np.ndarray, y: np.ndarray, *, name: str, data_dir: Path) -> None:
    """The training split as the active run's input dataset (MLflow computes its digest)."""
    import mlflow

    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types; either is right
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(x, targets=y, name=name, source=str(data_dir.resolve()))
    mlflow.log_input(dataset, context="training")


def mlp_run(experiment: str, model_path: Path, *, root: Path, data_dir: Path) -> str:
    """The run that trained `model_path` (found by the file's hash), or a new one if that run is gone,
    e.g. when the model came from `dvc pull` and was trained on another machine."""
    from mlflow.tracking import MlflowClient

    identity = {TAG_MODEL: "mlp", TAG_MODEL_MD5: file_md5(model_path)}
    found = find_run(experiment, identity)
    if found:
        return found
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    created = client.create_run(experiment_id, run_name="mlp", tags={**identity, **provenance_tags(root, data_dir)})
    client.set_terminated(created.info.run_id)
    return created.info.run_id
