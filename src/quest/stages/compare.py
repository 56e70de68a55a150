"""Stage 4, compare: cross-validate every baseline on the folds the MLP used, score each on the same test
split, and write the comparison table, a bar chart with error bars and a short report."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quest import paths, timing
from quest.data.artifacts import Prepared, read_prepared
from quest.errors import QuestError, run_cli
from quest.evaluation import plots
from quest.evaluation.metrics import LOWER_IS_BETTER, primary_metric, scores
from quest.evaluation.stats import corrected_ttest, mean_interval, win_tie_loss
from quest.files import file_md5, read_json, staged_into, write_json, write_text
from quest.learners.baselines import REQUIRES, available, describe, make_baseline, model_output
from quest.params import Params, load_params
from quest.tracking import store

# The comparison's numbers every model run carries, so MLflow's compare view lines them up.
SHARED_KEYS = ("cv_mean", "cv_std", "ci_low", "ci_high", "test_score", "p_value")
COLUMNS = [
    "model",
    "metric",
    "cv_mean",
    "cv_std",
    "ci_low",
    "ci_high",
    "test_score",
    "p_value",
    "wins",
    "ties",
    "losses",
]


@dataclass(frozen=True)
class ModelResult:
    name: str
    folds: dict[str, list[float]]  # metric -> one score per shared fold
    test: dict[str, float]  # metric -> held-out test score
    seconds: float = 0.0  # wall time of CV + final fit (logged, never written to DVC-tracked files)


def evaluate_baseline(name: str, prepared: Prepared, *, seed: int, large: bool = False) -> ModelResult:
    """CV on the shared folds, then a fit on the whole training split scored on the test split."""
    started = time.perf_counter()
    task, n_classes, n_features = prepared.schema.task, prepared.n_classes, prepared.x_train.shape[1]
    per_metric: dict[str, list[float]] = {}
    for _, held_out in prepared.splits():
        estimator = make_baseline(name, task=task, n_features=n_features, seed=seed, large=large)
        estimator.fit(prepared.x_train[~held_out], prepared.y_train[~held_out])
        output = model_output(estimator, prepared.x_train[held_out], task=task, n_classes=n_classes)
        for metric, value in scores(task, prepared.y_train[held_out], output).items():
            per_metric.setdefault(metric, []).append(value)
    estimator = make_baseline(name, task=task, n_features=n_features, seed=seed, large=large)
    estimator.fit(prepared.x_train, prepared.y_train)
    test = scores(task, prepared.y_test, model_output(estimator, prepared.x_test, task=task, n_classes=n_classes))
    return ModelResult(name=name, folds=per_metric, test=test, seconds=time.perf_counter() - started)


def evaluate_baselines(
    names: Sequence[str], prepared: Prepared, *, seed: int, large: bool = False, workers: int | None = None
) -> Iterator[ModelResult]:
    """`evaluate_baseline` for each name, in order, the models spread over `workers` processes (all cores).

    Workers are forked, so they share the prepared arrays instead of receiving a pickled copy; each model's
    result is the same as in one process (its estimator, data and seed do not depend on where it runs).
    """
    workers = min(len(names), workers or len(os.sched_getaffinity(0)))
    # Forking a process that runs JAX's or TensorFlow's threads can deadlock the child (a test process may
    # have them; the compare stage never imports them): run in this process then.
    if workers <= 1 or any(runtime in sys.modules for runtime in ("jax", "tensorflow", "torch")):
        yield from (evaluate_baseline(name, prepared, seed=seed, large=large) for name in names)
        return
    global _SHARED
    _SHARED = (prepared, seed, large, max(1, len(os.sched_getaffinity(0)) // workers))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            yield from pool.map(_evaluate_shared, names)
    finally:
        _SHARED = None


_SHARED: tuple[Prepared, int, bool, int] | None = None  # what forked workers inherit from evaluate_baselines


def _evaluate_shared(name: str) -> ModelResult:
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    prepared, seed, large, threads = _SHARED
    # The workers already fill the cores: OpenMP/BLAS threads on top would only fight over them.
    with threadpool_limits(limits=threads):
        return evaluate_baseline(name, prepared, seed=seed, large=large)


def comparison_table(results: list[ModelResult], metric: str, *, n_train: int, n_test: int) -> pd.DataFrame:
    """One row per model over the shared splits: mean, (population) std and corrected 95% interval of the
    primary metric, the test score, and for each baseline the MLP-vs-baseline corrected t-test p-value and the
    MLP's wins/ties/losses against it, split by split."""
    lower = metric in LOWER_IS_BETTER
    mlp = np.asarray(next(r for r in results if r.name == "mlp").folds[metric])
    rows = []
    for result in results:
        scores = np.asarray(result.folds[metric])
        low, high = mean_interval(scores, n_train=n_train, n_test=n_test)
        row = {
            "model": result.name,
            "metric": metric,
            "cv_mean": float(scores.mean()),
            "cv_std": float(scores.std()),
            "ci_low": low,
            "ci_high": high,
            "test_score": float(result.test[metric]),
            "p_value": float("nan"),
            "wins": pd.NA,
            "ties": pd.NA,
            "losses": pd.NA,
        }
        if result.name != "mlp":
            row["p_value"] = corrected_ttest(mlp - scores, n_train=n_train, n_test=n_test)[1]
            row["wins"], row["ties"], row["losses"] = win_tie_loss(mlp, scores, lower_is_better=lower)
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"wins": "Int64", "ties": "Int64", "losses": "Int64"})


