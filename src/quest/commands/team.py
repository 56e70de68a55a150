"""`quest team`: the secured team server's users and rights (make server AUTH=1; the runbook is docs/team.md).

    quest team provision              the `quest` user with EDIT on quest's experiments (make server AUTH=1 runs it)
    quest team add-user NAME READ     a user with READ (or EDIT, MANAGE) on quest's experiments; its password is
                                      generated into the server's secrets folder, mode 0600
    quest team rotate-admin           a new admin password, set on the server and then in its file

Every command acts as the server's admin, whose password it reads from QUEST_SERVER_DIR/secrets/admin-password;
no password is ever printed or taken on the command line.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from quest.core.errors import QuestError, first_line, run_cli
from quest.core.files import atomic_path

ADMIN, STAGES_USER = "admin", "quest"  # the auth app's admin; the user quest's stages and sweeps log as
EXPERIMENTS = ("quest", "quest-suite")  # params.yaml's mlflow.experiment and the suite's (quest.params)
PERMISSIONS = ("READ", "EDIT", "MANAGE")
WAIT_SECONDS = 120


def default_state() -> Path:
    """Where make server AUTH=1 keeps its state (scripts/server.sh): QUEST_SERVER_DIR, or its default."""
    if os.environ.get("QUEST_SERVER_DIR"):
        return Path(os.environ["QUEST_SERVER_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/quest/team-server")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "quest/team-server"


def secret_file(state: Path, name: str) -> Path:
    return state / "secrets" / name


def read_secret(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise QuestError(
            f"{path}: cannot read it ({error.strerror}); is --state the secured server's folder?"
        ) from None
    if not text:
        raise QuestError(f"{path}: empty; make server AUTH=1 writes it on its first start")
    return text


def write_secret(path: Path, value: str) -> None:
    """A password file only its owner reads (0600), replaced whole or not at all."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic_path(path) as staging:
        staging.chmod(0o600)
        staging.write_text(value + "\n", encoding="utf-8")


@contextmanager
def as_admin(state: Path, uri: str, cert: Path) -> Iterator[object]:
    """The auth app's client, signed in as the admin; MLflow reads the credentials from the environment, which
    is restored after."""
    import warnings

    import mlflow.server

    settings = {
        "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": read_secret(secret_file(state, "admin-password")),
        "MLFLOW_TRACKING_SERVER_CERT_PATH": str(cert),
    }
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        with warnings.catch_warnings():  # the auth app's modules warn about the server's own dependencies
            warnings.simplefilter("ignore")
            client = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
        yield client
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_for(uri: str, cert: Path, seconds: float = WAIT_SECONDS) -> None:
    import ssl
    import urllib.request

    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2, context=context):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise QuestError(f"{uri}: the server did not answer in {seconds:.0f} s ({first_line(error)})") from None
            time.sleep(0.5)


def ensure_user(client: object, name: str, password_file: Path) -> None:
    """The user `name` with the password in its file (generated there, 0600, when there is none yet)."""
    from mlflow.exceptions import RestException

    if not password_file.exists():
        write_secret(password_file, secrets.token_urlsafe(32))
    try:
        client.get_user(name)  # type: ignore[attr-defined]
    except RestException:
        client.create_user(name, read_secret(password_file))  # type: ignore[attr-defined]


def grant(client: object, name: str, permission: str, experiments: Sequence[str]) -> None:
    """`permission` on each experiment (made first where it does not exist yet, owned by the admin)."""
    from mlflow.exceptions import RestException
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(tracking_uri=client.tracking_uri)  # type: ignore[attr-defined]
    for experiment in experiments:
        found = tracking.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else tracking.create_experiment(experiment)
        try:
            client.grant_user_permission(name, "experiment", experiment_id, permission)  # type: ignore[attr-defined]
        except RestException as error:  # granted before: the new permission replaces the old one
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.revoke_user_permission(name, "experiment", experiment_id)  # type: ignore[attr-defined]
            client.grant_user_permission(name, "experiment", experiment_id, permission)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state", type=Path, default=None, help="the secured server's folder (QUEST_SERVER_DIR)")
    common.add_argument(
        "--uri", default=None, help="the server (default: MLFLOW_TRACKING_URI, else https://127.0.0.1:5001)"
    )
    common.add_argument("--cert", type=Path, default=None, help="its certificate (default: STATE/tls/cert.pem)")
    common.add_argument("--experiment", action="append", help=f"repeatable; default: {', '.join(EXPERIMENTS)}")
    parser = argparse.ArgumentParser(prog="quest team", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("provision", parents=[common], help="the quest user, with EDIT on quest's experiments")
    add = commands.add_parser("add-user", parents=[common], help="a user with a permission on quest's experiments")
    add.add_argument("name")
    add.add_argument("permission", choices=PERMISSIONS)
    commands.add_parser("rotate-admin", parents=[common], help="a new admin password, on the server and in its file")
    args = parser.parse_args(argv)
    state = args.state or default_state()
    uri = (args.uri or os.environ.get("MLFLOW_TRACKING_URI") or "https://127.0.0.1:5001").rstrip("/")
    if not uri.startswith("https://"):
        raise QuestError(f"--uri {uri}: the secured server speaks https:// only")
    cert = args.cert or Path(os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or state / "tls" / "cert.pem")
    if not os.access(cert, os.R_OK):
        raise QuestError(f"--cert {cert}: cannot read the server's certificate")
    experiments = args.experiment or list(EXPERIMENTS)
    wait_for(uri, cert)
    from mlflow.exceptions import MlflowException

    with as_admin(state, uri, cert) as client:
        try:
            if args.command == "provision":
                ensure_user(client, STAGES_USER, secret_file(state, "quest-password"))
                grant(client, STAGES_USER, "EDIT", experiments)
                print(f"team: user {STAGES_USER} has EDIT on {', '.join(experiments)}", file=sys.stderr)
            elif args.command == "add-user":
                password_file = secret_file(state, f"users/{args.name}-password")
                ensure_user(client, args.name, password_file)
                grant(client, args.name, args.permission, experiments)
                print(f"team: user {args.name} has {args.permission} on {', '.join(experiments)}; "
                      f"password in {password_file}", file=sys.stderr)  # fmt: skip
            else:
                rotate_admin(client, secret_file(state, "admin-password"))
        except MlflowException as error:
            raise QuestError(f"{uri}: {first_line(error)}") from None


def rotate_admin(client: object, password_file: Path) -> None:
    """The server first, then the file: a failure between the two leaves the new password in a file beside the old
    one (admin-password.new), never an admin nobody can sign in as."""
    old, new = read_secret(password_file), secrets.token_urlsafe(32)
    pending = password_file.with_name(password_file.name + ".new")
    write_secret(pending, new)
    client.update_user_password(ADMIN, new, current_password=old)  # type: ignore[attr-defined]
    os.replace(pending, password_file)
    print(f"team: the admin password is rotated; the new one is in {password_file}", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest team", main)
