"""store.end_orphans against a real SQLite MLflow store: it ends KILLED the runs a dead process of this host
left RUNNING, and never a run a live process has open, a reopened one included (evaluate adds the test metrics
to the run train created, whose process is gone by then, while another queue worker's stage may be starting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from quest.core.processes import this_host, this_process
from quest.tracking import runs, store
from quest.tracking.tags import TAG_PROCESS

EXPERIMENT = "orphans"


def dead_process() -> str:
    """host:pid of a process of this host that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{this_host()}:{int(done.stdout)}"


@pytest.fixture
def client(tmp_path: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = mlflow.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    yield mlflow.MlflowClient(), experiment_id
    mlflow.end_run()


def test_a_run_a_dead_process_left_running_is_ended_killed_and_a_live_ones_is_not(client, capsys):
    mlflow_client, experiment_id = client
    left = mlflow_client.create_run(experiment_id, run_name="left", tags={TAG_PROCESS: dead_process()})
    live = mlflow_client.create_run(experiment_id, run_name="live", tags={TAG_PROCESS: this_process()})
    other_host = mlflow_client.create_run(experiment_id, run_name="elsewhere", tags={TAG_PROCESS: "elsewhere:1"})

    assert store.end_orphans(EXPERIMENT) == [left.info.run_id]
    status = {run_id: mlflow_client.get_run(run_id).info.status for run_id in (left.info.run_id, live.info.run_id)}
    assert status == {left.info.run_id: "KILLED", live.info.run_id: "RUNNING"}
    assert mlflow_client.get_run(other_host.info.run_id).info.status == "RUNNING"
    assert "was left RUNNING by process" in capsys.readouterr().err


def test_a_finished_run_reopened_by_a_live_process_is_not_taken_for_an_orphan(client):
    import mlflow

    mlflow_client, experiment_id = client
    trained = mlflow_client.create_run(experiment_id, run_name="mlp", tags={TAG_PROCESS: dead_process()})
    mlflow_client.set_terminated(trained.info.run_id)  # train ended it, then its process exited

    with runs.reopened(trained.info.run_id):  # evaluate's: RUNNING again, in this live process
        assert mlflow_client.get_run(trained.info.run_id).info.status == "RUNNING"
        assert store.end_orphans(EXPERIMENT) == []  # another worker's stage, starting meanwhile
        mlflow.log_metric("test_accuracy", 0.5)

    reopened = mlflow_client.get_run(trained.info.run_id)
    assert reopened.info.status == "FINISHED"
    assert reopened.data.tags[TAG_PROCESS] == this_process()
    assert reopened.data.metrics["test_accuracy"] == 0.5
