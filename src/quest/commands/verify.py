"""`make verify`: recompute the whole pipeline from a clean clone of a commit and check that it reproduces the
committed results. `make repro` ends with `--workspace`: the same check of what it just computed, in one line.

On the numerical fingerprint the results were made on (models/environment.json: CPU, vector instructions, BLAS
kernel, GPU, libraries), every number within `verify.tolerance` (0: bit-identical) and every output byte-identical.
On another fingerprint, every conclusion unchanged and every number within its own uncertainty
(`verify.other_machine`; quest.evaluation.reproduction says how).

Exit status: 0 when the results reproduce, 1 when they do not (naming what), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from quest.core import paths
from quest.core.errors import QuestError, run_cli
from quest.evaluation.reproduction import (
    METRIC_FILES,
    Row,
    changed_conclusions,
    compare_elsewhere,
    compare_exactly,
    conclusions,
    flatten_all,
    other_machine_tolerances,
    uncertainty,
)
from quest.learners.registry import load_params
from quest.params import VerifyParams
from quest.tracking.machine import differences, summary

EXIT_MISMATCH = 1
# Outputs that record when and from which commit they were made; they cannot match a later commit's rerun.
RECORDS_COMMIT = (paths.ENVIRONMENT.as_posix(),)
SHOWN = 20  # moved numbers listed on another machine, largest share of their bound first


@dataclass(frozen=True)
class Side:
    """One set of results: the metric files' texts, the environment record, the outputs' hashes, the split sizes."""

    files: Mapping[str, str]
    environment: Mapping | None
    hashes: Mapping[str, str]
    sizes: tuple[float, float] | None = None  # (validation rows of a split, test rows)

    @property
    def numerics(self) -> dict | None:
        if not self.environment or "numerics" not in self.environment:
            return None
        return {"device": self.environment.get("device"), **self.environment["numerics"]}


@dataclass(frozen=True)
class Judgement:
    same_fingerprint: bool
    machine: list[str]  # how the fingerprints differ
    rows: list[Row]
    changed: list[str]  # conclusions that differ
    differ: list[str]  # outputs that are not byte-identical
    compared: int  # outputs compared
    exact: bool  # every verify.tolerance is 0

    @property
    def bad(self) -> list[Row]:
        return [row for row in self.rows if not row.ok]

    @property
    def moved(self) -> list[Row]:
        return [row for row in self.rows if row.moved]

    @property
    def bytes_must_match(self) -> bool:
        return self.same_fingerprint and self.exact

    @property
    def ok(self) -> bool:
        return not self.bad and not self.changed and not (self.bytes_must_match and self.differ)


def judge(committed: Side, fresh: Side, params: VerifyParams) -> Judgement:
    """Whether `fresh` reproduces `committed`: exactly on the same fingerprint, by its conclusions elsewhere."""
    machine = differences(committed.numerics, fresh.numerics)
    same = not machine
    before, after = flatten_all(committed.files), flatten_all(fresh.files)
    if same:
        rows = compare_exactly(before, after, params)
    else:
        validation, test = fresh.sizes or committed.sizes or (None, None)
        spread = uncertainty(committed.files, validation_rows=validation, test_rows=test)
        rows = compare_elsewhere(before, after, other_machine_tolerances(committed.files, spread, params), params)
    compared = [path for path in fresh.hashes if path not in RECORDS_COMMIT]
    differ = sorted(path for path in compared if committed.hashes.get(path) != fresh.hashes[path])
    changed = changed_conclusions(conclusions(committed.files), conclusions(fresh.files))
    exact = all(value == 0 for value in params.tolerance.values())
    return Judgement(same, machine, rows, changed, differ, len(compared), exact)


def format_table(rows: list[Row], *, bounds: bool = False) -> str:
    header = ("metric", "committed", "fresh", "difference", "tolerance") + (("share", "bound") if bounds else ())
    cells = [header] + [
        (r.key, f"{r.committed:.10g}", f"{r.fresh:.10g}", f"{r.difference:.3g}", f"{r.tolerance:.3g}")
        + ((f"{share(r):.2f}", r.basis or "verify.tolerance") if bounds else ())
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def share(row: Row) -> float:
    """How much of its bound a number used: 0 unmoved, 1 at the bound, inf moved where nothing may move."""
    if row.difference == 0 or (row.committed != row.committed and row.fresh != row.fresh):
        return 0.0
    return row.difference / row.tolerance if row.tolerance > 0 else float("inf")


def environment_record(text: str | None) -> dict | None:
    try:
        found = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def from_clean_tree(text: str | None) -> bool:
    """Whether an environment fingerprint (models/environment.json) says its run came from committed code."""
    try:
        return not json.loads(text or "{}").get("git", {}).get("dirty", False)
    except json.JSONDecodeError:
        return False


def split_sizes(schema_path: Path) -> tuple[float, float] | None:
    """(validation rows of one CV split, test rows) from prepare's schema.json, or None when it is absent."""
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        return schema["n_train"] / schema["folds"], float(schema["n_test"])
    except (OSError, KeyError, TypeError, ZeroDivisionError, json.JSONDecodeError):
        return None


