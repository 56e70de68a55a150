"""End to end: the real `dvc repro` on tiny settings in a throwaway copy of this repository.

One copy is built per module and the tests below run in order against it: first the full pipeline, then what
a team does next (a no-op repro, an experiment in a temporary directory, a push/pull round trip).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from quest.core.files import dvc_md5, file_md5, read_json
from tests.conftest import REPO, SHARED_DATASETS, repo_params
from tests.support import (
    LIGHT,
    MODELS,
    TINY,
    copy_repo,
    environment,
    evaluated,
    git,
    mlflow_runs,
    raw_test_rows,
    run,
    run_queue,
    running,
    same_answers,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("quest"), repo_params(**TINY))
    done = run(["dvc", "repro"], root)
    assert "Running stage 'compare'" in done.stdout
    assert "Warning: " not in done.stderr, done.stderr  # no library's advice on the user's console
    return root


def test_comparison_has_a_row_per_model_consistent_with_the_fold_scores(project: Path):
    table = pd.read_csv(project / "reports" / "comparison.csv")
    assert table["model"].tolist() == MODELS
    assert list(table.columns)[:6] == ["model", "family", "metric", "cv_mean", "cv_std", "ci_low"]
    assert {"ci_high", "test_score", "p_value", "p_better", "p_equivalent", "p_worse"} <= set(table.columns)
    assert table["family"].tolist() == ["neural"] + ["classic"] * (len(MODELS) - 3) + ["neural", "neural"]
    assert table[["p_value", "p_better", "p_equivalent", "p_worse"]].notna().all().all()
    bayes = table[["p_better", "p_equivalent", "p_worse"]]
    assert np.allclose(bayes.sum(axis=1), 1.0) and ((bayes >= 0) & (bayes <= 1)).all().all()
    verdict = read_json(project / "reports" / "verdict.json")
    neural = table["family"] == "neural"
    assert set(table.loc[~neural, "versus"]) == {verdict["best_neural"]}  # each classic row against the best network
    assert set(table.loc[neural, "versus"]) == {verdict["best_classic"]}
    assert set(table["metric"]) == {"accuracy"}
    folds = read_json(project / "reports" / "cv_folds.json")
    for row in table.itertuples():
        scores = folds[row.model]["accuracy"]
        assert len(scores) == 4  # the tiny run's 2 folds x 2 repeats, shared by every model
        assert row.ci_low <= row.cv_mean <= row.ci_high
        assert row.cv_mean == pytest.approx(np.mean(scores), abs=1e-6)
        assert row.cv_std == pytest.approx(np.std(scores), abs=1e-6)
        assert 0.5 < row.test_score <= 1.0
    mlp_test = read_json(project / "reports" / "metrics.json")["mlp"]["test"]["accuracy"]
    assert table.set_index("model").loc["mlp", "test_score"] == pytest.approx(mlp_test, abs=1e-6)
    report = (project / "reports" / "comparison.md").read_text()
    assert "Winner (CV mean):" in report
    assert f"**The answer: {verdict['words']}.**" in report
    for image in (
        "comparison.png",
        "posterior.png",
        "eval/confusion_matrix.png",
        "eval/roc.png",
        "eval/pr.png",
        "eval/training_curves.png",
    ):
        assert (project / "reports" / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_is_written_and_the_optional_stages_say_they_were_off(project: Path):
    for name in ("learning", "tuning"):
        assert read_json(project / "reports" / name / "summary.json") == {"enabled": False}
    report = (project / "reports" / "report.md").read_text()
    assert report.count("Not run.") == 2 and "| **" in report  # the winner's row is bold
    page = (project / "reports" / "report.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == report.count("![")


def test_model_and_config_are_saved_beside_each_other(project: Path):
    import keras

    from quest.learners.networks import load_mlp
    from quest.learners.registry import keras_classes

    config = read_json(project / "models" / "config.json")
    assert config["train"]["hidden_layers"] == [8]
    assert config["device"].startswith("cpu:")
    assert 1 <= config["best_epoch"] <= config["epochs_run"] <= 5
    model = load_mlp(project / "models" / "mlp.keras", keras_classes())  # as evaluate loads it
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [8, 1]
    history = pd.read_csv(project / "models" / "history.csv")
    assert len(history) == config["epochs_run"] and {"loss", "val_loss"} <= set(history.columns)


def test_every_model_lands_in_the_mlflow_store_with_the_shared_keys(project: Path):
    runs = mlflow_runs(project)
    by_name = {r.info.run_name: r for r in runs}
    parent = by_name.pop(next(name for name in by_name if name.startswith("comparison")))
    assert sorted(by_name) == sorted(MODELS)
    table = pd.read_csv(project / "reports" / "comparison.csv").set_index("model")
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    data_md5 = next(out["md5"] for out in lock["stages"]["prepare"]["outs"] if out["path"] == "data/processed")
    assert dvc_md5(project / "data" / "processed") == data_md5  # quest's hash is DVC's
    digests = set()
    for name, found in by_name.items():
        assert found.info.status == "FINISHED"
        assert found.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert found.data.tags["quest.data_dvc_md5"] == data_md5
        assert {"model", "estimator", "task", "dataset", "folds", "seed", "split"} <= set(found.data.params)
        assert (found.data.params["model"], found.data.params["task"], found.data.params["folds"]) == (
            name,
            "classification",
            "2",
        )
        assert found.data.params["split"] == "random"  # how prepare divided the rows (prepare.split)
        digests.add(found.inputs.dataset_inputs[0].dataset.digest)
        for key in ("cv_mean", "cv_std", "ci_low", "ci_high", "test_score", "p_value", "p_better", "p_worse"):
            assert found.data.metrics[key] == pytest.approx(table.loc[name, key], abs=1e-6)
    assert len(digests) == 1  # every model saw the same training data
    import mlflow

    for found in [parent, *by_name.values()]:  # every run says how to reproduce it
        recorded = mlflow.artifacts.load_dict(f"{found.info.artifact_uri}/params.json")
        assert recorded["train"]["hidden_layers"] == [8] and recorded["prepare"]["repeats"] == 2
        environment = mlflow.artifacts.load_dict(f"{found.info.artifact_uri}/environment.json")
        assert environment["git"]["commit"] == found.data.tags["mlflow.source.git.commit"]
        assert environment["packages"]["keras"] == environment["keras"]["version"]
    verdict = read_json(project / "reports" / "verdict.json")
    assert parent.data.tags["quest.winner"] == verdict["winner"]
    assert parent.data.metrics["neural_vs_classic_difference"] == pytest.approx(verdict["difference"])
    assert parent.data.metrics["neural_vs_classic_p_equivalent"] == pytest.approx(verdict["p_equivalent"])
    assert parent.data.tags["quest.answer"] == verdict["words"]
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"posterior.png", "comparison.png", "comparison.md", "comparison.csv"} <= logged
    mlp = by_name["mlp"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert mlp.data.tags["mlflow.source.git.commit"] == head
    assert mlp.data.tags["quest.device"].startswith("cpu:") and mlp.data.tags["quest.backend"] == "jax"
    assert mlp.data.tags["quest.model_md5"] == file_md5(project / "models" / "mlp.keras")
    assert mlp.data.params["train.hidden_layers"] == "[8]"
    assert {"loss", "val_loss", "test_accuracy", "test_roc_auc"} <= set(mlp.data.metrics)
    assert mlp.inputs.dataset_inputs[0].dataset.digest
    logged = mlflow.search_logged_models(experiment_ids=[mlp.info.experiment_id], output_format="list")
    networks = [by_name[name].info.run_id for name in ("mlp", "realmlp", "tabm")]  # each a model on raw rows
    assert sorted(m.source_run_id for m in logged) == sorted(networks) and all(m.model_id for m in logged)
    for model in logged:  # each served model says how the rows it learned from were split
        assert mlflow.models.get_model_info(f"models:/{model.model_id}").metadata == {"quest.split": "random"}
    epochs = mlflow.MlflowClient().get_metric_history(mlp.info.run_id, "val_loss")
    assert [m.step for m in epochs] == list(range(1, len(epochs) + 1))


def test_the_mlp_is_registered_with_the_alias_its_verdict_earns(project: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    verdict = read_json(project / "reports" / "verdict.json")
    mine = verdict["neural"]["mlp"]
    alias = "champion" if mine["outcome"] == "better" else "challenger"
    version = client.get_model_version_by_alias("quest-mlp", alias)
    mlp = next(r for r in mlflow_runs(project) if r.data.tags.get("quest.model_md5"))
    assert version.run_id == mlp.info.run_id
    assert version.tags["quest.verdict"] == mine["words"]
    assert version.description == (project / "reports" / "comparison.md").read_text()  # the table, attached
    other = {"champion": "challenger", "challenger": "champion"}[alias]
    assert other not in client.get_registered_model("quest-mlp").aliases
    champion = mlflow.pyfunc.load_model(f"models:/quest-mlp@{alias}")  # as docs/serving.md shows
    answers = champion.predict(raw_test_rows(project))  # raw rows: the registered model preprocesses them
    assert same_answers(answers, evaluated(project))


FRESH_PROCESS_PREDICTIONS = """
import json, sys
from pathlib import Path
import mlflow, numpy as np
from quest.data.artifacts import read_prepared
from quest.evaluation.metrics import scores
from tests.support import evaluated, raw_test_rows, same_answers
mlflow.set_tracking_uri("sqlite:///mlflow.db")
logged = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}")
answers = logged.predict(raw_test_rows(Path(".")))
prepared = read_prepared(Path("data/processed"))
probabilities = answers.drop(columns="label").to_numpy()
print(json.dumps({"scores": scores(prepared.schema.task, prepared.y_test, probabilities),
                  "identical": bool(same_answers(answers, evaluated(Path("."))))}))
