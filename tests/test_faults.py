"""Faults injected into real runs: what is left behind must be either the earlier result or nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import repo_params

pytestmark = pytest.mark.e2e

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

    env = _prepared(tmp_path, NEVER_ENDING)
    training = _train_until(tmp_path, env, "networks epoch")  # the CV networks train: the run is open by then
    try:
        training.send_signal(signal.SIGTERM)
        rest = training.communicate(timeout=120)[1]
    finally:
        training.kill()
    printed = "".join(training.seen) + rest
    assert training.returncode == 128 + signal.SIGTERM, printed
    assert "quest train: terminated while training the MLP; nothing half-written was kept" in printed
    assert "Traceback" not in printed
    assert list((tmp_path / "models").glob("*")) == []  # no model, and no staging file beside where it would go
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    assert [(r.info.run_name, r.info.status) for r in runs] == [("mlp", "KILLED")]


def test_an_mlflow_server_that_does_not_answer_fails_the_stage_at_once_in_one_line(tmp_path: Path):
    import socket

    from tests.support import assert_user_error, quest

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
    from tests.support import assert_user_error, quest

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**NEVER_ENDING)))
    assert quest("prepare", "--params", "params.yaml", "--out", "processed", cwd=tmp_path).returncode == 0
    (tmp_path / "not-a-directory").write_text("a file where the store's directory should be")
    uri = f"sqlite:///{tmp_path / 'not-a-directory' / 'mlflow.db'}"
    done = quest("train", "--params", "params.yaml", "--data", "processed", cwd=tmp_path,
                 env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    assert_user_error(done, "quest train: error: ", f"MLflow store {uri} cannot be opened: ")
    assert not (tmp_path / "models").exists()


# A real training run long enough (the fit engine, a few seconds) to fault its store while it trains.
TRAINING = {
    "prepare": {"folds": 2, "repeats": 1},
    "train": {
        "hidden_layers": [4],
        "engine": "fit",
        "epochs": 100,
        "early_stopping": {"patience": 0, "validation_fraction": 0.2},
    },
}
OUTPUTS = ("models/mlp.keras", "models/config.json", "models/history.csv", "models/environment.json")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose earlier train stage finished (seed 1), with its SQLite store; tests copy it."""
    from tests.support import quest

    root = tmp_path_factory.mktemp("trained")
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**TRAINING, seed=1)))
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    for stage in (
        ["prepare", "--out", "processed"],
        ["train", "--data", "processed"],
        ["evaluate", "--data", "processed"],
    ):
        done = quest(stage[0], "--params", "params.yaml", *stage[1:], cwd=root, env=env)
        assert done.returncode == 0, done.stderr
    return root


def _retrain(trained: Path, tmp_path: Path, store: Path, env: dict[str, str]) -> tuple[Path, subprocess.Popen]:
    """A copy of `trained` retraining with another seed against `store`, stopped at its final fit's first
    progress line (the run is open, CV is done, the model is not saved yet)."""
    project = tmp_path / "project"
    shutil.copytree(trained, project, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts"))
    (project / "params.yaml").write_text(yaml.safe_dump(repo_params(**TRAINING, seed=2)))
    env = _without_mlflow_or_dvc() | env | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
    return project, _train_until(project, env, "train: final epoch")


def _without_mlflow_or_dvc() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "DVC_"))}


