"""The comparison's fits on a real Dask cluster on 127.0.0.1 (issue 34): a scheduler and two worker processes,
started as `make cluster` starts them; the same outputs as a local run, a worker killed mid-run, a cluster that
is not there, and a two-table suite through it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quest.core import cluster
from quest.core.errors import QuestError
from tests.conftest import REPO, repo_params
from tests.support import TINY, copy_repo, environment, free_port, local_cluster, run

pytestmark = pytest.mark.e2e

# Every one a task of its own: the classic models a local pool spreads, CatBoost (which fills a machine's cores)
# and RealMLP (its fits in one compiled program, whose network comes back as its saved archive).
MODELS = ["logreg", "knn5", "forest", "boosting", "hgb", "xgboost", "lightgbm", "catboost", "realmlp"]
PARAMS = {
    **TINY,
    "compare": {"models": MODELS},
    "learning": {"fractions": [0.5, 1.0]},
    "mlflow": {"registered_model": ""},
}
OUTPUTS = (
    "comparison.csv",
    "cv_folds.json",
    "verdict.json",
    "comparison.md",
    "learning/curve.csv",
    "learning/by_size.csv",
)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory) -> Iterator[str]:
    with (
        (tmp_path_factory.mktemp("cluster") / "cluster.log").open("w") as log,
        local_cluster(environment(REPO), log=log) as address,
    ):
        yield address


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("local"), repo_params(**PARAMS))
    run(["dvc", "repro", "learning"], root)  # compare, then the learning curves
    return root


def test_the_comparison_and_curves_on_the_cluster_write_what_a_local_run_writes(
    local_run: Path, dask_cluster, tmp_path
):
    address = dask_cluster
    root = copy_repo(tmp_path, repo_params(**PARAMS))
    done = run(["dvc", "repro", "learning"], root, env={cluster.ENV: address})
    assert "Traceback" not in done.stderr
    for name in OUTPUTS:
        assert (root / "reports" / name).read_bytes() == (local_run / "reports" / name).read_bytes(), name
    assert _networks(root) == _networks(local_run)  # RealMLP's, trained on a worker, saved by the stage
    from distributed import Client

    with Client(cluster.scheduler_address(address), timeout=30) as client:  # what ran there: each stage's tasks
        ran = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"evaluate_there", "curve_there"} <= set(ran), ran  # Dask drops the leading underscore


def _networks(root: Path) -> list[bytes]:
    """The network files the comparison logged to MLflow (the MLP's model is train's: compare logs RealMLP's)."""
    found = sorted(root.glob("mlartifacts/**/network.keras"))
    assert found, f"no network logged under {root / 'mlartifacts'}"
    return sorted(path.read_bytes() for path in found)


def test_a_worker_killed_mid_task_has_its_fits_rerun_and_the_answer_is_the_same(
    local_run: Path, dask_cluster, tmp_path
):
    from distributed import Client

    address = dask_cluster
    root = copy_repo(tmp_path, repo_params(**PARAMS))
    run(["dvc", "repro", "evaluate"], root)  # what compare reads
    env = environment(root) | {cluster.ENV: address}
    stage = subprocess.Popen(["python", "-m", "quest.stages.compare"], cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    with Client(cluster.scheduler_address(address), timeout=30) as client:
        pids = client.run(os.getpid)  # each worker's process, by its address
        deadline = time.monotonic() + 300
        while killed is None and stage.poll() is None and time.monotonic() < deadline:
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            if busy:
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)  # mid-task: no chance to say goodbye
            time.sleep(0.02)
    _, err = stage.communicate(timeout=600)
    assert killed is not None, "no task was seen running on a worker"
    assert stage.returncode == 0, err
    for name in ("comparison.csv", "cv_folds.json", "verdict.json"):
        assert (root / "reports" / name).read_bytes() == (local_run / "reports" / name).read_bytes(), name


def test_a_two_table_suite_runs_its_comparisons_on_the_cluster(dask_cluster, tmp_path):
    address = dask_cluster
    params = repo_params(**PARAMS)
    params["suite"]["tables"] = {name: {"source": name} for name in ("house_prices", "credit_card")}
    params["suite"]["profiles"]["lite"] = {"prepare": {"max_train_rows": 200}}
    root = copy_repo(tmp_path, params)
    done = run(["python", "-m", "quest.commands.suite"], root, env={cluster.ENV: address})
    assert "suite: every table finished" in done.stderr
    summary = (root / "reports" / "suite" / "summary.json").read_text()
    assert '"house_prices"' in summary and '"credit_card"' in summary


def test_a_cluster_that_is_not_there_is_one_line_and_nothing_is_overwritten(local_run: Path, tmp_path):
    root = copy_repo(tmp_path, repo_params(**PARAMS))
    run(["dvc", "repro", "evaluate"], root)
    (root / "reports" / "comparison.csv").write_text("earlier result\n")
    nobody = f"dask://127.0.0.1:{free_port()}"
    done = run(["python", "-m", "quest.stages.compare"], root, check=False, env={cluster.ENV: nobody})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"quest compare: error: compare.executor {nobody}: no Dask scheduler answers there")
    assert "Traceback" not in done.stderr
    assert (root / "reports" / "comparison.csv").read_text() == "earlier result\n"


def test_a_worker_without_quest_or_with_other_library_versions_is_named():
    class Client:
        def __init__(self, **other):
            self.other = other

        def run(self, function):
            here = function()
            return {"tcp://10.0.0.2:4000": here, "tcp://10.0.0.3:4000": {**here, **self.other}}

    with pytest.raises(QuestError, match=r"worker tcp://10.0.0.3:4000 has lightgbm missing \(here 4\.7.*make setup"):
        cluster.check_workers(Client(lightgbm="missing"), "dask://c:1")
    with pytest.raises(QuestError, match=r"has NPY_DISABLE_CPU_FEATURES AVX512_SPR \(here .*\), so its numpy rounds"):
        cluster.check_workers(Client(NPY_DISABLE_CPU_FEATURES="AVX512_SPR"), "dask://c:1")
    cluster.check_workers(Client(), "dask://c:1")


@pytest.mark.parametrize("setting", ["dask://", "ray://h:1", "tcp://h:1", "dask://hostonly"])
def test_an_executor_that_is_not_local_or_dask_is_one_line(setting, monkeypatch):
    monkeypatch.setenv(cluster.ENV, setting)
    with pytest.raises(QuestError, match=r"^QUEST_EXECUTOR must be local or dask://host:port"):
        cluster.executor("local")