"""


def test_models_load_in_a_fresh_process_and_predict_bit_for_bit(project: Path):
    import mlflow

    mlp = next(
        r
        for r in mlflow_runs(project)
        if r.data.tags.get("quest.model_md5") == file_md5(project / "models" / "mlp.keras")
    )
    logged = mlflow.search_logged_models(experiment_ids=[mlp.info.experiment_id], output_format="list")
    model_id = next(m.model_id for m in logged if m.source_run_id == mlp.info.run_id)
    env = {"PYTHONPATH": f"{project / 'src'}{os.pathsep}{REPO}"}  # tests.test_pipeline's helpers too
    done = run(["python", "-c", FRESH_PROCESS_PREDICTIONS, model_id], project, env=env)
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["scores"] == read_json(project / "reports" / "metrics.json")["mlp"]["test"]  # exact, every bit
    assert fresh["identical"]


NETWORK_ON_RAW_ROWS = """
import json, sys
from pathlib import Path
import mlflow
from quest.data.artifacts import read_prepared
from quest.evaluation.metrics import scores
from tests.support import raw_test_rows
mlflow.set_tracking_uri("sqlite:///mlflow.db")
answers = mlflow.pyfunc.load_model(f"models:/{sys.argv[1]}").predict(raw_test_rows(Path(".")))
prepared = read_prepared(Path("data/processed"))
print(json.dumps({"columns": list(answers.columns),
                  "scores": scores(prepared.schema.task, prepared.y_test, answers.drop(columns="label").to_numpy())}))
