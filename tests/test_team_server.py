"""Team mode: `make server`'s script starts a real PostgreSQL and `mlflow server`; the whole pipeline logs
to it with nothing changed but MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, merge, repo_params, stop_group
from tests.support import (
    LIGHT,
    TINY_LIGHT,
    bound_addresses,
    copy_repo,
    environment,
    free_port,
    listening,
    run,
    run_queue,
    wait_healthy,
)

pytestmark = pytest.mark.e2e


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
        wait_healthy(port, process, state / "server.out")
        yield {"uri": f"http://127.0.0.1:{port}", "pg_port": pg_port, "state": state, "process": process}
    finally:
        stop_group(process, seconds=60)  # mlflow and the script; the script's trap stops PostgreSQL
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def test_the_pipeline_logs_every_run_to_the_postgresql_backed_server(server, tmp_path: Path):
    import mlflow

    port = int(server["uri"].rsplit(":", 1)[1])
    assert bound_addresses(server["pg_port"]) == bound_addresses(port) == {"127.0.0.1"}  # loopback only
    project = copy_repo(tmp_path / "quest", repo_params(**TINY_LIGHT))
    env = {**environment(project), "MLFLOW_TRACKING_URI": server["uri"]}
    done = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (project / "mlflow.db").exists()  # nothing went to the default SQLite store

    mlflow.set_tracking_uri(server["uri"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    by_name = {run.info.run_name: run for run in runs}
    assert {"mlp", *LIGHT} <= set(by_name) and all(run.info.status == "FINISHED" for run in runs)
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
    project = copy_repo(tmp_path / "quest", repo_params(**TINY_LIGHT))
    sweep = [["-S", f"train.hidden_layers=[{units}]"] for units in (4, 8, 16)]
    names, _ = run_queue(project, sweep, {**environment(project), "MLFLOW_TRACKING_URI": server["uri"]})
    everything = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    new = [r for r in everything if r.info.run_id not in before]
    assert len(new) == len(sweep) * (1 + len(LIGHT) + 1) and all(r.info.status == "FINISHED" for r in new)
    mlps = [r for r in new if r.info.run_name == "mlp"]
    assert sorted(r.data.tags["quest.dvc_exp"] for r in mlps) == sorted(names)  # each trial once
    assert sorted(r.data.params["train.hidden_layers"] for r in mlps) == ["[16]", "[4]", "[8]"]
    assert not (project / "mlflow.db").exists()


def test_make_sweep_workers_share_one_study_and_survive_a_killed_worker(server, tmp_path: Path):
    """Two `quest sweep` workers share each model's Optuna study on the server's PostgreSQL, claiming the MLP's
    trials three at a time (tune.together). One is killed in the middle of a trial, after finishing others: the
    other finishes the study, every trial completes exactly once, the finished ones are kept, and `dvc repro`
    logs each trial once to MLflow. The results equal a single in-memory search's, byte for byte."""
    import mlflow
    import optuna
    from optuna.trial import TrialState

    from quest.tuning import studies

    url = f"postgresql+psycopg://quest@127.0.0.1:{server['pg_port']}/optuna"
    storage = optuna.storages.RDBStorage(url)  # one connection pool for the test's every look
    trials = 12
    # Beats every 2 s, so a worker is taken for dead after 4 s of silence: short for the test, with room for a
    # live worker's heartbeat thread to be late while make test's second process shares the two cores.
    params = repo_params(**TINY_LIGHT, tune={"trials": trials, "storage": url, "heartbeat": 2, "together": 3})
    project = copy_repo(tmp_path / "quest", params)
    env = {**environment(project), "MLFLOW_TRACKING_URI": server["uri"]}
    run(["dvc", "repro", "prepare"], project)
    log = (tmp_path / "sweep.out").open("w+")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "quest.commands.sweep", "--workers", "2"], cwd=project, env=env, stdout=log, stderr=log
    )
    try:
        victim, killed = _kill_a_worker_mid_trial(
            tmp_path / "sweep.out", storage, launcher, params["tune"]["spaces"]["mlp"]
        )
        launcher.wait(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        log.seek(0)
        printed = log.read()
        log.close()
    assert launcher.returncode == 0, printed
    assert f"worker {victim} finished (signal 9)" in printed, printed

    names = {s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("quest-")}
    assert len(names) == 2  # mlp and logreg
    for name in names:
        study = optuna.load_study(study_name=name, storage=storage)
        found = studies.slots(study, trials)  # raises when a slot has no result, or completed twice
        assert [s.slot for s in found] == list(range(trials))
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        assert len(complete) == trials and all(s.runs >= 1 for s in found)
    mlp_study = optuna.load_study(study_name=killed["study"], storage=storage)
    by_number = {t.number: t for t in mlp_study.get_trials(deepcopy=False)}
    dead = by_number[killed["number"]]
    assert dead.state == TrialState.FAIL and studies.ERROR not in dead.user_attrs  # failed by its heartbeat
    retry = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs[studies.SLOT] == dead.user_attrs[studies.SLOT]
    assert retry[0].params == dead.params  # the rerun ran the same values
    for number in killed["finished"]:  # the victim's finished trials were kept, never rerun
        kept = by_number[number]
        assert kept.state == TrialState.COMPLETE and kept.system_attrs[studies.WORKER] == killed["worker"]
        same_slot = [t for t in by_number.values() if t.user_attrs[studies.SLOT] == kept.user_attrs[studies.SLOT]]
        assert len(same_slot) == 1

    done = subprocess.run(["dvc", "repro", "tune"], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "tune: mlp" in done.stderr, done.stdout + done.stderr
    mlflow.set_tracking_uri(server["uri"])
    tuned = mlflow.search_runs(
        experiment_names=["quest"], filter_string="tags.`quest.stage` = 'tune'", output_format="list"
    )
    per_model = {}
    for found in tuned:
        if "quest.trial" in found.data.tags:
            per_model.setdefault(found.data.tags["quest.model"], []).append(int(found.data.tags["quest.trial"]))
    assert {model: sorted(numbers) for model, numbers in per_model.items()} == {
        "mlp": list(range(1, trials + 1)),
        "logreg": list(range(1, trials + 1)),
    }  # each trial landed once

    alone = copy_repo(tmp_path / "alone", merge(params, {"tune": {"storage": None}}))
    run(["dvc", "repro", "tune"], alone)  # one process, in memory, nobody killed
    for name in ("trials.csv", "budget.csv", "summary.json"):
        assert (alone / "reports/tuning" / name).read_bytes() == (project / "reports/tuning" / name).read_bytes()


def _kill_a_worker_mid_trial(printed: Path, storage, launcher: subprocess.Popen, space: dict) -> tuple[int, dict]:
    """SIGKILL a worker once it has finished an MLP trial and is training another (every value drawn);
    which worker, and the trials concerned.

    The worker is frozen (SIGSTOP) and its trials looked at again before the kill: it tells the trials it trained
    together one by one, so between one look and the kill it could complete the trial the test means to leave
    behind. Frozen, it changes nothing more once its last statement has reached the store."""
    import re

    import optuna

    from quest.tuning import studies

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and launcher.poll() is None:
        pids = dict(re.findall(r"sweep: worker (\d+) is process (\d+)", printed.read_text()))
        names = [s.study_name for s in optuna.get_all_study_summaries(storage) if "-mlp-" in s.study_name]
        if len(pids) == 2 and names:
            study = optuna.load_study(study_name=names[0], storage=storage)
            for number, pid in pids.items():
                if not _mid_trial(study, pid, space):
                    continue
                os.kill(int(pid), signal.SIGSTOP)
                time.sleep(0.5)  # a statement it sent just before is applied by the server all the same
                caught = _mid_trial(study, pid, space)
                if not caught:
                    os.kill(int(pid), signal.SIGCONT)  # it completed them between the two looks
                    continue
                os.kill(int(pid), signal.SIGKILL)
                finished, holding = caught
                return int(number), {
                    "study": names[0],
                    "number": holding[0].number,
                    "finished": finished,
                    "worker": holding[0].system_attrs[studies.WORKER],
                }
        time.sleep(0.1)
    raise AssertionError(f"no worker was caught mid-trial\n{printed.read_text()}")


def _mid_trial(study, pid: str, space: dict) -> tuple[list[int], list] | None:
    """Process `pid`'s completed trial numbers and its running trials with every value drawn, as the store has
    them now, when it has both; else None."""
    from optuna.trial import TrialState

    from quest.tuning import studies

    mine = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get(studies.WORKER, "").endswith(f":{pid}")]
    finished = [t.number for t in mine if t.state == TrialState.COMPLETE]
    holding = [t for t in mine if t.state == TrialState.RUNNING and len(t.params) == len(space)]
    return (finished, holding) if finished and holding else None


def test_stopping_the_server_stops_its_database(server):  # last: the module's server is gone after it
    assert listening(server["pg_port"])
    os.killpg(server["process"].pid, signal.SIGTERM)
    server["process"].wait(timeout=60)
    assert not listening(server["pg_port"])
