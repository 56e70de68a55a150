"""Optional stage, tune: an equal-budget random search (Optuna) for the MLP and every baseline.

Each model gets the same number of trials. A trial fits on an inner slice of the training split and is scored
on the rest of it (validation), which is all the search sees; the same fitted model is also scored on the test
split, only to draw the tabular benchmark's budget curve: the test score of the best-by-validation trial so
far, against trials spent. Off while tune.trials is 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from quest.core import arguments, paths, timing
from quest.core.errors import run_cli
from quest.core.files import atomic_dir, write_json, write_logged, write_stage_off, write_text
from quest.learners.registry import load_params
from quest.params import Params

if TYPE_CHECKING:
    import pandas as pd

    from quest.tracking.provenance import Provenance
    from quest.tuning.search import Plan, TrialResult

TRIALS_FILE, BUDGET_FILE, CHART_FILE = "trials.csv", "budget.csv", "budget.png"


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.tune", __doc__, "params", "data", "reports")
    args = parser.parse_args(argv)
    params = load_params(args.params, table=args.table)
    if params.tune.trials:
        tune(args, params)
        logged = [args.reports / paths.TUNING_DIR.name]
    else:
        write_stage_off(args.reports / paths.TUNING_DIR.name, paths.SUMMARY)
        print("tune: off (tune.trials is 0); set tune.trials to run an equal-budget search", file=sys.stderr)
        logged = []  # off, the stage logs nothing; its record says so, and DVC caches it either way
    marker = args.reports / paths.LOGGED.format(stage="tune")
    write_logged(marker, experiment=params.mlflow.experiment, outputs=logged)


def tune(args: argparse.Namespace, params: Params) -> None:
    """The stage's work when it is on. Its libraries take seconds to import: only then are they imported."""
    from quest.evaluation import plots
    from quest.tracking import provenance
    from quest.tuning import search

    settings = params.tune
    tuning = search.plan(args.data, params)
    print(
        f"tune: {len(tuning.models)} models x {settings.trials} trials, {tuning.metric} on "
        f"{len(tuning.data.validation_rows)} validation rows" + "".join(f"; {where}" for where in tuning.devices()),
        file=sys.stderr,
    )
    results, seconds = run_searches(tuning)
    lower = tuning.lower_is_better
    table = search.trials_table(results, lower_is_better=lower)
    wide = search.budget_table(table)
    curves = {name: wide[name].tolist() for name in tuning.models}
    outcome = search.summary(
        results, metric=tuning.metric, trials=settings.trials, validation_fraction=settings.validation_fraction
    )
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with atomic_dir(args.reports / paths.TUNING_DIR.name) as staging:
        write_text(staging / TRIALS_FILE, _csv(table))
        write_text(staging / BUDGET_FILE, _csv(wide))
        plots.budget_curves(curves, metric=tuning.metric, path=staging / CHART_FILE)
        write_json(staging / paths.SUMMARY, outcome)
        for name, found in results.items():
            best = search.best_trial(found, lower_is_better=lower)
            shown = (
                "every trial failed"
                if best is None
                else (f"best val {best.validation:.4f} test {best.test:.4f} {search.params_text(best.values)}")
            )
            print(f"tune: {name:<10} {shown} ({seconds[name]:.1f}s)", file=sys.stderr)
        # Inside: the results replace the earlier ones only once MLflow has them.
        log_to_mlflow(params, tuning, results, curves, out_dir=staging, origin=origin)


def run_searches(tuning: Plan) -> tuple[dict[str, list[TrialResult]], dict[str, float]]:
    """Every model's search, in order: its trials' results, and the seconds it took."""
    results: dict[str, list[TrialResult]] = {}
    seconds: dict[str, float] = {}
    for name in tuning.models:
        started = time.perf_counter()
        results[name] = tuning.search(name)
        seconds[name] = time.perf_counter() - started
    return results, seconds


def _csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.6f", lineterminator="\n")


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params,
    tuning: Plan,
    results: Mapping[str, Sequence[TrialResult]],
    curves: Mapping[str, Sequence[float]],
    *,
    out_dir: Path,
    origin: Provenance,
) -> None:
    """Per model a parent run (the space, the budget curve as `best_so_far_test` by step, the chart and table)
    with one nested child run per trial (its values, validation_score, test_score)."""
    import mlflow

    from quest.tracking import store
    from quest.tracking.tags import TAG_KIND, TAG_MODEL, TAG_STAGE
    from quest.tuning.space import sampler_seed

    store.start(params.mlflow.experiment, origin)
    for name, trials in results.items():
        learner = tuning.learners[name]
        stage = {TAG_MODEL: name, TAG_STAGE: "tune"}
        tags = {**origin.tags(), **stage, TAG_KIND: learner.kind, **learner.device_tags()}
        with mlflow.start_run(run_name=f"tune · {name}", tags=tags) as parent:
            mlflow.log_params(
                {
                    "trials": tuning.settings.trials,
                    "metric": tuning.metric,
                    "validation_fraction": tuning.settings.validation_fraction,
                    "sampler": "random",
                    "sampler_seed": sampler_seed(tuning.seed, name),
                    "study": tuning.study_names[name],
                    "split": tuning.split,
                }
            )
            mlflow.log_dict(tuning.space(name), "space.json")
            now = int(time.time() * 1000)
            for result in trials:
                _log_trial(name, result, stage, now)
            _log_budget(parent.info.run_id, trials, curves[name], lower=tuning.lower_is_better, now=now)
            for artifact in (CHART_FILE, TRIALS_FILE):
                mlflow.log_artifact(str(out_dir / artifact))


def _log_trial(name: str, result: TrialResult, tags: dict[str, str], now: int) -> None:
    """A trial as a run nested in its model's: its values, validation_score and test_score."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from quest.tracking.runs import flatten

    with mlflow.start_run(run_name=f"{name} · trial {result.trial}", nested=True, tags=tags) as child:
        scored = {"validation_score": result.validation, "test_score": result.test}
        MlflowClient().log_batch(
            child.info.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in scored.items() if math.isfinite(v)],
            params=[Param(k, str(v)) for k, v in flatten("", result.values).items()],
            tags=[
                RunTag("quest.trial", str(result.trial)),
                RunTag("quest.trial_state", "complete" if math.isfinite(result.validation) else "failed"),
            ],
        )


def _log_budget(run_id: str, trials: Sequence[TrialResult], curve: Sequence[float], *, lower: bool, now: int) -> None:
    """The budget curve by step (trials spent), and the best trial's scores."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from quest.tuning.search import best_trial

    metrics = [
        Metric("best_so_far_test", float(v), now, step) for step, v in enumerate(curve, start=1) if math.isfinite(v)
    ]
    best = best_trial(trials, lower_is_better=lower)
    if best is not None:
        metrics.append(Metric("best_validation", best.validation, now, 0))
        if math.isfinite(best.test):
            metrics.append(Metric("best_test", best.test, now, 0))
    MlflowClient().log_batch(run_id, metrics=metrics)


if __name__ == "__main__":
    run_cli("quest tune", main)
