"""Safe defaults: secrets in the environment never reach MLflow or the files a run writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import repo_params

SECRET = "s3cr3t-6f1e9a-do-not-log"
TINY = {
    "prepare": {"folds": 2, "repeats": 1},
    "train": {"hidden_layers": [4], "epochs": 2, "early_stopping": {"patience": 0, "validation_fraction": 0.2}},
}


@pytest.mark.e2e
def test_secret_looking_environment_variables_are_recorded_nowhere(tmp_path: Path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**TINY)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        AWS_SECRET_ACCESS_KEY=SECRET,
        QUEST_API_TOKEN=SECRET,
        DATABASE_PASSWORD=SECRET,
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    for stage in (["prepare", "--out", "processed"], ["train", "--data", "processed"]):
        done = subprocess.run(
            [sys.executable, "-m", "quest.commands.cli", stage[0], "--params", "params.yaml", *stage[1:]],
            cwd=tmp_path, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "mlflow.db" for path in written) and any(path.suffix == ".keras" for path in written)
    leaked = [path for path in written if SECRET.encode() in path.read_bytes()]
    assert leaked == []  # the MLflow store, its artifacts, the model, its config and the fingerprint


def test_quest_loads_nothing_unsafely():
    """No unpickling, no unsafe YAML, no Keras load outside safe mode: anywhere in quest's code."""
    import re

    from tests.conftest import REPO

    unsafe = re.compile(
        r"pickle\.loads?\(|joblib\.load\(|allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|safe_mode\s*=\s*False"
        r"|\beval\(|\bexec\("
    )
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((REPO / "src" / "quest").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if unsafe.search(line)
    ]
    assert found == []
    evaluate = (REPO / "src" / "quest" / "learners" / "networks.py").read_text().splitlines()
    keras_loads = [line for line in evaluate if "keras.saving.load_model(" in line]
    assert keras_loads and all("safe_mode=True" in line for line in keras_loads)
