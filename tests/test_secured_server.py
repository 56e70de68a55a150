"""`make server AUTH=1` for real, on loopback (issue 35): MLflow's basic-auth app behind TLS, PostgreSQL asking a
password of every connection, per-experiment rights; the pipeline and a two-worker sweep logging with credentials,
and no password anywhere they wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, repo_params, stop_group
from tests.support import LIGHT, TINY_LIGHT, bound_addresses, copy_repo, environment, free_port, run

pytestmark = pytest.mark.e2e

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
PROVISIONED = "team: user quest has EDIT on quest, quest-suite"


@pytest.fixture(scope="module")
def secured():
    """scripts/server.sh in secured mode on free ports, its secrets made on this first start; until the quest user
    is provisioned."""
    state = Path(tempfile.mkdtemp(prefix="quest-secured-", dir="/tmp"))  # PostgreSQL runs as `postgres`: not tmp_path
    state.chmod(0o755)
    port, pg_port = free_port(), free_port()
    env = {**os.environ, "QUEST_SERVER_AUTH": "1", "QUEST_SERVER_DIR": str(state), "QUEST_SERVER_PORT": str(port),
           "QUEST_PG_PORT": str(pg_port)}  # fmt: skip
    log_path = state / "server.out"
    log = log_path.open("w")
    started = time.monotonic()
    process = subprocess.Popen(["scripts/server.sh"], cwd=REPO, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while PROVISIONED not in log_path.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the secured server did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
        secrets = state / "secrets"
        yield {
            "uri": f"https://127.0.0.1:{port}",
            "port": port,
            "pg_port": pg_port,
            "state": state,
            "cert": str(state / "tls" / "cert.pem"),
            "quest": (secrets / "quest-password").read_text().strip(),
            "admin": (secrets / "admin-password").read_text().strip(),
            "log": log_path,
            "seconds": time.monotonic() - started,
        }
    finally:
        stop_group(process, seconds=60)  # the script's trap stops PostgreSQL
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def client_env(server: dict, cwd: Path, user: str = "quest", password: str | None = None) -> dict[str, str]:
    """A client's environment: the server, its certificate, a user and password, PostgreSQL's password file."""
    return environment(cwd) | {
        "MLFLOW_TRACKING_URI": server["uri"],
        "MLFLOW_TRACKING_SERVER_CERT_PATH": server["cert"],
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": server[user] if password is None else password,
        "PGPASSFILE": str(server["state"] / "secrets" / "pgpass"),
    }


def test_the_secured_server_lets_in_only_the_team(secured):
    import requests

    uri, cert = secured["uri"], secured["cert"]
    assert bound_addresses(secured["port"]) == bound_addresses(secured["pg_port"]) == {"127.0.0.1"}
    secrets = secured["state"] / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in secrets.iterdir() if path.is_file())

    assert requests.get(uri + SEARCH, verify=cert, timeout=30).status_code == 401  # nobody
    assert requests.get(uri + SEARCH, auth=("quest", "wrong"), verify=cert, timeout=30).status_code == 401
    assert requests.get(uri + SEARCH, auth=("quest", secured["quest"]), verify=cert, timeout=30).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):  # plain HTTP on the TLS port: no answer
        requests.get(f"http://127.0.0.1:{secured['port']}/health", timeout=30)
    quest = ("quest", secured["quest"])
    foreign = requests.get(uri + SEARCH, auth=quest, verify=cert, headers={"Host": "evil.example"}, timeout=30)
    assert foreign.status_code == 403  # not on the host allow-list (DNS rebinding)

    done = run([sys.executable, "-m", "quest.commands.team", "add-user", "reader", "READ", "--state",
                str(secured["state"]), "--uri", uri], REPO)  # fmt: skip
    assert "team: user reader has READ on quest, quest-suite" in done.stderr
    reader = ("reader", (secrets / "users" / "reader-password").read_text().strip())
    experiment = requests.get(uri + "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "quest"},
                              auth=reader, verify=cert, timeout=30).json()["experiment"]["experiment_id"]  # fmt: skip
    created = requests.post(uri + "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=quest,
                            verify=cert, timeout=30)  # fmt: skip
    assert created.status_code == 200
    run_id = created.json()["run"]["info"]["run_id"]
    seen = requests.get(uri + "/api/2.0/mlflow/runs/get", params={"run_id": run_id}, auth=reader, verify=cert,
                        timeout=30)  # fmt: skip
    assert seen.status_code == 200  # READ sees the runs
    for action, body in (("create", {"experiment_id": experiment}), ("delete", {"run_id": run_id})):
        refused = requests.post(f"{uri}/api/2.0/mlflow/runs/{action}", json=body, auth=reader, verify=cert, timeout=30)
        assert refused.status_code == 403, action  # and cannot make or remove one
    other_origin = requests.post(uri + "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, auth=quest,
                                 verify=cert, headers={"Origin": "https://evil.example"}, timeout=30)  # fmt: skip
    assert other_origin.status_code == 403  # not on the origin allow-list

    psql = ["psql", "-h", "127.0.0.1", "-p", str(secured["pg_port"]), "-U", "quest", "-d", "mlflow", "-w", "-tAc",
            "SELECT 1"]  # fmt: skip
    if os.geteuid() == 0:
        psql = ["runuser", "-u", "postgres", "--", *psql]
    bare = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    refused = subprocess.run(psql, capture_output=True, text=True, env=bare)
    assert refused.returncode != 0 and "password" in refused.stderr  # the database asks too
    hba = subprocess.run(["cat", str(secured["state"] / "postgres" / "pg_hba.conf")], capture_output=True, text=True)
    rules = [line.split() for line in hba.stdout.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), rules


@pytest.fixture(scope="module")
def logged(secured, tmp_path_factory) -> dict:
    """The pipeline and a two-worker sweep on the server's PostgreSQL, as the quest user; everything they printed."""
    storage = f"postgresql+psycopg://quest@127.0.0.1:{secured['pg_port']}/optuna"
    params = repo_params(**TINY_LIGHT, tune={"trials": 4, "storage": storage, "heartbeat": 5})
    project = copy_repo(tmp_path_factory.mktemp("secured") / "quest", params)
    env = client_env(secured, project)
    printed = []
    for command in (["dvc", "repro", "prepare"], [sys.executable, "-m", "quest.commands.sweep", "--workers", "2"],
                    ["dvc", "repro"]):  # fmt: skip
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)
        printed.append(done.stdout + done.stderr)
        assert done.returncode == 0, printed[-1]
    return {"project": project, "printed": "\n".join(printed)}