def verdict(table: pd.DataFrame, metric: str, alpha: float) -> dict[str, object]:
    """Winner by CV mean; whether the MLP is better, worse or indistinguishable from the best baseline at `alpha`."""
    lower = metric in LOWER_IS_BETTER
    ranked = table.sort_values("cv_mean", ascending=lower, kind="stable")
    best = ranked[ranked["model"] != "mlp"].iloc[0]
    mlp = table.set_index("model").loc["mlp"]
    margin = float(mlp["cv_mean"] - best["cv_mean"]) * (-1 if lower else 1)  # > 0: the MLP is better
    p_value = float(best["p_value"])
    mlp_is = "indistinguishable from" if not p_value < alpha else ("better than" if margin > 0 else "worse than")
    return {
        "winner": str(ranked.iloc[0]["model"]),
        "best_baseline": str(best["model"]),
        "mlp_minus_best_baseline": margin,
        "p_value_vs_best_baseline": p_value,
        "alpha": alpha,
        "mlp_is": mlp_is,
    }


def report_markdown(
    table: pd.DataFrame, metric: str, dataset: str, task: str, outcome: dict, splits: str, *, large: bool = False
) -> str:
    lower = metric in LOWER_IS_BETTER
    shown = table.sort_values("cv_mean", ascending=lower, kind="stable")
    lines = [
        f"# quest: does an MLP beat the classic models on `{dataset}`?",
        "",
        f"Task: {task}. Metric: **{metric}** ({'lower' if lower else 'higher'} is better). Every model saw the "
        f"same {splits} of the training split and the same held-out test split.",
        "",
        "| model | what | CV mean ± std | 95% interval | test | p (MLP vs) | MLP W/T/L |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in shown.itertuples():
        what = "Keras MLP" if row.model == "mlp" else describe(row.model, task, large=large)
        name = f"**{row.model}**" if row.model == outcome["winner"] else row.model
        p_value = "" if row.model == "mlp" else f"{row.p_value:.3g}"
        record = "" if row.model == "mlp" else f"{row.wins}/{row.ties}/{row.losses}"
        lines.append(
            f"| {name} | {what} | {row.cv_mean:.4f} ± {row.cv_std:.4f} | {row.ci_low:.4f} – {row.ci_high:.4f} "
            f"| {row.test_score:.4f} | {p_value} | {record} |"
        )
    margin = outcome["mlp_minus_best_baseline"]
    side = "ahead of" if margin > 0 else ("level with" if margin == 0 else "behind")
    lines += [
        "",
        f"**Winner (CV mean): {outcome['winner']}.** The MLP is {abs(margin):.4f} {side} the best baseline, "
        f"{outcome['best_baseline']}. At α = {outcome['alpha']:g} the MLP is **{outcome['mlp_is']}** "
        f"{outcome['best_baseline']} (p = {outcome['p_value_vs_best_baseline']:.3g}).",
        "",
        "p is the Nadeau–Bengio corrected resampled t-test of the MLP against each model over the shared splits; "
        "the intervals use the same correction, because overlapping training sets make fold scores correlated. "
        "W/T/L counts the splits on which the MLP won, tied or lost.",
        "",
        *(
            [
                "The training split is past `compare.scale_threshold` rows, so the kernel SVM and exact gradient "
                "boosting rows ran as their scalable stand-ins, named in the table.",
                "",
            ]
            if large
            else []
        ),
        "![comparison](comparison.png)",
        "",
    ]
    return "\n".join(lines)


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("stages.compare", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    prepared = read_prepared(args.data)
    metric = primary_metric(params.compare.metric, prepared.schema.task)
    mlp = _read_mlp(args.reports)
    results = [mlp]
    large = params.compare.large(len(prepared.y_train))
    if large:
        print(
            f"compare: notice: {len(prepared.y_train)} training rows > compare.scale_threshold "
            f"({params.compare.scale_threshold}): svm_rbf and boosting run as scalable stand-ins",
            file=sys.stderr,
        )
    for name in params.compare.baselines:
        if not available(name):
            print(f"compare: notice: skipping {name}: its library ({REQUIRES[name]}) is not installed", file=sys.stderr)
    names = [name for name in params.compare.baselines if available(name)]
    for result in evaluate_baselines(names, prepared, seed=params.seed, large=large):
        name = result.name
        folds = result.folds[metric]
        print(
            f"compare: {name:<10} CV {metric} {np.mean(folds):.4f} ± {np.std(folds):.4f}  "
            f"test {result.test[metric]:.4f}  ({result.seconds:.1f}s)",
            file=sys.stderr,
        )
        results.append(result)

    n_train, n_test = prepared.split_sizes
    table = comparison_table(results, metric, n_train=n_train, n_test=n_test)
    outcome = verdict(table, metric, params.compare.alpha)
    csv_text = table.to_csv(index=False, float_format="%.6f", na_rep="", lineterminator="\n")
    root = paths.repo_root(args.params.parent)
    with staged_into(args.reports) as out:  # published only once MLflow has them
        write_text(out / paths.COMPARISON.name, csv_text)
        write_json(out / paths.CV_FOLDS.name, {r.name: r.folds for r in results})
        write_json(out / paths.VERDICT.name, {"metric": metric, **outcome})
        chart = out / paths.COMPARISON_CHART.name
        plots.comparison_bars(
            table["model"],
            table["cv_mean"],
            table["ci_low"],
            table["ci_high"],
            table["test_score"],
            metric=metric,
            path=chart,
        )
        report = out / paths.COMPARISON_REPORT.name
        schema = prepared.schema
        splits = f"{schema.folds} folds x {schema.repeats} repeats" if schema.repeats > 1 else f"{schema.folds} folds"
        write_text(report, report_markdown(table, metric, schema.dataset, schema.task, outcome, splits, large=large))
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep=""), file=sys.stderr)
        log_to_mlflow(
            params,
            prepared,
            results,
            table,
            metric,
            outcome,
            root=root,
            model_path=args.model,
            data_dir=args.data,
            artifacts=[chart, report, out / paths.COMPARISON.name],
        )
    print(
        f"compare: winner {outcome['winner']}; the MLP is {outcome['mlp_is']} the best baseline "
        f"{outcome['best_baseline']} (p = {outcome['p_value_vs_best_baseline']:.3g}); "
        f"report {args.reports / paths.COMPARISON_REPORT.name}",
        file=sys.stderr,
    )


