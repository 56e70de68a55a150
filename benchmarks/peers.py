"""make bench-peers: quest's ports of the modern tabular networks against their reference implementations, side
by side, on exactly quest's splits.

    python benchmarks/peers.py [--models realmlp,tabm] [--datasets breast_cancer,wine,...] [--repeats 2]
                               [--output peers]

Per dataset, quest's prepare splits the table (test 20 %, 5 folds x --repeats, seed 42). quest's learner
(`realmlp`, `tabm`) trains every split's network together, as the compare stage runs it; the reference (pytabkit's
RealMLP_TD_* or TabM_D_*, in its own environment, .peers-venv: see benchmarks/peers_reference.py) trains one per
split on the same rows, from the same raw columns. Both answer the same held-out rows and quest's metrics score both:
accuracy for classification, R² for regression. Printed per dataset and overall: both scores, their
difference with its corrected 95 % interval (Nadeau and Bengio's variance over the shared splits), and both
wall times (quest's with its programs compiled afresh: JAX's compilation cache is off); then
`<model>_parity=<mean of quest − reference over the datasets>` and `<model>_speedup=<reference seconds /
quest's>`. Targets: parity >= -0.005, each dataset's interval reaching 0 or above, speed-up >= 3 on two
cores. Results go to benchmarks/results/<--output>.{txt,json}.

The datasets: breast_cancer, wine and diabetes (embedded in scikit-learn), the shared Titanic and a seeded
3 000-row sample of the shared diamonds (price, regression); the shared ones are skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench import REPO, Report

SHARED = REPO.parent / "shared" / "datasets"
SEED = 42
DATASETS = ("breast_cancer", "wine", "diabetes", "titanic", "diamonds")
DIAMONDS_ROWS = 3000


def data_params(name: str, scratch: Path) -> dict | None:
    """The `data` section that loads `name`, or None when its shared file is absent."""
    synthetic = {"kind": "moons", "n_samples": 1000, "n_features": 20, "n_classes": 2, "noise": 0.2}
    base = {"path": None, "target": None, "drop": [], "task": "auto", "synthetic": synthetic}
    if name in ("breast_cancer", "wine", "diabetes"):
        return {**base, "source": name}
    if name == "titanic":
        found = SHARED / "titanic.csv"
        if not found.is_file():
            return None
        return {**base, "source": "csv", "path": str(found), "target": "survived", "drop": ["alive"]}
    found = SHARED / "diamonds.csv"
    if not found.is_file():
        return None
    import pandas as pd

    sample = pd.read_csv(found).sample(n=DIAMONDS_ROWS, random_state=SEED)
    sample.to_csv(scratch / "diamonds.csv", index=False)
    return {**base, "source": "csv", "path": str(scratch / "diamonds.csv"), "target": "price", "task": "regression"}


def params_with(data: dict):  # noqa: ANN201 (quest.params.Params)
    """The repository's params.yaml with `data` in place of its data section."""
    import yaml

    from quest.params import params_from_dict

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return params_from_dict({**raw, "data": data})


