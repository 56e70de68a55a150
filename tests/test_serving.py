"""The registered model over real HTTP: `mlflow models serve` answers raw rows (Titanic's when
../shared/datasets/ is here, the default table's otherwise) with exactly what evaluate computed, and a row it
cannot take with a clear 4xx; `quest predict --model models:/...` gives the same answers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from quest.core.files import read_json
from tests.conftest import SHARED_DATASETS, repo_params
from tests.support import TINY_LIGHT, copy_repo, environment, evaluated, raw_test_rows, run, same_answers

pytestmark = pytest.mark.e2e

TITANIC = SHARED_DATASETS / "titanic.csv"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("served")
    data = {}
    if TITANIC.is_file():
        data = {"source": "csv", "path": "data/raw/titanic.csv", "target": "survived", "drop": ["alive"]}
    # The MLP is what is served: one baseline beside it is enough.
    project = copy_repo(root / "quest", repo_params(**TINY_LIGHT, **({"data": data} if data else {})))
    if data:
        (project / "data" / "raw").mkdir(parents=True, exist_ok=True)
        shutil.copy(TITANIC, project / "data" / "raw" / "titanic.csv")
    run(["dvc", "repro"], project)
    verdict = read_json(project / "reports" / "verdict.json")
    alias = "champion" if verdict["neural"]["mlp"]["outcome"] == "better" else "challenger"
    port = free_port()
    env = environment(project) | {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    log = (root / "serve.log").open("w")
    command = [
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/quest-mlp@{alias}",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    server = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    printed = (root / "serve.log").read_text()
                    raise AssertionError(f"the model server did not start:\n{printed}") from None
                time.sleep(1)
        yield SimpleNamespace(project=project, url=f"http://127.0.0.1:{port}", alias=alias, env=env)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def post(url: str, rows: pd.DataFrame) -> tuple[int, dict]:
    """POST raw rows as dataframe_split JSON, numbers written exactly (repr) and gaps as null."""
    split = {"columns": list(rows.columns), "data": rows.astype(object).where(rows.notna(), None).values.tolist()}
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps({"dataframe_split": split}, default=lambda value: value.item()).encode("utf-8"),  # numpy
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_raw_rows_posted_get_exactly_what_evaluate_computed(served):
    rows = raw_test_rows(served.project)
    if TITANIC.is_file():
        assert {"sex", "embarked", "age", "alone"} <= set(rows.columns) and rows["age"].isna().any()
    status, body = post(served.url, rows)
    assert status == 200, body
    answers = pd.DataFrame(body["predictions"])
    assert same_answers(answers, evaluated(served.project))


def test_a_missing_column_or_a_wrong_type_is_a_clear_4xx(served):
    rows = raw_test_rows(served.project).head(3)
    column = rows.columns[0]
    status, body = post(served.url, rows.drop(columns=[column]))
    assert 400 <= status < 500 and f"missing inputs ['{column}']" in body["message"], body
    assert "Traceback" not in json.dumps(body)
    numeric = next(c for c in rows.columns if pd.api.types.is_float_dtype(rows[c]))
    status, body = post(served.url, rows.assign(**{numeric: ["old", *rows[numeric].iloc[1:]]}))
    assert 400 <= status < 500 and numeric in body["message"] and "Traceback" not in json.dumps(body)


def test_quest_predict_from_the_registry_gives_the_same_answers(served, tmp_path: Path):
    raw_test_rows(served.project).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "answers.csv"
    run(
        [
            "python",
            "-m",
            "quest.commands.cli",
            "predict",
            "--input",
            str(tmp_path / "rows.csv"),
            "--output",
            str(out),
            "--model",
            f"models:/quest-mlp@{served.alias}",
        ],
        served.project,
        env=served.env,
    )
    answers = pd.read_csv(out, dtype={"label": str})
    assert same_answers(answers, evaluated(served.project))
    assert np.isfinite(answers.drop(columns="label", errors="ignore").to_numpy(float)).all()
