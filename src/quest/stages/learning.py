"""Learning curves: every model scored at growing training-set sizes on the shared folds, to show where (if
anywhere) the MLP overtakes the baselines as data grows — the lecture's "deep learning needs data", measured.

Each fold's training rows are subsampled (seeded, stratified, the same rows for every model) to each fraction
in `learning.fractions`; the fraction 1.0 point is the comparison's own fold scores, not a second computation.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from quest.core import arguments, paths, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import atomic_dir, read_json, require, write_json, write_logged, write_stage_off, write_text
from quest.learners.registry import load_params
from quest.params import Params

if TYPE_CHECKING:
    import pandas as pd

    from quest.data.artifacts import Prepared
    from quest.tracking.provenance import Provenance

CURVE_FILE, WIDE_FILE, CHART_FILE = "curve.csv", "by_size.csv", "learning_curve.png"


@timing.timed("compute")
def read_compared(path: Path, prepared: Prepared, metric: str) -> dict:
    """compare's per-fold scores, which give the curves their full-size point: the MLP's and each baseline's
    `metric`, one finite score per shared split."""
    compared = read_json(require(path, "compare"))
    splits = prepared.schema.folds * prepared.schema.repeats
    for scores in compared.values() if isinstance(compared, dict) else []:
        values = scores.get(metric) if isinstance(scores, dict) else None
        if not (isinstance(values, list) and len(values) == splits and all(map(_finite, values))):
            break
    else:
        if isinstance(compared, dict) and "mlp" in compared:
            return compared
    raise QuestError(
        f"{path}: does not hold {splits} finite {metric} scores per model, the MLP's among them: it comes from "
        "another compare or prepare; run `dvc repro compare`"
    )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.learning", __doc__, "params", "data", "reports")
    args = parser.parse_args(argv)
    params = load_params(args.params, table=args.table)
    if params.learning.fractions:
        learn(args, params)
        logged = [args.reports / paths.LEARNING_DIR.name]
    else:
        write_stage_off(args.reports / paths.LEARNING_DIR.name, paths.SUMMARY)
        print("learning: off (learning.fractions is empty)", file=sys.stderr)
        logged = []  # off, the stage logs nothing; its record says so, and DVC caches it either way
    marker = args.reports / paths.LOGGED.format(stage="learning")
    write_logged(marker, experiment=params.mlflow.experiment, outputs=logged)


def learn(args: argparse.Namespace, params: Params) -> None:
    """The stage's work when it is on. Its libraries take seconds to import: only then are they imported."""
    from quest.data.artifacts import read_prepared
    from quest.evaluation import curves, plots
    from quest.evaluation.metrics import primary_metric
    from quest.learners import registry
    from quest.tracking import provenance

    prepared = read_prepared(args.data)
    metric = primary_metric(params.compare.metric, prepared.schema.task, prepared.n_classes)
    compared = read_compared(args.reports / paths.CV_FOLDS.name, prepared, metric)
    learners = [registry.subject(params), *(m for m in registry.entrants(params, who="learning") if m.name in compared)]
    problem = registry.problem(params, prepared)  # the comparison's models
    started = time.perf_counter()
    grid = curves.cells(
        prepared, fractions=params.learning.fractions, repeats=params.learning.repeats, seed=params.seed
    )
    partial = curves.curve_scores(
        learners, prepared, problem, grid, metric=metric, seed=params.seed, executor=params.compare.executor
    )
    limit = params.learning.repeats * prepared.schema.folds
    n_full, _ = prepared.split_sizes
    names = [learner.name for learner in learners]
    table = curves.summarise(partial, {name: compared[name][metric] for name in names}, limit=limit, n_full=n_full)
    wide = table.pivot(index="n_train", columns="model", values="mean")[names].reset_index()
    overtakes = curves.overtakes(table, metric)
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with atomic_dir(args.reports / paths.LEARNING_DIR.name) as staging:
        write_text(staging / CURVE_FILE, table.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
        write_text(staging / WIDE_FILE, wide.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
        plots.learning_curves(table, metric=metric, path=staging / CHART_FILE)
        summary = {"enabled": True, "metric": metric, "fractions": list(params.learning.fractions), "splits": limit}
        write_json(staging / paths.SUMMARY, {**summary, "overtakes": overtakes})
        print(wide.to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=sys.stderr)
        print(f"learning: {overtakes['text']} ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
        # Inside: the curves replace the earlier ones only once MLflow has them.
        log_to_mlflow(params, table, metric, staging, origin, split=prepared.schema.split_param)


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params, table: pd.DataFrame, metric: str, out_dir: Path, origin: Provenance, *, split: str
) -> None:
    """One run with the curve as metrics (step = training rows) per model, and the chart and table; `split` says
    how prepare divided the rows (Schema.split_param)."""
    import mlflow
    import numpy as np
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from quest.tracking import store
    from quest.tracking.tags import TAG_MODEL, TAG_STAGE

    store.start(params.mlflow.experiment, origin)
    tags = {**origin.tags(), TAG_MODEL: "learning_curve", TAG_STAGE: "learning"}
    with mlflow.start_run(run_name="learning curve", tags=tags) as run:
        mlflow.log_params(
            {
                "metric": metric,
                "fractions": str(list(params.learning.fractions)),
                "repeats": params.learning.repeats,
                "split": split,
            }  # fmt: skip
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


if __name__ == "__main__":
    run_cli("quest learning", main)
