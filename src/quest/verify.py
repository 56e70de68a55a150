"""`make verify`: recompute the whole pipeline from a clean clone of a commit and compare every committed
metric with the fresh one, within the per-metric tolerances of params.yaml (`verify.tolerance`).

Exit status: 0 when everything matches, 1 on a mismatch (with a table), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from quest import paths
from quest.errors import QuestError, run_cli
from quest.params import VerifyParams, load_params

# The committed files whose numbers verify compares, relative to the repo root.
METRIC_FILES = tuple(path.as_posix() for path in (paths.METRICS, paths.COMPARISON, paths.CV_FOLDS, paths.VERDICT))
TEXT_COLUMNS = ("model", "family", "metric", "versus")  # comparison.csv's columns that are not numbers
EXIT_MISMATCH = 1
# Outputs that record when and from which commit they were made; they cannot match a later commit's rerun.
RECORDS_COMMIT = (paths.ENVIRONMENT.as_posix(),)


@dataclass(frozen=True)
class Row:
    key: str
    committed: float
    fresh: float
    tolerance: float

    @property
    def difference(self) -> float:
        return abs(self.fresh - self.committed)

    @property
    def ok(self) -> bool:
        if math.isnan(self.committed) and math.isnan(self.fresh):
            return True
        return self.difference <= self.tolerance  # NaN on one side only: never ok


def flatten(name: str, text: str) -> dict[str, float]:
    """Every number in one metric file, keyed `file:path.to.value` (lists indexed as [i])."""
    if name.endswith(".csv"):
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            for column, value in row.items():
                if column not in TEXT_COLUMNS and value != "":  # empty: not applicable (no classic model to test)
                    out[f"{name}:{row['model']}.{column}"] = float(value)
        return out
    return dict(_walk(name + ":", json.loads(text)))


def _walk(prefix: str, node: object):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(f"{prefix}{'' if prefix.endswith(':') else '.'}{key}", value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(f"{prefix}[{index}]", value)
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield prefix, float(node)


def metric_name(key: str) -> str:
    """The tolerance name of a key: its last component without list indices (`...mlp.accuracy[2]` -> accuracy)."""
    return re.sub(r"\[\d+\]$", "", key.split(":", 1)[1]).rsplit(".", 1)[-1]


def compare_metrics(
    committed: dict[str, float], fresh: dict[str, float], tolerance: VerifyParams, *, same_machine: bool = True
) -> list[Row]:
    """One row per key on either side; a key missing on one side counts as NaN there, which never matches."""
    keys = sorted(set(committed) | set(fresh))
    nan = float("nan")
    return [
        Row(k, committed.get(k, nan), fresh.get(k, nan), tolerance.allowed(metric_name(k), same_machine=same_machine))
        for k in keys
    ]


def recorded_device(text: str | None) -> str:
    """The device an environment fingerprint (models/environment.json) names; empty when there is none."""
    try:
        return str(json.loads(text or "{}").get("device", ""))
    except json.JSONDecodeError:
        return ""


def from_clean_tree(text: str | None) -> bool:
    """Whether an environment fingerprint (models/environment.json) says its run came from committed code."""
    try:
        return not json.loads(text or "{}").get("git", {}).get("dirty", False)
    except json.JSONDecodeError:
        return False


def format_table(rows: list[Row]) -> str:
    header = ("metric", "committed", "fresh", "difference", "tolerance")
    cells = [header] + [
        (r.key, f"{r.committed:.10g}", f"{r.fresh:.10g}", f"{r.difference:.3g}", f"{r.tolerance:g}") for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells)


def git_show(root: Path, revision: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def committed_metrics(root: Path, revision: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for name in METRIC_FILES:
        text = git_show(root, revision, name)
        if text is None:
            raise QuestError(f"{name} is not committed at {revision}; run `make repro` and commit the results first")
        found.update(flatten(name, text))
    return found


def recompute(root: Path, revision: str, workdir: Path) -> Path:
    """Clone `revision` into `workdir` and run the whole pipeline there from nothing (empty DVC cache)."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(root), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", revision], cwd=clone, check=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(clone / "src")  # the committed code, not the workspace's
    env["DVC_NO_ANALYTICS"] = "1"
    # Verification runs are not experiments: keep them out of the team's MLflow store.
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'verify-mlflow.db'}"
    print(f"verify: recomputing {revision} from scratch in {clone}", file=sys.stderr, flush=True)
    done = subprocess.run(["dvc", "repro", "--force"], cwd=clone, env=env, stdout=sys.stderr)
    if done.returncode != 0:
        raise QuestError(f"`dvc repro` failed in the clean clone of {revision} (exit {done.returncode}); see above")
    return clone