def test_the_pipeline_and_a_sweep_log_with_credentials_and_no_password_lands_anywhere(secured, logged, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    for name, value in client_env(secured, logged["project"], "admin").items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)  # the admin sees every run
    mlflow.set_tracking_uri(secured["uri"])
    runs = mlflow.search_runs(experiment_names=["quest"], output_format="list")
    # Every run quest made (not the bare one the first test made by hand): each stage's, each model's, each trial's.
    stages = [found for found in runs if any(tag.startswith("quest.") for tag in found.data.tags)]
    shown = sorted((found.info.run_name, found.info.status) for found in runs)
    assert len(stages) > 10 and all(found.info.status == "FINISHED" for found in stages), shown
    assert {found.info.user_id for found in stages} == {"quest"}  # as the server signed them in
    assert {"mlp", *LIGHT, "comparison"} <= {found.data.tags.get("quest.model") for found in stages}
    trials = [found for found in stages if "quest.trial" in found.data.tags]
    assert len(trials) == 4 * (1 + len(LIGHT))  # every trial of the sweep's two studies, once
    logged_values = [
        text
        for found in runs
        for text in (*found.data.params.values(), *found.data.tags.values(), *found.data.params, *found.data.tags)
    ]
    trained = [found for found in stages if found.info.run_name == "mlp"]  # the train stage's run
    listed = [{item.path for item in MlflowClient().list_artifacts(found.info.run_id)} for found in trained]
    assert any({"config.json", "plots"} <= paths for paths in listed), listed  # through the server, with credentials

    secrets = secured["state"] / "secrets"
    passwords = [path.read_text().strip() for path in secrets.rglob("*password*") if path.is_file()]
    passwords += [(secrets / "flask-secret-key").read_text().strip()]
    assert len(passwords) >= 4 and all(len(secret) >= 32 for secret in passwords)
    written = [path for path in logged["project"].rglob("*") if path.is_file() and ".git" not in path.parts]
    written += [path for path in (secured["state"] / "artifacts").rglob("*") if path.is_file()]
    places = {
        "console": logged["printed"],
        "server log": secured["log"].read_text(),
        "mlflow": "\n".join(logged_values),
    }
    for path in written:
        places[str(path)] = path.read_bytes().decode("utf-8", errors="replace")

    def leaks(places: dict[str, str]) -> list[str]:
        return [where for where, text in places.items() for secret in passwords if secret in text]

    assert leaks({"the secrets folder": (secrets / "quest-password").read_text()})  # the scan sees one where it is
    assert not leaks(places), leaks(places)
    assert len(written) > 100  # the scan saw what the run wrote


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"MLFLOW_TRACKING_USERNAME": None}, "asks who you are (401): set MLFLOW_TRACKING_USERNAME and"),
        ({"MLFLOW_TRACKING_PASSWORD": "wrong"}, "refused user quest's password (401): check MLFLOW_TRACKING_PASSWORD"),
        ({"MLFLOW_TRACKING_SERVER_CERT_PATH": "/nowhere/cert.pem"}, "/nowhere/cert.pem: cannot read the server's"),
        ({"MLFLOW_TRACKING_SERVER_CERT_PATH": None}, "the server's certificate is not trusted here"),
        ({"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"}, "the server there speaks TLS; use https:// instead of"),
    ],
)
def test_a_client_misconfigured_is_one_line_and_nothing_is_overwritten(secured, logged, setting, expected):
    project = logged["project"]
    env = client_env(secured, project)
    for name, value in setting.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value.format(port=secured["port"])
    before = (project / "reports" / "metrics.json").read_bytes()
    done = subprocess.run([sys.executable, "-m", "quest.stages.evaluate"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("quest evaluate: error: MLFLOW_TRACKING") and expected in lines[-1], done.stderr
    assert "Traceback" not in done.stderr
    assert (project / "reports" / "metrics.json").read_bytes() == before


def test_a_reader_cannot_log_and_is_told_in_one_line(secured, logged):
    project = logged["project"]
    reader = secured["state"] / "secrets" / "users" / "reader-password"
    if not reader.exists():
        run([sys.executable, "-m", "quest.commands.team", "add-user", "reader", "READ", "--state",
             str(secured["state"]), "--uri", secured["uri"]], REPO)  # fmt: skip
    env = client_env(secured, project, "quest") | {
        "MLFLOW_TRACKING_USERNAME": "reader",
        "MLFLOW_TRACKING_PASSWORD": reader.read_text().strip(),
    }
    before = (project / "reports" / "metrics.json").read_bytes()
    done = subprocess.run([sys.executable, "-m", "quest.stages.evaluate"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "the tracking server refused reader (403)" in done.stderr.strip().splitlines()[-1]
    assert (project / "reports" / "metrics.json").read_bytes() == before


def test_a_server_given_an_unreadable_certificate_says_so_in_one_line(tmp_path):
    env = {**os.environ, "QUEST_SERVER_AUTH": "1", "QUEST_SERVER_DIR": str(tmp_path / "state"),
           "QUEST_SERVER_CERT": str(tmp_path / "missing.pem"), "QUEST_SERVER_PORT": str(free_port()),
           "QUEST_PG_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run(["scripts/server.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"server.sh: QUEST_SERVER_CERT {tmp_path / 'missing.pem'}: cannot read "
                                                "the certificate"]  # fmt: skip
    assert not (tmp_path / "state" / "postgres").exists()  # nothing started
    bad = subprocess.run(["scripts/server.sh"], cwd=REPO, env={**env, "QUEST_SERVER_AUTH": "yes"}, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "QUEST_SERVER_AUTH (make server AUTH=...) must be 0 or 1" in bad.stderr


def test_rotating_the_admin_password_lets_in_the_new_one_only(secured):  # last: the admin's password changes
    import requests

    before = secured["admin"]
    done = run([sys.executable, "-m", "quest.commands.team", "rotate-admin", "--state", str(secured["state"]), "--uri",
                secured["uri"]], REPO)  # fmt: skip
    assert "team: the admin password is rotated" in done.stderr and before not in done.stderr
    after = (secured["state"] / "secrets" / "admin-password").read_text().strip()
    assert after != before and len(after) >= 32
    url, cert = secured["uri"] + SEARCH, secured["cert"]
    assert requests.get(url, auth=("admin", before), verify=cert, timeout=30).status_code == 401
    assert requests.get(url, auth=("admin", after), verify=cert, timeout=30).status_code == 200
