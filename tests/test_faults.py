"""Faults injected into real runs: what is left behind must be either the earlier result or nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import repo_params

NEVER_ENDING = {
    "prepare": {"folds": 2, "repeats": 1},
    "train": {
        "hidden_layers": [4],
        "epochs": 10_000_000,
        "early_stopping": {"patience": 0, "validation_fraction": 0.2},
    },
}


def test_sigterm_mid_training_ends_the_mlflow_run_killed_and_keeps_no_model(tmp_path: Path):
    import mlflow

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**NEVER_ENDING)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "quest.cli"]
    prepared = subprocess.run([*command, "prepare", "--params", "params.yaml", "--out", "processed"],
                              cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    training = subprocess.Popen([*command, "train", "--params", "params.yaml", "--data", "processed"],
                                cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # until the CV networks are training: the run is open by then
            line = training.stderr.readline()
            seen.append(line)
            if "networks epoch" in line or not line:
                break
        assert "networks epoch" in seen[-1], "".join(seen)
        training.send_signal(signal.SIGTERM)
        rest = training.communicate(timeout=120)[1]
    finally:
        training.kill()
    printed = "".join(seen) + rest
    assert training.returncode == 128 + signal.SIGTERM, printed
    assert "quest train: terminated; nothing half-written was kept" in printed and "Traceback" not in printed
    assert list((tmp_path / "models").glob("*")) == []  # no model, and no staging file beside where it would go
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    assert [(r.info.run_name, r.info.status) for r in runs] == [("mlp", "KILLED")]


def test_an_mlflow_server_that_does_not_answer_fails_the_stage_at_once_in_one_line(tmp_path: Path):
    import socket

    from tests.test_cli import assert_user_error, quest

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**NEVER_ENDING)))
    assert quest("prepare", "--params", "params.yaml", "--out", "processed", cwd=tmp_path).returncode == 0
    uri = f"http://quest:hunter2@127.0.0.1:{port}"
    started = time.monotonic()
    done = quest("train", "--params", "params.yaml", "--data", "processed", cwd=tmp_path,
                 env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    assert_user_error(done, "quest train: error: ", f"MLFLOW_TRACKING_URI http://quest:***@127.0.0.1:{port}: no MLflow")
    assert "hunter2" not in done.stderr  # the password is not printed
    assert time.monotonic() - started < 60  # no minutes of retries
    assert not (tmp_path / "models").exists()  # it failed before training, not after


def test_an_mlflow_store_that_cannot_be_opened_fails_the_stage_in_one_line(tmp_path: Path):
    from tests.test_cli import assert_user_error, quest

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**NEVER_ENDING)))
    assert quest("prepare", "--params", "params.yaml", "--out", "processed", cwd=tmp_path).returncode == 0
    (tmp_path / "not-a-directory").write_text("a file where the store's directory should be")
    uri = f"sqlite:///{tmp_path / 'not-a-directory' / 'mlflow.db'}"
    done = quest("train", "--params", "params.yaml", "--data", "processed", cwd=tmp_path,
                 env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    assert_user_error(done, "quest train: error: ", f"MLflow store {uri} cannot be opened: ")
    assert not (tmp_path / "models").exists()