def git_show(root: Path, revision: str, path: str) -> str | None:
    done = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def committed_side(root: Path, revision: str) -> Side:
    files = {}
    for name in METRIC_FILES:
        text = git_show(root, revision, name)
        if text is None:
            raise QuestError(f"{name} is not committed at {revision}; run `make repro` and commit the results first")
        files[name] = text
    return Side(
        files=files,
        environment=environment_record(git_show(root, revision, paths.ENVIRONMENT.as_posix())),
        hashes=output_hashes(git_show(root, revision, "dvc.lock")),
    )


def workspace_side(root: Path) -> Side:
    """The results in a checkout: what `dvc repro` just wrote there."""
    files = {}
    for name in METRIC_FILES:
        try:
            files[name] = (root / name).read_text(encoding="utf-8")
        except OSError:
            raise QuestError(f"{name} is missing; run `dvc repro` first") from None
    lock = root / "dvc.lock"
    environment = root / paths.ENVIRONMENT
    return Side(
        files=files,
        environment=environment_record(environment.read_text(encoding="utf-8") if environment.is_file() else None),
        hashes=output_hashes(lock.read_text(encoding="utf-8") if lock.is_file() else None),
        sizes=split_sizes(root / paths.PROCESSED_DIR / paths.SCHEMA),
    )


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


def fingerprint_line(committed: Side, fresh: Side, judged: Judgement) -> str:
    if judged.same_fingerprint:
        return (
            f"verify: the same machine: numerical fingerprint {(fresh.environment or {}).get('fingerprint', '?')} "
            f"({summary(fresh.numerics or {})}), the committed results' own: every number must match within "
            "verify.tolerance"
        )
    return (
        f"verify: another machine: the results were committed on {described(committed.numerics)} and recomputed "
        f"on {described(fresh.numerics)}; the fingerprints differ in {'; '.join(judged.machine)}"
    )


def described(numerics: Mapping | None) -> str:
    return summary(numerics) if numerics else "a machine whose numerical fingerprint was not recorded"


def conclusions_line(files: Mapping[str, str]) -> str:
    found = conclusions(files)
    models = sum(name.startswith("model ") for name in found)
    verdicts = sum(name.startswith("verdict of ") for name in found)
    return (
        f"{models} models; the headline {found['headline pair']}: {found['headline verdict']}; "
        f"{verdicts} neural verdict{'s' if verdicts != 1 else ''}; winner {found['winner']}"
    )


