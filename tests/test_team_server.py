"""Team mode: `make server`'s script starts a real PostgreSQL and `mlflow server`; the whole pipeline logs
to it with nothing changed but MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, repo_params
from tests.test_pipeline import MODELS, TINY, copy_repo, environment, run_queue

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def server():
    # Not under pytest's tmp_path: its parent is private to root, and PostgreSQL runs as `postgres`.
    state = Path(tempfile.mkdtemp(prefix="quest-server-", dir="/tmp"))
    state.chmod(0o755)  # the `postgres` user must reach the cluster inside
    port, pg_port = free_port(), free_port()
    env = {**os.environ, "QUEST_SERVER_DIR": str(state), "QUEST_SERVER_PORT": str(port), "QUEST_PG_PORT": str(pg_port)}
    log = (state / "server.out").open("w")
    process = subprocess.Popen(["scripts/server.sh"], cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((state / "server.out").read_text()) from None
                time.sleep(0.5)
        yield {"uri": f"http://127.0.0.1:{port}", "pg_port": pg_port, "state": state, "process": process}
    finally:
        if process.poll() is None:  # mlflow and the script; the script's trap stops PostgreSQL
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def test_the_pipeline_logs_every_run_to_the_postgresql_backed_server(server, tmp_path: Path):
    import mlflow

    port = int(server["uri"].rsplit(":", 1)[1])
    assert bound_addresses(server["pg_port"]) == bound_addresses(port) == {"127.0.0.1"}  # loopback only
    project = copy_repo(tmp_path / "quest", repo_params(**TINY))
    env = {**environment(project), "MLFLOW_TRACKING_URI": server["uri"]}
    done = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (project / "mlflow.db").exists()  # nothing went to the default SQLite store

    mlflow.set_tracking_uri(server["uri"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    by_name = {run.info.run_name: run for run in runs}
    assert set(MODELS) <= set(by_name) and all(run.info.status == "FINISHED" for run in runs)
    mlp = by_name["mlp"]
    assert {"test_accuracy", "cv_mean"} <= set(mlp.data.metrics)
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(mlp.info.run_id)}
    assert {"config.json", "plots"} <= artifacts  # served by the server, stored in its artifact directory
    assert any((server["state"] / "artifacts").rglob("config.json"))

    stored = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p", str(server["pg_port"]), "-U", "quest",
         "-d", "mlflow", "-tAc", "SELECT count(*) FROM runs WHERE status = 'FINISHED'"]
        if os.geteuid() == 0 else
        ["psql", "-h", "127.0.0.1", "-p", str(server["pg_port"]), "-U", "quest", "-d", "mlflow", "-tAc",
         "SELECT count(*) FROM runs WHERE status = 'FINISHED'"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert int(stored.stdout.strip()) == len(runs)  # the runs live in PostgreSQL itself


def test_a_sweep_on_two_queue_workers_lands_every_trial_once_on_the_server(server, tmp_path: Path):
    import mlflow

    mlflow.set_tracking_uri(server["uri"])
    before = {r.info.run_id for r in mlflow.search_runs(experiment_names=["quest"], output_format="list")}
    project = copy_repo(tmp_path / "quest", repo_params(**TINY))
    sweep = [["-S", f"train.hidden_layers=[{units}]"] for units in (4, 8, 16)]
    names, _ = run_queue(project, sweep, {**environment(project), "MLFLOW_TRACKING_URI": server["uri"]})
    everything = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    new = [r for r in everything if r.info.run_id not in before]
    assert len(new) == len(sweep) * (len(MODELS) + 1) and all(r.info.status == "FINISHED" for r in new)
    mlps = [r for r in new if r.info.run_name == "mlp"]
    assert sorted(r.data.tags["quest.dvc_exp"] for r in mlps) == sorted(names)  # each trial once
    assert sorted(r.data.params["train.hidden_layers"] for r in mlps) == ["[16]", "[4]", "[8]"]
    assert not (project / "mlflow.db").exists()


def bound_addresses(port: int) -> set[str]:
    """The local addresses a TCP listener on `port` is bound to (from `ss`)."""
    shown = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in shown.splitlines()}


def test_stopping_the_server_stops_its_database(server):
    assert listening(server["pg_port"])
    os.killpg(server["process"].pid, signal.SIGTERM)
    server["process"].wait(timeout=60)
    assert not listening(server["pg_port"])
