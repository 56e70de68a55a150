"""Learning curves, computed: every model scored at growing training-set sizes on the shared folds.

The `learning` stage (quest.learning) imports this only when the stage is on: its libraries are slow to load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from quest import paths, timing
from quest.data.artifacts import Prepared, read_prepared
from quest.errors import QuestError
from quest.evaluation import plots
from quest.evaluation.metrics import LOWER_IS_BETTER, primary_metric, scores
from quest.files import atomic_dir, read_json, write_json, write_text
from quest.learners.baselines import REQUIRES, available, make_baseline, model_output
from quest.params import Params
from quest.tracking import store

CURVE_FILE, WIDE_FILE, CHART_FILE = "curve.csv", "by_size.csv", "learning_curve.png"


def subsample(rows: np.ndarray, y: np.ndarray, fraction: float, *, task: str, seed: int) -> np.ndarray:
    """A seeded `fraction` of `rows`, stratified on `y` when every class can keep a member; sorted."""
    if fraction >= 1.0:
        return rows
    keep = max(2, round(fraction * len(rows)))
    rng = np.random.default_rng(seed)
    if task != "classification":
        return np.sort(rng.choice(rows, size=keep, replace=False))
    labels = y[rows]
    classes, counts = np.unique(labels, return_counts=True)
    # Per class, its share of `keep` (at least one row each), largest remainders first so the total is exact.
    exact = counts * keep / len(rows)
    share = np.maximum(1, np.floor(exact)).astype(int)
    for index in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if share.sum() >= keep:
            break
        share[index] += 1
    picked = [
        rng.choice(rows[labels == label], size=min(n, c), replace=False)
        for label, n, c in zip(classes, share, counts, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def curve_scores(prepared: Prepared, params: Params, models: list[str], metric: str) -> pd.DataFrame:
    """One row per (model, fraction < 1, split): the split's training rows used and the held-out score."""
    task = prepared.schema.task
    limit = params.learning.repeats * prepared.schema.folds
    fractions = [f for f in params.learning.fractions if f < 1.0]
    cells = []  # (split, fraction, chosen training rows, held-out mask): the same rows for every model
    for split, held_out in prepared.splits():
        if split >= limit:
            break
        training = np.flatnonzero(~held_out)
        for fraction in fractions:
            chosen = subsample(training, prepared.y_train, fraction, task=task, seed=params.seed + split + 1)
            cells.append((split, fraction, chosen, held_out))
    rows = []
    for name in models:
        started = time.perf_counter()
        if name == "mlp":
            outputs = _mlp_outputs(prepared, params, cells)
        else:
            outputs = [_baseline_output(name, prepared, params, chosen, held_out) for _, _, chosen, held_out in cells]
        seconds = (time.perf_counter() - started) / max(1, len(cells))
        for (split, fraction, chosen, held_out), output in zip(cells, outputs, strict=True):
            score = np.nan if output is None else scores(task, prepared.y_train[held_out], output)[metric]
            rows.append(
                {
                    "model": name,
                    "fraction": fraction,
                    "split": split + 1,
                    "n_train": len(chosen),
                    "score": score,
                    "seconds": seconds,
                }
            )
        print(f"learning: {name} at {len(cells)} (split, fraction) cells, {seconds:.2f}s each", file=sys.stderr)
    return pd.DataFrame(rows)


def _mlp_outputs(prepared: Prepared, params: Params, cells: list) -> list[np.ndarray | None]:
    """The MLP's held-out output per cell: every cell's network trained together (the fast engine vmaps them)."""
    from quest.learners.network import fit_mlps, plan_job, predict

    task, y = prepared.schema.task, prepared.y_train
    usable = [i for i, (_, _, chosen, _) in enumerate(cells) if _fits(y[chosen], task)]
    jobs = [
        plan_job(
            cells[i][2],
            y,
            task=task,
            validation_fraction=params.train.early_stopping.validation_fraction,
            seed=params.seed + cells[i][0] + 1,
        )
        for i in usable
    ]
    results = fit_mlps(
        prepared.x_train, y, jobs, task=task, n_classes=prepared.n_classes, spec=params.train, label="learning"
    )
    outputs: list[np.ndarray | None] = [None] * len(cells)
    for i, result in zip(usable, results, strict=True):
        outputs[i] = predict(result.model, prepared.x_train[cells[i][3]], task=task)
    return outputs


def _fits(y: np.ndarray, task: str) -> bool:
    return task != "classification" or len(np.unique(y)) >= 2


def _baseline_output(
    name: str, prepared: Prepared, params: Params, chosen: np.ndarray, held_out: np.ndarray
) -> np.ndarray | None:
    """The baseline's output on the held-out rows, or None when it cannot fit so few rows (a notice says so)."""
    task, n_classes = prepared.schema.task, prepared.n_classes
    x, y = prepared.x_train[chosen], prepared.y_train[chosen]
    if not _fits(y, task):
        return None
    large = params.compare.large(int(held_out.sum()) + len(y))  # the comparison's choice of model, at every size
    estimator = make_baseline(name, task=task, n_features=x.shape[1], seed=params.seed, large=large)
    try:
        estimator.fit(x, y)
        return model_output(estimator, prepared.x_train[held_out], task=task, n_classes=n_classes)
    except ValueError as error:  # e.g. k=15 neighbours among fewer than 15 rows
        print(f"learning: notice: {name} cannot fit {len(y)} rows: {str(error).splitlines()[0]}", file=sys.stderr)
        return None