def register_mlp(
    name: str, *, experiment: str, mlp_run: str, outcome: dict, description: str
) -> tuple[str, str] | None:
    """Register the model the MLP run logged as a new version of `name`; alias it `champion` when the MLP
    beats the best baseline significantly, else `challenger`. (version, alias), or None with a notice when
    the run logged no model (e.g. the model came from `dvc pull`)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    logged = [
        found
        for found in mlflow.search_logged_models(experiment_ids=[experiment_id], output_format="list")
        if found.source_run_id == mlp_run
    ]
    if not logged:
        print(f"compare: notice: the MLP run {mlp_run} logged no model; nothing registered", file=sys.stderr)
        return None
    alias = "champion" if outcome["mlp_is"] == "better than" else "challenger"
    tags = {
        "quest.verdict": f"{outcome['mlp_is']} {outcome['best_baseline']}",
        "quest.p_value_vs_best_baseline": f"{outcome['p_value_vs_best_baseline']:.4g}",
        "quest.winner": outcome["winner"],
    }
    version = mlflow.register_model(f"models:/{logged[0].model_id}", name, tags=tags).version
    client.update_model_version(name, version, description=description)
    client.set_registered_model_alias(name, alias, version)
    return str(version), alias


def _read_mlp(reports: Path) -> ModelResult:
    cv_path, metrics_path = reports / paths.MLP_CV.name, reports / paths.METRICS.name
    for path, stage in ((cv_path, "train"), (metrics_path, "evaluate")):
        if not path.is_file():
            raise QuestError(f"{path}: not found; run `dvc repro {stage}` first")
    return ModelResult(name="mlp", folds=read_json(cv_path)["folds"], test=read_json(metrics_path)["mlp"]["test"])


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params,
    prepared: Prepared,
    results: list[ModelResult],
    table: pd.DataFrame,
    metric: str,
    outcome: dict,
    *,
    root: Path,
    model_path: Path,
    data_dir: Path,
    artifacts: list[Path],
) -> None:
    """A parent run per comparison; one child per model carrying the same keys (cv_mean, cv_std, test_score)."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    experiment = params.mlflow.experiment
    schema = prepared.schema
    store.start(experiment, root)
    client = MlflowClient()
    provenance = store.provenance_tags(root, data_dir)
    rows = table.set_index("model")
    mlp_run = store.mlp_run(experiment, model_path, root=root, data_dir=data_dir)
    with mlflow.start_run(
        run_name=f"comparison · {schema.dataset}",
        tags={
            **provenance,
            store.TAG_MODEL: "comparison",
            store.TAG_COMPARISON_MD5: file_md5(next(a for a in artifacts if a.name == paths.COMPARISON.name)),
            "quest.winner": outcome["winner"],
        },
    ) as parent:
        group = {store.TAG_GROUP: parent.info.run_id}
        mlflow.log_params({"metric": metric, "dataset": schema.dataset, "models": len(results), "seed": params.seed})
        best = outcome["best_baseline"]
        mlflow.log_metrics(
            {
                "mlp_cv_mean": float(rows.loc["mlp", "cv_mean"]),
                "best_baseline_cv_mean": float(rows.loc[best, "cv_mean"]),
                "mlp_minus_best_baseline": float(outcome["mlp_minus_best_baseline"]),
                "p_value_vs_best_baseline": float(outcome["p_value_vs_best_baseline"]),
            }
        )
        for artifact in artifacts:
            mlflow.log_artifact(str(artifact))
        fingerprint = store.environment(root, seed=params.seed, backend="scikit-learn", device="cpu")
        store.log_provenance(fingerprint, params)
        now = int(time.time() * 1000)
        for result in results:
            summary = {key: float(rows.loc[result.name, key]) for key in SHARED_KEYS}
            metrics = [Metric(key, value, now, 0) for key, value in summary.items() if np.isfinite(value)]
            metrics += [Metric("cv_fold_score", float(v), now, i) for i, v in enumerate(result.folds[metric], 1)]
            if result.name == "mlp":  # trained by train, test metrics by evaluate: add the comparison's keys only
                client.set_tag(mlp_run, store.TAG_PARENT, parent.info.run_id)
                client.set_tag(mlp_run, store.TAG_GROUP, parent.info.run_id)
                client.log_batch(mlp_run, metrics=metrics)
                continue
            metrics += [Metric(f"test_{k}", v, now, 0) for k, v in result.test.items() if np.isfinite(v)]
            tags = {**provenance, **group, store.TAG_MODEL: result.name}
            with mlflow.start_run(run_name=result.name, nested=True, tags=tags) as child:
                mlflow.log_params(
                    store.model_params(
                        result.name,
                        describe(result.name, schema.task, large=params.compare.large(len(prepared.y_train))),
                        task=schema.task,
                        dataset=schema.dataset,
                        folds=schema.folds,
                        seed=params.seed,
                    )
                )
                store.log_training_data(prepared.x_train, prepared.y_train, name=schema.dataset, data_dir=data_dir)
                store.log_provenance(fingerprint, params)
                client.log_batch(child.info.run_id, metrics=[*metrics, Metric("fit_seconds", result.seconds, now, 0)])
        name = params.mlflow.registered_model
        if name:
            report = next(a for a in artifacts if a.name == paths.COMPARISON_REPORT.name)
            with store.store_lock(root):  # a new version number is a read-then-write: one worker at a time
                registered = register_mlp(
                    name, experiment=experiment, mlp_run=mlp_run, outcome=outcome, description=report.read_text()
                )
            if registered:
                version, alias = registered
                mlflow.set_tag("quest.registered", f"{name} version {version} @ {alias}")
                print(f"compare: the MLP is {name} version {version}, alias {alias}", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest compare", main)
