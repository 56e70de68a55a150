import subprocess
from pathlib import Path

import pytest

from quest.core.errors import QuestError
from quest.tracking.provenance import check_strict, fingerprint, git_state, locked_versions
from quest.tracking.store import tracking_uri


def test_lock_pins_are_read_and_drift_is_reported(tmp_path: Path):
    (tmp_path / "requirements.lock").write_text(
        "# header\nKeras==3.15.1\n    # via quest\nnumpy==0.0.1 ; python_version >= '3.11'\nnot_installed_pkg==1.0\n"
    )
    assert locked_versions(tmp_path / "requirements.lock") == {
        "keras": "3.15.1",
        "numpy": "0.0.1",
        "not-installed-pkg": "1.0",
    }
    record = fingerprint(tmp_path, commit="abc", dirty=True, seed=7, backend="tensorflow", device="cpu:x")
    assert record["git"] == {"commit": "abc", "dirty": True} and record["seed"] == 7
    assert record["keras"] == {"version": "3.15.1", "backend": "tensorflow"}
    assert sorted(record["drift_from_lock"]) == ["not-installed-pkg", "numpy"]
    assert record["drift_from_lock"]["not-installed-pkg"] == {"locked": "1.0", "installed": "missing"}


def test_strict_mode_refuses_uncommitted_code_unless_allowed(monkeypatch):
    check_strict(["src/quest/train.py"])  # not strict: fine
    monkeypatch.setenv("QUEST_STRICT", "1")
    check_strict([])  # strict and clean: fine
    with pytest.raises(QuestError, match=r"strict mode \(QUEST_STRICT=1\): uncommitted changes in params.yaml, a.py; "):
        check_strict(["params.yaml", "a.py"])
    monkeypatch.setenv("QUEST_ALLOW_DIRTY", "1")
    check_strict(["params.yaml"])


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=root, check=True, capture_output=True
    )


def test_dirty_ignores_what_dvc_rewrites(tmp_path: Path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  s:\n    cmd: x\n"
        "    outs:\n      - reports/out.csv:\n          cache: false\n"
        "    metrics:\n      - m.json\n"
    )
    for name in ("dvc.lock", "reports/out.csv", "m.json", "params.yaml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "c")
    for name in ("dvc.lock", "reports/out.csv", "m.json"):
        (tmp_path / name).write_text("2\n")
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty == []
    (tmp_path / "params.yaml").write_text("2\n")
    assert git_state(tmp_path)[1] == ["params.yaml"]
    assert git_state(tmp_path / "nowhere") == ("unknown", [])


def test_tracking_uri_prefers_the_env_then_dvc_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", "/srv/main-repo")  # a queued experiment's temporary copy points here
    assert tracking_uri(tmp_path) == "sqlite:////srv/main-repo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