def split_table(name: str, data: dict, repeats: int, folder: Path, threads: int):  # noqa: ANN201
    """quest's prepare on the table; the reference's inputs written to `folder`. Returns (prepared, held-out masks)."""
    import pandas as pd

    from quest.data.artifacts import Prepared
    from quest.data.sources import load_dataset
    from quest.data.splits import split_indices
    from quest.stages.prepare import encode_target, prepare

    params = params_with(data)
    dataset = load_dataset(params.data, seed=SEED, root=Path(data["path"] or REPO).parent)
    result = prepare(dataset, test_size=0.2, folds=5, repeats=repeats, seed=SEED)
    prepared = Prepared(
        x_train=result["X_train.npy"], y_train=result["y_train.npy"], x_test=result["X_test.npy"],
        y_test=result["y_test.npy"], folds=result["folds.npy"], schema=result["schema"],
    )  # fmt: skip
    y, labels = encode_target(dataset.target, dataset.task)
    train_rows, _ = split_indices(y, task=dataset.task, test_size=0.2, seed=SEED, labels=labels)
    raw = dataset.features.iloc[train_rows].reset_index(drop=True)
    kinds = {column.name: column.kind for column in prepared.schema.columns}
    for column, kind in kinds.items():  # pytabkit refuses missing numbers: impute them as prepare does
        if kind == "numeric":
            raw[column] = pd.to_numeric(raw[column], errors="coerce")
            raw[column] = raw[column].fillna(raw[column].median())
    raw.to_csv(folder / "train.csv", index=False)
    held_out = np.stack([mask for _, mask in prepared.splits()])
    np.save(folder / "y.npy", prepared.y_train)
    np.save(folder / "held_out.npy", held_out)
    meta = {
        "task": dataset.task,
        "seed": SEED,
        "threads": threads,
        "categorical": [c for c, k in kinds.items() if k == "categorical"],
        "boolean": [c for c, k in kinds.items() if k == "boolean"],
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return prepared, held_out


def quest_scores(model: str, prepared, metric: str) -> tuple[np.ndarray, float]:  # noqa: ANN001
    """quest's learner on every split together, as compare runs it: per-split scores and wall seconds."""
    from quest.evaluation.scoring import cv_cells, scores_of
    from quest.learners import registry
    from quest.learners.base import Problem
    from quest.params import load_params

    learner = registry.learner(model, load_params(REPO / "params.yaml"))
    started = time.perf_counter()
    found = scores_of(learner, prepared.x_train, prepared.y_train, cv_cells(prepared), Problem.of(prepared), seed=SEED)
    seconds = time.perf_counter() - started
    return np.array([split[0][metric] for split in found]), seconds


def reference_scores(model: str, python: str, folder: Path, prepared, held_out, metric: str):  # noqa: ANN001, ANN201
    from quest.evaluation.metrics import scores

    subprocess.run([python, str(REPO / "benchmarks" / "peers_reference.py"), model, str(folder)], check=True)
    found = np.load(folder / f"{model}.npz")
    task = prepared.schema.task
    values = [scores(task, prepared.y_train[mask], found[f"split_{i}"])[metric] for i, mask in enumerate(held_out)]
    return np.array(values), float(found["seconds"].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="realmlp", help="comma-separated: realmlp, tabm")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--repeats", type=int, default=2, help="CV repeats of 5 folds (default 2: 10 splits)")
    parser.add_argument("--output", default="peers", help="results file name under benchmarks/results/")
    parser.add_argument("--reference-python", default=str(REPO / ".peers-venv" / "bin" / "python"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from quest.evaluation.metrics import primary_metric
    from quest.evaluation.stats import mean_interval
    from quest.learners import backend

    # quest's side compiles every program afresh, as on a table it has not seen: JAX's persistent cache is off.
    os.environ["QUEST_JAX_CACHE"] = ""
    backend.configure("jax", "cpu", SEED)
    threads = len(os.sched_getaffinity(0))
    out = Report(args.output)
    started = time.perf_counter()
    for model in args.models.split(","):
        out.section(f"{model}: quest's port against the reference, on quest's splits ({threads} cores)")
        out.line(f"{'dataset':<14} {'metric':<8} {'quest':>7} {'reference':>9} {'quest-ref':>9}  {'95% interval':<19} "
                 f"{'quest s':>8} {'ref s':>8}")  # fmt: skip
        differences, quest_total, reference_total, within = [], 0.0, 0.0, True
        for name in args.datasets.split(","):
            with tempfile.TemporaryDirectory() as scratch:
                folder = Path(scratch)
                data = data_params(name, folder)
                if data is None:
                    out.line(f"{name:<14} skipped: {SHARED} has no file for it")
                    continue
                prepared, held_out = split_table(name, data, args.repeats, folder, threads)
                metric = primary_metric("auto", prepared.schema.task)
                ours, our_seconds = quest_scores(model, prepared, metric)
                theirs, their_seconds = reference_scores(
                    model, args.reference_python, folder, prepared, held_out, metric
                )
            gap = ours - theirs
            n_train, n_test = prepared.split_sizes
            low, high = mean_interval(gap, n_train=n_train, n_test=n_test)
            within &= high >= 0
            differences.append(float(gap.mean()))
            quest_total, reference_total = quest_total + our_seconds, reference_total + their_seconds
            out.line(
                f"{name:<14} {metric:<8} {ours.mean():7.4f} {theirs.mean():9.4f} {gap.mean():+9.4f}  "
                f"[{low:+.4f}, {high:+.4f}]  {our_seconds:8.1f} {their_seconds:8.1f}"
            )
            out.figures[f"{model}_{name}"] = {
                "metric": metric, "quest": ours.tolist(), "reference": theirs.tolist(), "interval": [low, high],
                "quest_seconds": our_seconds, "reference_seconds": their_seconds,
            }  # fmt: skip
        if differences:
            out.line(f"{'overall':<14} {'':<8} {'':>7} {'':>9} {np.mean(differences):+9.4f}  {'':<19} "
                     f"{quest_total:8.1f} {reference_total:8.1f}")  # fmt: skip
            out.figure(f"{model}_parity", float(np.mean(differences)))
            out.figure(f"{model}_speedup", reference_total / quest_total)
            out.figure(f"{model}_every_interval_reaches_zero", str(within), text=True)
    out.line(f"\n(benchmark wall time {time.perf_counter() - started:.0f}s)")
    out.save()


if __name__ == "__main__":
    main()