def _prepared(root: Path, params: dict) -> dict[str, str]:
    """`quest prepare` in `root` with `params`; the environment to go on with, its store a SQLite file there."""
    (root / "params.yaml").write_text(yaml.safe_dump(repo_params(**params)))
    env = _without_mlflow_or_dvc() | {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    command = [sys.executable, "-m", "quest.commands.cli", "prepare", "--params", "params.yaml", "--out", "processed"]
    prepared = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    return env


def _train_until(root: Path, env: dict[str, str], marker: str) -> subprocess.Popen:
    """`quest train` in `root`, still running once its stderr shows `marker`; what it printed so far is in
    `.seen`. A run that ends first fails the test with its output."""
    command = [sys.executable, "-m", "quest.commands.cli", "train", "--params", "params.yaml", "--data", "processed"]
    training = subprocess.Popen(command, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        seen.append(training.stderr.readline())
        if marker in seen[-1] or not seen[-1]:
            break
    if marker not in seen[-1]:
        training.kill()
        raise AssertionError("".join(seen))
    training.seen = seen
    return training


def _md5s(root: Path) -> dict[str, str]:
    return {name: hashlib.md5((root / name).read_bytes()).hexdigest() for name in OUTPUTS}


def _assert_failed_keeping_the_model(project: Path, trained: Path, printed: str, returncode: int, reason: str):
    errors = [line for line in printed.splitlines() if line.startswith("quest train: error: ")]
    assert returncode == 75 and "Traceback" not in printed, printed
    assert len(errors) == 1 and reason in errors[0] and "the earlier outputs are untouched" in errors[0], printed
    assert _md5s(project) == _md5s(trained)  # the earlier outputs are whole
    kept = sorted((project / ".quest" / "unlogged").glob("train-*"))
    assert len(kept) == 1 and f"the trained model is kept in {kept[0].relative_to(project)}" in errors[0]
    assert hashlib.md5((kept[0] / "mlp.keras").read_bytes()).hexdigest() != _md5s(trained)["models/mlp.keras"]
    assert sorted(p.name for p in kept[0].iterdir()) == sorted(Path(name).name for name in [*OUTPUTS, "cv_mlp.json"])
    assert not list((project / "models").glob(".train.*"))  # no staging left where DVC looks
    return kept[0]


def test_a_store_locked_for_a_while_is_waited_for_and_the_stage_finishes(trained: Path, tmp_path: Path):
    import mlflow

    store = tmp_path / "mlflow.db"
    shutil.copy(trained / "mlflow.db", store)
    project, training = _retrain(trained, tmp_path, store, {})
    holder = sqlite3.connect(store, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # as a `sqlite3` shell left in a transaction would
        time.sleep(8)  # longer than the rest of training: the stage's writes wait for the store
        assert training.poll() is None, training.stderr.read()
        holder.execute("COMMIT")
        rest = training.communicate(timeout=300)[1]
    finally:
        holder.close()
        training.kill()
    assert training.returncode == 0, "".join(training.seen) + rest
    assert _md5s(project) != _md5s(trained)  # the new model took its place
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]


def test_a_store_locked_for_too_long_fails_in_one_line_and_keeps_the_trained_model(trained: Path, tmp_path: Path):
    store = tmp_path / "mlflow.db"
    shutil.copy(trained / "mlflow.db", store)
    project, training = _retrain(trained, tmp_path, store, {"QUEST_SQLITE_BUSY_SECONDS": "1"})
    holder = sqlite3.connect(store, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        rest = training.communicate(timeout=300)[1]
    finally:
        holder.close()
        training.kill()
    printed = "".join(training.seen) + rest
    kept = _assert_failed_keeping_the_model(project, trained, printed, training.returncode, "database is locked")
    from quest.learners.networks import load_mlp
    from quest.learners.registry import keras_classes

    model = load_mlp(kept / "mlp.keras", keras_classes())  # as evaluate loads it: the kept model is whole
    assert model.count_params() > 0


def test_a_full_disk_under_the_store_fails_in_one_line_and_keeps_the_trained_model(trained: Path, tmp_path: Path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        store = small / "mlflow.db"
        shutil.copy(trained / "mlflow.db", store)
        project, training = _retrain(trained, tmp_path, store, {})
        with (small / "filler").open("wb") as filler:  # the store's disk fills up while the model trains
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
            rest = training.communicate(timeout=300)[1]
        printed = "".join(training.seen) + rest
        _assert_failed_keeping_the_model(project, trained, printed, training.returncode, "full")
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_after_a_sigkill_mid_training_the_next_run_ends_the_orphan_killed_and_starts_clean(tmp_path: Path):
    import mlflow

    env = _prepared(tmp_path, NEVER_ENDING)
    training = _train_until(tmp_path, env, "networks epoch")
    training.kill()  # SIGKILL: no cleanup of its own runs
    training.wait(timeout=60)
    assert len(list((tmp_path / "models").glob(".train.*.tmp"))) == 1  # what it could not clean up
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(repo_params(**TRAINING)))
    rerun = subprocess.run([sys.executable, "-m", "quest.commands.cli", "train", "--params", "params.yaml", "--data",
                            "processed"], cwd=tmp_path, env=env, capture_output=True, text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert f"was left RUNNING by process {training.pid}, which is gone; it is now KILLED" in rerun.stderr
    assert not list((tmp_path / "models").glob(".train.*"))  # the orphan's staging is gone too
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list", order_by=["attributes.start_time ASC"])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("mlp", "KILLED"), ("mlp", "FINISHED")]


def test_evaluate_against_a_locked_store_fails_in_one_line_and_leaves_the_reports_as_they_were(
    trained: Path, tmp_path: Path
):
    from tests.support import quest

    project = tmp_path / "project"
    shutil.copytree(trained, project)
    before = {p.relative_to(project): p.read_bytes() for p in (project / "reports").rglob("*") if p.is_file()}
    assert Path("reports/metrics.json") in before and Path("reports/eval/confusion_matrix.png") in before
    for path in before:  # an earlier evaluation's outputs, told apart from what a new one would write
        (project / path).write_bytes(before[path] + b"\n")
    before = {path: (project / path).read_bytes() for path in before}
    holder = sqlite3.connect(project / "mlflow.db", timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "QUEST_SQLITE_BUSY_SECONDS": "1"}
        done = quest("evaluate", "--params", "params.yaml", "--data", "processed", cwd=project, env=env)
    finally:
        holder.close()
    # evaluate opens the store after it has scored the model and staged its outputs, so the lock stops it there
    errors = [line for line in done.stderr.splitlines() if line.startswith("quest evaluate: error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "cannot be opened: (sqlite3.OperationalError) database is locked" in errors[0]
    after = {p.relative_to(project): p.read_bytes() for p in (project / "reports").rglob("*") if p.is_file()}
    assert after == before  # not one byte of the earlier evaluation changed, and nothing staged is left
