"""Where a stage's runs come from: the code (git commit, uncommitted paths), the data (its DVC hash) and the
environment fingerprint someone needs to reproduce them. Computed once per stage (`collect`)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from quest import __version__
from quest.core.errors import QuestError
from quest.core.files import dvc_md5
from quest.core.host import installed_versions
from quest.core.processes import this_process
from quest.tracking import machine
from quest.tracking.tags import TAG_GIT_COMMIT, TAG_PROCESS

LOCK_FILE = "requirements.lock"
STRICT_ENV, ALLOW_DIRTY_ENV = "QUEST_STRICT", "QUEST_ALLOW_DIRTY"


@dataclass(frozen=True)
class Provenance:
    """The code and data a stage ran on, found once and handed to every run it logs."""

    root: Path
    commit: str  # "unknown" outside git
    dirty: tuple[str, ...]  # uncommitted paths, less what DVC rewrites
    data_md5: str  # DVC's hash of the prepared data, or "missing"

    def tags(self, device: str | None = None, backend: str | None = None) -> dict[str, str]:
        """Tags every quest run carries: code, data and where it ran."""
        tags = {
            TAG_GIT_COMMIT: self.commit,
            "quest.git_dirty": str(bool(self.dirty)).lower(),
            "quest.data_dvc_md5": self.data_md5,
            "quest.version": __version__,
            "quest.python": sys.version.split()[0],
            TAG_PROCESS: this_process(),
        }
        if os.environ.get("DVC_EXP_NAME"):
            tags["quest.dvc_exp"] = os.environ["DVC_EXP_NAME"]
        if device:
            tags["quest.device"] = device
        if backend:
            tags["quest.backend"] = backend
        numerics = machine.numerical_fingerprint()
        tags["quest.fingerprint"] = machine.fingerprint_id(numerics)
        tags["quest.cpu"] = machine.summary(numerics)
        return tags

    def fingerprint(self, *, seed: int, backend: str, device: str) -> dict:
        """The environment fingerprint of a run started now."""
        return fingerprint(
            self.root, commit=self.commit, dirty=bool(self.dirty), seed=seed, backend=backend, device=device
        )


def collect(root: Path, data_dir: Path) -> Provenance:
    commit, dirty = git_state(root)
    data_md5 = dvc_md5(data_dir) if data_dir.exists() else "missing"
    return Provenance(root=root, commit=commit, dirty=tuple(dirty), data_md5=data_md5)


PIPELINES = ("dvc.yaml", "suite/dvc.yaml")  # the single table's and the suite's, whose stages run from the root


def dvc_managed_paths(root: Path) -> list[str]:
    """Each pipeline's dvc.lock and every output it declares: DVC rewrites them during `dvc repro`. A `foreach`
    stage's templated output (suite/tables/${key}/data) counts as the folder before its first template."""
    import yaml

    managed = []
    for pipeline in PIPELINES:
        managed.append((Path(pipeline).parent / "dvc.lock").as_posix())
        try:
            stages = yaml.safe_load((root / pipeline).read_text(encoding="utf-8")).get("stages", {})
        except (OSError, AttributeError, yaml.YAMLError):
            continue
        for stage in stages.values():
            stage = stage.get("do", stage)
            for section in ("outs", "metrics", "plots"):
                for entry in stage.get(section, []):
                    path = next(iter(entry)) if isinstance(entry, dict) else str(entry)
                    managed.append(path.split("${")[0].rstrip("/"))
    return managed


def git_state(root: Path) -> tuple[str, list[str]]:
    """(commit, uncommitted paths) of the repo at `root`, ignoring what DVC manages; ("unknown", []) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    managed = [path.rstrip("/") for path in dvc_managed_paths(root)]
    changed = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line.strip()]
    dirty = [path for path in changed if not any(path == m or path.startswith(m + "/") for m in managed)]
    return commit, dirty


def locked_versions(lock: Path) -> dict[str, str]:
    """`name==version` pins of a requirements lock file (comments and hashes ignored)."""
    if not lock.is_file():
        return {}
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", lock.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {_canonical(name): version for name, version in pins}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def fingerprint(root: Path, *, commit: str, dirty: bool, seed: int, backend: str, device: str) -> dict:
    """Python, platform, every locked package (and any drift from the lock), Keras, device, git state, seed, and
    the numerical fingerprint (quest.tracking.machine) with its id."""
    locked = locked_versions(root / LOCK_FILE)
    installed = installed_versions(sorted(locked))
    numerics = machine.numerical_fingerprint()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "keras": {"version": installed_versions(["keras"])["keras"], "backend": backend},
        "device": device,
        "numerics": numerics,
        "fingerprint": machine.fingerprint_id(numerics),
        "git": {"commit": commit, "dirty": dirty},
        "seed": seed,
        "packages": installed,
        "drift_from_lock": {
            name: {"locked": locked[name], "installed": installed[name]}
            for name in sorted(locked)
            if installed[name] != locked[name]
        },
    }


def check_strict(dirty_paths: list[str] | tuple[str, ...]) -> None:
    """In strict mode (QUEST_STRICT=1) refuse to record a run from uncommitted code; QUEST_ALLOW_DIRTY=1 opts out."""
    strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
    allowed = os.environ.get(ALLOW_DIRTY_ENV, "") not in ("", "0")
    if strict and dirty_paths and not allowed:
        shown = ", ".join(dirty_paths[:5]) + (f" and {len(dirty_paths) - 5} more" if len(dirty_paths) > 5 else "")
        raise QuestError(
            f"strict mode ({STRICT_ENV}=1): uncommitted changes in {shown}; commit them so the run can be "
            f"reproduced, or set {ALLOW_DIRTY_ENV}=1 to record it anyway"
        )