def summarise(partial: pd.DataFrame, full_folds: dict[str, list[float]], *, limit: int, n_full: int) -> pd.DataFrame:
    """Mean and std per (model, fraction), with the comparison's own fold scores as the fraction-1.0 point."""
    summary = (
        partial.groupby(["model", "fraction"], sort=False)
        .agg(n_train=("n_train", "mean"), mean=("score", "mean"), std=("score", lambda s: float(np.std(s))))
        .reset_index()
    )
    full = [
        {
            "model": name,
            "fraction": 1.0,
            "n_train": float(n_full),
            "mean": float(np.mean(folds[:limit])),
            "std": float(np.std(folds[:limit])),
        }
        for name, folds in full_folds.items()
    ]
    table = pd.concat([summary, pd.DataFrame(full)], ignore_index=True) if len(summary) else pd.DataFrame(full)
    table["n_train"] = table["n_train"].round().astype(int)
    order = {name: index for index, name in enumerate(full_folds)}
    return table.sort_values(
        ["model", "fraction"], key=lambda c: c.map(order) if c.name == "model" else c, kind="stable"
    ).reset_index(drop=True)


def run(args: argparse.Namespace, params: Params) -> None:
    """The stage's work when it is on; `args` are the stage's parsed command line."""
    out_dir = args.reports / paths.LEARNING_DIR.name
    prepared = read_prepared(args.data)
    metric = primary_metric(params.compare.metric, prepared.schema.task)
    folds_path = args.reports / paths.CV_FOLDS.name
    if not folds_path.is_file():
        raise QuestError(f"{folds_path}: not found; run `dvc repro compare` first")
    compared = read_json(folds_path)
    models = ["mlp", *(name for name in params.compare.baselines if name in compared and available(name))]
    for name in params.compare.baselines:
        if not available(name):
            print(
                f"learning: notice: skipping {name}: its library ({REQUIRES[name]}) is not installed", file=sys.stderr
            )
    if any(f < 1.0 for f in params.learning.fractions) and "mlp" in models:
        from quest.learners import backend

        backend.configure(params.train.backend, params.train.device, params.seed, params.train.data_parallel)
    started = time.perf_counter()
    partial = curve_scores(prepared, params, models, metric)
    limit = params.learning.repeats * prepared.schema.folds
    n_full, _ = prepared.split_sizes
    table = summarise(partial, {name: compared[name][metric] for name in models}, limit=limit, n_full=n_full)
    wide = table.pivot(index="n_train", columns="model", values="mean")[models].reset_index()

    with atomic_dir(out_dir) as staging:
        write_text(staging / CURVE_FILE, table.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
        write_text(staging / WIDE_FILE, wide.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
        plots.learning_curves(table, metric=metric, path=staging / CHART_FILE)
        write_json(
            staging / paths.SUMMARY,
            {
                "enabled": True,
                "metric": metric,
                "fractions": list(params.learning.fractions),
                "splits": limit,
                "overtakes": overtakes(table, metric),
            },
        )
        print(wide.to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=sys.stderr)
        print(f"learning: {overtakes(table, metric)['text']} ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
        # Inside: the curves replace the earlier ones only once MLflow has them.
        log_to_mlflow(params, table, metric, staging, root=paths.repo_root(args.params.parent), data_dir=args.data)


def overtakes(table: pd.DataFrame, metric: str) -> dict[str, object]:
    """At each size, whether the MLP beats every baseline's mean; the smallest size from which it always does."""
    lower = metric in LOWER_IS_BETTER
    sizes = sorted(table["n_train"].unique())
    ahead = []
    for size in sizes:
        at = table[table["n_train"] == size].set_index("model")["mean"]
        if "mlp" not in at or len(at) < 2:
            continue
        others = at.drop("mlp")
        best = others.min() if lower else others.max()
        ahead.append((int(size), bool(at["mlp"] < best if lower else at["mlp"] > best)))
    from_size = next((size for index, (size, _) in enumerate(ahead) if all(a for _, a in ahead[index:])), None)
    if from_size is None:
        text = "the MLP does not lead every baseline at the largest training size"
    else:
        text = f"the MLP leads every baseline from {from_size} training rows on"
    return {"mlp_ahead_by_size": {str(size): lead for size, lead in ahead}, "from_n_train": from_size, "text": text}


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params, table: pd.DataFrame, metric: str, out_dir: Path, *, root: Path, data_dir: Path
) -> None:
    """One run with the curve as metrics (step = training rows) per model, and the chart and table."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    store.start(params.mlflow.experiment, root)
    tags = {**store.provenance_tags(root, data_dir), store.TAG_MODEL: "learning_curve", "quest.stage": "learning"}
    with mlflow.start_run(run_name="learning curve", tags=tags) as run:
        mlflow.log_params(
            {"metric": metric, "fractions": str(list(params.learning.fractions)), "repeats": params.learning.repeats}
        )
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"{row.model}_{metric}", float(row.mean), now, int(row.n_train))
            for row in table.itertuples()
            if np.isfinite(row.mean)
        ]
        MlflowClient().log_batch(run.info.run_id, metrics=metrics)
        for name in (CHART_FILE, CURVE_FILE):
            mlflow.log_artifact(str(out_dir / name))
