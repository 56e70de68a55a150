"""The MLflow store: where runs go, opening it (and waiting when it is busy), and runs a dead process left.

Nothing here runs at import; stages call `start` after their computation is set up.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from quest.core import interrupts
from quest.core.compat import MLFLOW_DB_ERROR_LOGGER
from quest.core.errors import QuestError, first_line, shown_uri
from quest.core.processes import alive, this_host, this_process
from quest.tracking.provenance import Provenance, check_strict
from quest.tracking.tags import TAG_PROCESS

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


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


def start(experiment: str, provenance: Provenance) -> None:
    """Point MLflow at the store and experiment of the repo `provenance` names; quiet its console chatter.

    Refuses uncommitted code in strict mode, fails in one line when the store cannot be opened, and ends the
    runs that dead processes of this host left RUNNING.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger(MLFLOW_DB_ERROR_LOGGER).setLevel(logging.CRITICAL)
    check_strict(provenance.dirty)
    root = provenance.root
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
    interrupts.on_stop(functools.partial(end_own_runs, experiment))


def end_own_runs(experiment: str) -> list[str]:
    """This process's runs that are not FINISHED (open, or ended FAILED by the interruption that stops it) end
    KILLED; their ids. Called once when a signal stops the process (quest.core.interrupts)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    client = MlflowClient()
    mine = client.search_runs([found.experiment_id], filter_string=f"tags.`{TAG_PROCESS}` = '{this_process()}'")
    ended = [run.info.run_id for run in mine if run.info.status in ("RUNNING", "FAILED", "SCHEDULED")]
    for run_id in ended:
        client.set_terminated(run_id, status="KILLED")
    return ended


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


def end_orphans(experiment: str) -> list[str]:
    """End KILLED the runs of `experiment` still RUNNING whose process, on this host, is gone: killed with
    SIGKILL, or out of memory, it could not end them itself. Runs of live processes and of other hosts are
    left alone. Returns the ended runs' ids."""
    import mlflow
    from mlflow.tracking import MlflowClient

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    client, host = MlflowClient(), this_host()
    ended = []
    running = client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500)
    for run in running:
        if _dead_process(run, host) is None:
            continue
        # The search may predate the run's end (a process ends its runs before it exits) or its reopening by a
        # live process (evaluate's, which names itself in the tag before the run turns RUNNING): the run as
        # stored now is the last word, its status and its process together.
        run = client.get_run(run.info.run_id)
        pid = _dead_process(run, host)
        if run.info.status != "RUNNING" or pid is None:
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        ended.append(run.info.run_id)
        print(
            f"notice: MLflow run {run.info.run_name} ({run.info.run_id}) was left RUNNING by process {pid}, "
            "which is gone; it is now KILLED",
            file=sys.stderr,
        )
    return ended


def _dead_process(run: Any, host: str) -> str | None:
    """The pid `run` names when it was a process of this host that is gone; None otherwise."""
    where, _, pid = run.data.tags.get(TAG_PROCESS, "").rpartition(":")
    return pid if where == host and pid.isdigit() and not alive(int(pid)) else None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer, does not trust us or that we cannot trust fails the stage now, in
    one line naming what to set, before any work is done (MLflow's own client would retry for minutes and then
    raise a traceback). The credentials and certificate are MLflow's own settings, read as MLflow reads them."""
    import requests
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(uri)
    cert = creds.server_cert_path
    if cert and not os.access(cert, os.R_OK):
        raise QuestError(f"MLFLOW_TRACKING_SERVER_CERT_PATH {cert}: cannot read the server's certificate there")
    shown = shown_uri(uri)
    verify: bool | str = False if creds.ignore_tls_verification else cert or True
    auth = (creds.username, creds.password or "") if creds.username else None
    try:
        answer = requests.get(
            f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1}, auth=auth, verify=verify, timeout=timeout,
        )  # fmt: skip
    except requests.exceptions.SSLError as error:
        why = _innermost_reason(error)
        raise QuestError(
            f"MLFLOW_TRACKING_URI {shown}: the server's certificate is not trusted here ({why}); set "
            "MLFLOW_TRACKING_SERVER_CERT_PATH to its certificate (make server AUTH=1 prints the path)"
        ) from None
    except (requests.exceptions.RequestException, OSError) as error:
        if uri.startswith("http://") and _speaks_tls(uri, timeout):
            raise QuestError(
                f"MLFLOW_TRACKING_URI {shown}: the server there speaks TLS; use https:// instead of http://"
            ) from None
        raise QuestError(
            f"MLFLOW_TRACKING_URI {shown}: no MLflow server answers there ({_innermost_reason(error)}); start it "
            "(make server) or unset MLFLOW_TRACKING_URI to log to mlflow.db"
        ) from None
    if answer.status_code == 401:
        if auth is None:
            raise QuestError(
                f"MLFLOW_TRACKING_URI {shown} asks who you are (401): set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (docs/team.md)"
            )
        raise QuestError(
            f"MLFLOW_TRACKING_URI {shown} refused user {creds.username}'s password (401): check "
            "MLFLOW_TRACKING_PASSWORD"
        )


def _innermost_reason(error: BaseException) -> str:
    """Why a request failed, in one line: requests wraps urllib3's error, which wraps the socket's or ssl's."""
    cause = error
    while (inner := _wrapped(cause)) is not None and inner is not cause:
        cause = inner
    return getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or first_line(cause)


def _wrapped(error: BaseException) -> BaseException | None:
    first = error.args[0] if error.args else None
    return first if isinstance(first, BaseException) else error.__context__


def _speaks_tls(uri: str, timeout: float) -> bool:
    """Whether the server at an http:// address answers a TLS handshake (it wants https://)."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only asking whether it speaks TLS at all
    try:
        address = (parts.hostname, parts.port or 80)
        with socket.create_connection(address, timeout=timeout) as raw, context.wrap_socket(raw):
            return True
    except (OSError, ssl.SSLError):
        return False


@contextmanager
def write_lock(root: Path) -> Iterator[None]:
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