def report(committed: Side, fresh: Side, judged: Judgement) -> None:
    """What verify prints after recomputing: the machine, the outputs, the conclusions, the numbers, the answer."""
    print(fingerprint_line(committed, fresh, judged))
    print(
        f"verify: outputs byte-identical to the committed dvc.lock: {judged.compared - len(judged.differ)}/"
        f"{judged.compared}"
        + (f"; differ: {', '.join(judged.differ)}" if judged.differ else "")
        + f" (not compared: {', '.join(RECORDS_COMMIT)}, which records the commit)"
    )
    if judged.changed:
        print(f"verify: FAILED: {len(judged.changed)} conclusion(s) changed: {'; '.join(judged.changed)}")
    else:
        print(f"verify: conclusions unchanged: {conclusions_line(fresh.files)}")
    rows, bad = judged.rows, judged.bad
    if bad:
        what = "beyond tolerance" if judged.same_fingerprint else "beyond their own uncertainty"
        print(f"verify: FAILED: {len(bad)} of {len(rows)} metrics differ from the committed ones {what}")
        print(format_table(bad, bounds=not judged.same_fingerprint))
    if judged.bytes_must_match and judged.differ:
        print(
            f"verify: FAILED: {len(judged.differ)} output(s) not byte-identical on the fingerprint that made them: "
            f"{', '.join(judged.differ)} (if the numbers above match, the fingerprint misses what differs here)"
        )
    if not judged.ok:
        raise SystemExit(EXIT_MISMATCH)
    if judged.same_fingerprint:
        largest = max((row.difference for row in rows), default=0.0)
        print(f"verify: OK: {len(rows)} committed metrics reproduced (largest difference {largest:.3g})")
        return
    moved = sorted(judged.moved, key=share, reverse=True)
    if moved:
        print(f"verify: what moved, largest share of its bound first ({min(len(moved), SHOWN)} of {len(moved)}):")
        print(format_table(moved[:SHOWN], bounds=True))
    largest = f" (largest: {moved[0].key} at {share(moved[0]):.2f} of its bound)" if moved else ""
    print(
        f"verify: OK: reproduced on another machine: the same conclusions, and {len(moved)} of {len(rows)} numbers "
        f"moved, each within its own uncertainty{largest}"
    )


def standing(root: Path, revision: str) -> str:
    """`make repro`'s last line: how the workspace's results stand against the committed ones."""
    from quest.tracking.provenance import git_state

    try:
        committed, fresh = committed_side(root, revision), workspace_side(root)
    except QuestError as error:
        return f"repro: nothing to compare with the committed results ({error})"
    judged = judge(committed, fresh, load_params(root / paths.PARAMS).verify)
    return standing_line(judged, revision, dirty=git_state(root)[1])


def standing_line(judged: Judgement, revision: str, *, dirty: list[str]) -> str:
    """One of three: identical; recomputed on another machine with the same conclusions; different (naming the
    first changed conclusion, or else the number furthest beyond its tolerance)."""
    if not judged.moved and not judged.changed and not judged.differ:
        return f"repro: identical to the committed results of {revision} (every number and every output's bytes)"
    if judged.ok and not judged.same_fingerprint:
        return (
            f"repro: recomputed on another machine ({'; '.join(judged.machine)[:160]}) with the same conclusions: "
            f"{len(judged.moved)} numbers moved within their tolerance; `make verify` shows them"
        )
    if judged.ok:
        return f"repro: the committed results within verify.tolerance ({len(judged.moved)} numbers moved within it)"
    shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
    cause = f" (uncommitted changes: {shown})" if dirty else ""
    if judged.changed:
        return f"repro: different from the committed results{cause}: {judged.changed[0]}"
    if judged.bad:
        first = max(judged.bad, key=share)
        return (
            f"repro: different from the committed results{cause}: {first.key} {first.committed:.6g} -> "
            f"{first.fresh:.6g}, beyond its tolerance {first.tolerance:.3g}"
        )
    return f"repro: different from the committed results{cause}: the bytes of {', '.join(judged.differ)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="quest verify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rev", default="HEAD", help="the commit whose results to verify (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: the current directory)")
    parser.add_argument(
        "--workspace",
        action="store_true",
        help="recompute nothing: say in one line how the checkout's results stand against --rev's (make repro's end)",
    )
    args = parser.parse_args(argv)

    root = paths.repo_root(args.root)
    if git_show(root, args.rev, "dvc.yaml") is None:
        raise QuestError(f"{root}: no dvc.yaml at git revision {args.rev}; is this a quest repository with commits?")
    if args.workspace:
        print(standing(root, args.rev))
        return
    committed = committed_side(root, args.rev)
    if not from_clean_tree(git_show(root, args.rev, paths.ENVIRONMENT.as_posix())):
        print(
            f"verify: FAILED: {paths.ENVIRONMENT} at {args.rev} says its results came from uncommitted code "
            "(git.dirty: true), so no commit holds the code that made them; run `make repro` on a clean tree "
            "and commit the results"
        )
        raise SystemExit(EXIT_MISMATCH)
    with tempfile.TemporaryDirectory(prefix="quest-verify-") as workdir:
        clone = recompute(root, args.rev, Path(workdir))
        params = load_params(clone / paths.PARAMS).verify
        fresh = workspace_side(clone)
    report(committed, fresh, judge(committed, fresh, params))


if __name__ == "__main__":
    run_cli("quest verify", main)