"""


@pytest.mark.parametrize("network", ["realmlp", "tabm"])
def test_the_other_networks_are_logged_as_models_on_raw_rows_too(project: Path, network: str):
    import mlflow

    entrant = max((r for r in mlflow_runs(project) if r.info.run_name == network), key=lambda r: r.info.start_time)
    logged = mlflow.search_logged_models(experiment_ids=[entrant.info.experiment_id], output_format="list")
    model_id = next(m.model_id for m in logged if m.source_run_id == entrant.info.run_id)
    env = {"PYTHONPATH": f"{project / 'src'}{os.pathsep}{REPO}"}
    done = run(["python", "-c", NETWORK_ON_RAW_ROWS, model_id], project, env=env)
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    schema = read_json(project / "data" / "processed" / "schema.json")
    assert fresh["columns"] == ["label", *(f"probability_{label}" for label in schema["class_labels"])]
    # The final network compare scored on the test split answers the raw test rows the same, to the last bit.
    metrics = entrant.data.metrics
    assert fresh["scores"] == {name: metrics[f"test_{name}"] for name in fresh["scores"]} and len(fresh["scores"]) == 5


def test_a_fresh_clone_without_the_remote_recomputes_and_logs_the_whole_comparison(project: Path, tmp_path: Path):
    git(project, "add", "-A")
    git(project, "commit", "-qm", "results", "--allow-empty")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "mlflow.db").exists() and not (clone / "reports" / "logged-compare.json").exists()
    (clone / ".venv").symlink_to(REPO / ".venv")  # this checkout's environment: STAMP= skips installing it
    run(["make", "repro", "STAMP="], clone)
    runs = mlflow_runs(clone)
    assert sorted(r.info.run_name for r in runs) == sorted([*MODELS, "comparison · breast_cancer"])
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.info.run_name for r in runs if "cv_mean" in r.data.metrics) == sorted(MODELS)
    for name in ("comparison.csv", "cv_folds.json", "verdict.json", "metrics.json"):  # recomputed, the same bytes
        assert file_md5(clone / "reports" / name) == file_md5(project / "reports" / name)


def test_second_repro_is_a_no_op(project: Path):
    before = (project / "reports" / "comparison.csv").stat().st_mtime_ns
    done = run(["dvc", "repro"], project)
    assert "Data and pipelines are up to date." in done.stdout
    assert "Running stage" not in done.stdout
    assert (project / "reports" / "comparison.csv").stat().st_mtime_ns == before
    metrics = run(["dvc", "metrics", "show", "--json"], project).stdout
    assert '"accuracy"' in metrics and "reports/metrics.json" in metrics


def test_experiment_in_a_temporary_copy_logs_to_the_main_store(project: Path):
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first results", "--allow-empty")
    before = len(mlflow_runs(project))
    run(["dvc", "exp", "run", "--temp", "-S", "train.epochs=2", "-S", f"compare.models={LIGHT}"], project)
    runs = mlflow_runs(project)
    assert len(runs) == before + 1 + len(LIGHT) + 1  # the MLP, every baseline, one parent
    newest_mlp = max((r for r in runs if r.info.run_name == "mlp"), key=lambda r: r.info.start_time)
    assert newest_mlp.data.params["train.epochs"] == "2"
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))


def test_queued_experiments_on_two_workers_all_land_once(project: Path):
    before = {r.info.run_id for r in mlflow_runs(project)}
    light = ["-S", f"compare.models={LIGHT}"]
    names, _ = run_queue(project, [["-S", f"train.epochs={epochs}", *light] for epochs in (2, 4)], environment(project))
    new = [r for r in mlflow_runs(project) if r.info.run_id not in before]
    assert len(new) == 2 * (1 + len(LIGHT) + 1) and all(r.info.status == "FINISHED" for r in new)
    mlps = [r for r in new if r.info.run_name == "mlp"]
    assert sorted(r.data.tags["quest.dvc_exp"] for r in mlps) == sorted(names)
    assert sorted(r.data.params["train.epochs"] for r in mlps) == ["2", "4"]
    first, second = sorted(mlps, key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time  # the two workers trained at the same time


def test_push_then_pull_in_a_fresh_clone_restores_data_and_models(project: Path, tmp_path: Path):
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "remote")
    run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "models" / "mlp.keras").exists()
    # The top pipeline's (this project never ran the suite's, suite/dvc.yaml, whose outputs have no hash to pull).
    run(["dvc", "pull", "dvc.yaml"], clone)
    assert file_md5(clone / "models" / "mlp.keras") == file_md5(project / "models" / "mlp.keras")
    assert dvc_md5(clone / "data" / "processed") == dvc_md5(project / "data" / "processed")
    status = run(["dvc", "status", "dvc.yaml"], clone).stdout
    assert "Data and pipelines are up to date." in status


def test_a_tampered_cache_file_is_reported_and_never_used(project: Path, tmp_path: Path):
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/mlp.keras")
    remote = tmp_path / "remote"
    run(["dvc", "push", "--remote", "local"], project)  # the remote the push/pull test configured
    pushed = Path(run(["dvc", "remote", "list"], project).stdout.split()[1]) / "files" / "md5" / md5[:2] / md5[2:]
    shutil.copytree(pushed.parents[3], remote)
    tampered = remote / "files" / "md5" / md5[:2] / md5[2:]
    tampered.chmod(0o644)
    tampered.write_bytes(b"not a model")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone)
    pulled = run(["dvc", "pull"], clone, check=False)
    assert pulled.returncode != 0 and "models/mlp.keras" in pulled.stdout + pulled.stderr  # reported
    assert not (clone / "models" / "mlp.keras").exists()  # and not used
    status = run(["dvc", "status"], clone).stdout
    assert "models/mlp.keras" in status and "not in cache" in status
    # With the tampered object refused, `dvc repro` rebuilds the model, byte for byte the one DVC recorded.
    run(["dvc", "repro"], clone)
    assert file_md5(clone / "models" / "mlp.keras") == md5


def test_verify_reproduces_every_byte_and_catches_the_one_tampered_metric(project: Path):
    # One recomputation (85 s on 2 cores) checks both: every output byte-identical and every other metric within
    # tolerance, the tampered one reported with its committed and fresh values. CI's `make verify` runs the
    # passing case on the real repository.
    git(project, "add", "-A")
    git(project, "commit", "-qm", "results", "--allow-empty")
    metrics_path = project / "reports" / "metrics.json"
    metrics = read_json(metrics_path)
    metrics["mlp"]["test"]["accuracy"] += 0.001
    metrics_path.write_text(json.dumps(metrics))
    git(project, "commit", "-qam", "tampered")
    tampered = run(["python", "-m", "quest.commands.verify"], project, check=False)
    identical = re.search(r"byte-identical to the committed dvc.lock: (\d+)/(\d+)", tampered.stdout)
    assert identical and identical[1] == identical[2]  # every output of every stage, the model included
    assert int(identical[2]) >= 10
    assert tampered.returncode == 1
    failed = re.search(r"verify: FAILED: 1 of (\d+) metrics differ", tampered.stdout)
    assert failed and int(failed[1]) >= 100, tampered.stdout  # the others reproduced
    row = next(
        line for line in tampered.stdout.splitlines() if line.startswith("reports/metrics.json:mlp.test.accuracy")
    )
    committed, fresh, difference, tolerance = row.split()[1:]
    assert float(committed) - float(fresh) == pytest.approx(0.001) and float(difference) == pytest.approx(0.001)
    assert tolerance == "0"
    git(project, "revert", "--no-edit", "HEAD")


# A second numerical path on one machine: OpenBLAS's AVX kernel instead of the one it picks, and XLA's code
# generated for SSE4.2: the fingerprint records both, and the networks' numbers move.
OTHER_PATH = {"OPENBLAS_CORETYPE": "Sandybridge", "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}


def test_verify_on_another_numerical_path_checks_the_conclusions_and_each_numbers_uncertainty(project: Path):
    assert run(["python", "-m", "quest.commands.verify", "--workspace"], project).stdout.startswith(
        "repro: identical to the committed results of HEAD"
    )
    elsewhere = run(["python", "-m", "quest.commands.verify"], project, env=OTHER_PATH, check=False)
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    lines = elsewhere.stdout.splitlines()
    machine = next(line for line in lines if line.startswith("verify: another machine:"))
    assert "env.OPENBLAS_CORETYPE unset -> Sandybridge" in machine and "env.XLA_FLAGS unset -> " in machine
    assert any(line.startswith("verify: conclusions unchanged: 15 models; the headline ") for line in lines)
    ok = re.search(
        r"verify: OK: reproduced on another machine: the same conclusions, and (\d+) of (\d+) numbers", lines[-1]
    )
    assert ok and 0 < int(ok[1]) < int(ok[2]), elsewhere.stdout  # a second path indeed, and most numbers unmoved


# The compare stage stopped in each of its phases, at a seeded moment within it: the pool of classic models (with
# RealMLP training beside it), CatBoost on the main thread after the pool, the logging to MLflow; the signal to
# the stage or to its whole process group, as Ctrl-C, `timeout` or a CI runner sends it.
STOPS = [
    ("pool", signal.SIGINT, "group", 1),
    ("after the pool", signal.SIGTERM, "process", 2),
    ("logging", signal.SIGTERM, "group", 3),
]
NOISE = ("Traceback", "terminate called", "FATAL", "Aborted", "core dumped")


@pytest.mark.parametrize(("phase", "sent", "to", "seed"), STOPS)
def test_compare_stopped_in_any_phase_says_so_in_one_line_and_leaves_nothing(project, tmp_path, phase, sent, to, seed):
    import random

    import mlflow

    before = {path: file_md5(path) for path in sorted((project / "reports").rglob("*")) if path.is_file()}
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage = subprocess.Popen(
        [sys.executable, "-m", "quest.stages.compare", "--params", "params.yaml", "--data", "data/processed",
         "--model", "models/mlp.keras", "--reports", "reports"],
        cwd=project, env=environment(project) | {"MLFLOW_TRACKING_URI": store}, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    printed = _until_phase(stage, phase)
    time.sleep(random.Random(seed).uniform(0.0, 0.3))
    os.killpg(stage.pid, sent) if to == "group" else stage.send_signal(sent)
    try:
        printed += stage.communicate(timeout=60)[1]
    finally:
        stage.kill()
    assert stage.returncode == (130 if sent == signal.SIGINT else 143), printed
    word = "interrupted" if sent == signal.SIGINT else "terminated"
    last = printed.strip().splitlines()[-1]
    assert re.fullmatch(rf"quest compare: {word} while .+; nothing half-written was kept", last), printed
    assert not any(noise in printed for noise in NOISE), printed
    after = {path: file_md5(path) for path in sorted((project / "reports").rglob("*")) if path.is_file()}
    assert after == before  # nothing half-written, nothing staged left beside the outputs
    assert not _children(stage.pid)
    mlflow.set_tracking_uri(store)
    mine = [run for run in mlflow.search_runs(search_all_experiments=True, output_format="list")
            if run.data.tags.get("quest.process", "").endswith(f":{stage.pid}")]  # fmt: skip
    statuses = [(run.info.run_name, run.info.status) for run in mine]
    assert not any(status in ("RUNNING", "FAILED") for _, status in statuses), statuses  # every open one KILLED
    if phase != "logging":
        assert not mine  # runs are opened only once the comparison is computed


def _until_phase(stage: subprocess.Popen, phase: str) -> str:
    """What the stage printed until `phase` began: its pool has workers; the model listed before CatBoost is
    done, so CatBoost fits on the main thread; the table is printed, so the logging to MLflow begins."""
    seen: list[str] = []
    if phase == "pool":
        deadline = time.monotonic() + 300
        while not _children(stage.pid):
            assert time.monotonic() < deadline and stage.poll() is None, "no pool"
            time.sleep(0.05)
        return ""
    marker = "compare: lightgbm" if phase == "after the pool" else "cv_mean"
    while not seen or marker not in seen[-1]:
        seen.append(stage.stderr.readline())
        assert seen[-1], "".join(seen)  # the stage ended before the phase
    return "".join(seen)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_stage_whose_dvc_is_killed_stops_instead_of_running_on(project: Path, tmp_path: Path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = {path: file_md5(path) for path in sorted((project / "reports").rglob("*")) if path.is_file()}
    log = tmp_path / "repro.log"  # a file, not a pipe: the stage holds on to what dvc gave it
    with log.open("w") as printed:  # SHELL unset, as on a CI runner: dvc runs the stage in /bin/sh -c, dash waits
        dvc = subprocess.Popen(["dvc", "repro", "--force", "--single-item", "compare"], cwd=project,
                               env={k: v for k, v in environment(project).items() if k != "SHELL"}
                               | {"MLFLOW_TRACKING_URI": store},
                               stdout=printed, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while not (stages := _children(dvc.pid)):
        assert time.monotonic() < deadline and dvc.poll() is None, log.read_text()
        time.sleep(0.1)
    time.sleep(3.0)  # well into its imports or its pool
    dvc.kill()  # as a CI job's time-out kills it: no signal reaches the stage
    dvc.wait()
    deadline = time.monotonic() + 10  # the stage alone would run on for longer: it imports for about 8 s
    while any(map(running, stages)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(running, stages)), "the stage ran on after dvc was killed"
    assert re.search(rf"quest compare: terminated \(its dvc, process {dvc.pid}, is gone\)", log.read_text())
    time.sleep(2.0)
    after = {path: file_md5(path) for path in sorted((project / "reports").rglob("*")) if path.is_file()}
    # DVC removes a stage's outputs before it runs it (git or its cache restores them); the stage wrote none.
    assert after.items() <= before.items()
    run(["git", "checkout", "--", "reports", "dvc.lock"], project, check=False)  # committed by the verify test


def test_tuning_and_learning_curves_run_in_the_pipeline_and_reach_the_report(project: Path):
    before = {r.info.run_id for r in mlflow_runs(project)}
    run(["dvc", "exp", "run", "-S", "tune.trials=2", "-S", "learning.fractions=[0.5,1.0]"], project)
    tuned = read_json(project / "reports" / "tuning" / "summary.json")
    assert tuned["enabled"] and sorted(tuned["models"]) == sorted(MODELS)
    trials = pd.read_csv(project / "reports" / "tuning" / "trials.csv")
    assert len(trials) == 2 * len(MODELS) and trials["validation"].notna().all()
    curve = pd.read_csv(project / "reports" / "learning" / "curve.csv")
    assert sorted(curve["model"].unique()) == sorted(MODELS) and sorted(curve["fraction"].unique()) == [0.5, 1.0]
    report = (project / "reports" / "report.md").read_text()
    assert "Not run." not in report
    assert (
        "![budget curves](tuning/budget.png)" in report and "![learning curves](learning/learning_curve.png)" in report
    )
    page = (project / "reports" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == report.count("![")
    new = [r for r in mlflow_runs(project) if r.info.run_id not in before]
    parents = [r for r in new if r.info.run_name.startswith("tune · ")]
    assert len(parents) == len(MODELS)
    children = [r for r in new if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents}]
    assert len(children) == 2 * len(MODELS)
    assert [r.info.run_name for r in new].count("learning curve") == 1


def titanic_like(rows: int = 400) -> pd.DataFrame:
    """A generated stand-in with Titanic's mix of types and gaps, for machines without ../shared/datasets."""
    rng = np.random.default_rng(0)
    sex = rng.choice(["male", "female"], rows)
    survived = ((sex == "female") ^ (rng.random(rows) < 0.2)).astype(int)
    age = np.where(rng.random(rows) < 0.2, np.nan, rng.uniform(1, 70, rows).round())
    return pd.DataFrame(
        {
            "survived": survived,
            "pclass": rng.integers(1, 4, rows),
            "sex": sex,
            "age": age,
            "fare": rng.gamma(2.0, 15.0, rows).round(2),
            "embarked": rng.choice(["S", "C", "Q", None], rows),
            "alone": rng.random(rows) < 0.5,
            "alive": np.where(survived == 1, "yes", "no"),
        }
    )


def test_csv_source_with_mixed_types_and_a_leaking_column(tmp_path: Path):
    shared = SHARED_DATASETS / "titanic.csv"
    params = repo_params(
        **TINY, data={"source": "csv", "path": "data/raw/titanic.csv", "target": "survived", "drop": ["alive"]}
    )
    root = copy_repo(tmp_path / "titanic", params)
    if shared.is_file():
        shutil.copy(shared, root / "data" / "raw" / "titanic.csv")
    else:
        titanic_like().to_csv(root / "data" / "raw" / "titanic.csv", index=False)
    run(["dvc", "repro"], root)
    schema = read_json(root / "data" / "processed" / "schema.json")
    kinds = {column["name"]: column["kind"] for column in schema["columns"]}
    assert "alive" not in kinds
    assert kinds["sex"] == "categorical" and kinds["age"] == "numeric" and kinds["alone"] == "boolean"
    assert schema["class_labels"] == ["0", "1"]
    table = pd.read_csv(root / "reports" / "comparison.csv")
    assert table["model"].tolist() == MODELS
    # `alive` left in would hand the tree models a perfect score; without it, sex still predicts survival well.
    assert (table["test_score"] < 0.99).all()
    assert table["test_score"].max() > 0.7
