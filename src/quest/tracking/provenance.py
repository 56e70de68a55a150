"""The environment fingerprint: what someone needs to reproduce a run, recorded beside the model and in MLflow."""

from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from pathlib import Path

from quest.errors import QuestError

LOCK_FILE = "requirements.lock"
STRICT_ENV, ALLOW_DIRTY_ENV = "QUEST_STRICT", "QUEST_ALLOW_DIRTY"


def locked_versions(lock: Path) -> dict[str, str]:
    """`name==version` pins of a requirements lock file (comments and hashes ignored)."""
    if not lock.is_file():
        return {}
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", lock.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {_canonical(name): version for name, version in pins}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names: list[str]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def fingerprint(root: Path, *, commit: str, dirty: bool, seed: int, backend: str, device: str) -> dict:
    """Python, platform, every locked package (and any drift from the lock), Keras, device, git state, seed."""
    locked = locked_versions(root / LOCK_FILE)
    installed = installed_versions(sorted(locked))
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "keras": {"version": installed_versions(["keras"])["keras"], "backend": backend},
        "device": device,
        "git": {"commit": commit, "dirty": dirty},
        "seed": seed,
        "packages": installed,
        "drift_from_lock": {
            name: {"locked": locked[name], "installed": installed[name]}
            for name in sorted(locked)
            if installed[name] != locked[name]
        },
    }


def check_strict(dirty_paths: list[str]) -> None:
    """In strict mode (QUEST_STRICT=1) refuse to record a run from uncommitted code; QUEST_ALLOW_DIRTY=1 opts out."""
    strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
    allowed = os.environ.get(ALLOW_DIRTY_ENV, "") not in ("", "0")
    if strict and dirty_paths and not allowed:
        shown = ", ".join(dirty_paths[:5]) + (f" and {len(dirty_paths) - 5} more" if len(dirty_paths) > 5 else "")
        raise QuestError(
            f"strict mode ({STRICT_ENV}=1): uncommitted changes in {shown}; commit them so the run can be "
            f"reproduced, or set {ALLOW_DIRTY_ENV}=1 to record it anyway"
        )
