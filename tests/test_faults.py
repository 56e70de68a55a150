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