def output_hashes(lock_text: str | None) -> dict[str, str]:
    """Output path -> md5 from a dvc.lock."""
    if not lock_text:
        return {}
    stages = yaml.safe_load(lock_text).get("stages", {})
    return {out["path"]: out.get("md5", "") for stage in stages.values() for out in stage.get("outs", [])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="quest verify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rev", default="HEAD", help="the commit whose results to verify (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: the current directory)")
    args = parser.parse_args(argv)

    root = paths.repo_root(args.root)
    if git_show(root, args.rev, "dvc.yaml") is None:
        raise QuestError(f"{root}: no dvc.yaml at git revision {args.rev}; is this a quest repository with commits?")
    committed = committed_metrics(root, args.rev)
    if not from_clean_tree(git_show(root, args.rev, paths.ENVIRONMENT.as_posix())):
        print(
            f"verify: FAILED: {paths.ENVIRONMENT} at {args.rev} says its results came from uncommitted code "
            "(git.dirty: true), so no commit holds the code that made them; run `make repro` on a clean tree "
            "and commit the results"
        )
        raise SystemExit(EXIT_MISMATCH)
    with tempfile.TemporaryDirectory(prefix="quest-verify-") as workdir:
        clone = recompute(root, args.rev, Path(workdir))
        tolerance = load_params(clone / paths.PARAMS).verify
        fresh: dict[str, float] = {}
        for name in METRIC_FILES:
            fresh.update(flatten(name, (clone / name).read_text(encoding="utf-8")))
        devices = (
            recorded_device(git_show(root, args.rev, paths.ENVIRONMENT.as_posix())),
            recorded_device((clone / paths.ENVIRONMENT).read_text(encoding="utf-8")),
        )
        before, after = (
            output_hashes(git_show(root, args.rev, "dvc.lock")),
            output_hashes((clone / "dvc.lock").read_text()),
        )

    same_machine = devices[0] == devices[1]
    if not same_machine:
        print(
            f"verify: notice: the results were committed on {devices[0] or 'an unrecorded device'} and recomputed on "
            f"{devices[1]}; float sums round differently there, so every metric may differ by "
            f"verify.other_machine ({tolerance.other_machine:g})"
        )
    rows = compare_metrics(committed, fresh, tolerance, same_machine=same_machine)
    compared = [path for path in after if path not in RECORDS_COMMIT]
    differ = sorted(path for path in compared if before.get(path) != after[path])
    print(
        f"verify: outputs byte-identical to the committed dvc.lock: {len(compared) - len(differ)}/{len(compared)}"
        + (f"; differ: {', '.join(differ)}" if differ else "")
        + f" (not compared: {', '.join(RECORDS_COMMIT)}, which records the commit)"
    )
    bad = [row for row in rows if not row.ok]
    if bad:
        print(f"verify: FAILED: {len(bad)} of {len(rows)} metrics differ from the committed ones beyond tolerance")
        print(format_table(bad))
        raise SystemExit(EXIT_MISMATCH)
    largest = max((row.difference for row in rows), default=0.0)
    print(f"verify: OK: {len(rows)} committed metrics reproduced (largest difference {largest:.3g})")


if __name__ == "__main__":
    run_cli("quest verify", main)
