"""Stage 4, compare: cross-validate every baseline on the folds the MLP used, score each on the same test
split, and write the comparison table, a bar chart with error bars and a short report."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from quest import paths, plots, tracking
from quest.baselines import describe, make_baseline, model_output
from quest.errors import QuestError, run_cli
from quest.io import read_json, write_json, write_text
from quest.metrics import LOWER_IS_BETTER, primary_metric, scores
from quest.params import Params, load_params
from quest.prepared import Prepared, read_prepared

COLUMNS = ["model", "metric", "cv_mean", "cv_std", "test_score"]


@dataclass(frozen=True)
class ModelResult:
    name: str
    folds: dict[str, list[float]]  # metric -> one score per shared fold
    test: dict[str, float]  # metric -> held-out test score
    seconds: float = 0.0  # wall time of CV + final fit (logged, never written to DVC-tracked files)


def evaluate_baseline(name: str, prepared: Prepared, *, seed: int) -> ModelResult:
    """CV on the shared folds, then a fit on the whole training split scored on the test split."""
    started = time.perf_counter()
    task, n_classes, n_features = prepared.schema.task, prepared.n_classes, prepared.x_train.shape[1]
    per_metric: dict[str, list[float]] = {}
    for fold in range(prepared.schema.folds):
        held_out = prepared.folds == fold
        estimator = make_baseline(name, task=task, n_features=n_features, seed=seed)
        estimator.fit(prepared.x_train[~held_out], prepared.y_train[~held_out])
        output = model_output(estimator, prepared.x_train[held_out], task=task, n_classes=n_classes)
        for metric, value in scores(task, prepared.y_train[held_out], output).items():
            per_metric.setdefault(metric, []).append(value)
    estimator = make_baseline(name, task=task, n_features=n_features, seed=seed)
    estimator.fit(prepared.x_train, prepared.y_train)
    test = scores(task, prepared.y_test, model_output(estimator, prepared.x_test, task=task, n_classes=n_classes))
    return ModelResult(name=name, folds=per_metric, test=test, seconds=time.perf_counter() - started)


def comparison_table(results: list[ModelResult], metric: str) -> pd.DataFrame:
    """One row per model: the primary metric's CV mean and (population) std over folds, and the test score."""
    rows = [
        {
            "model": result.name,
            "metric": metric,
            "cv_mean": float(np.mean(result.folds[metric])),
            "cv_std": float(np.std(result.folds[metric])),
            "test_score": float(result.test[metric]),
        }
        for result in results
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict(table: pd.DataFrame, metric: str) -> dict[str, object]:
    """Winner by CV mean, the best baseline, and how far the MLP is from it, in CV std units too."""
    lower = metric in LOWER_IS_BETTER
    ranked = table.sort_values("cv_mean", ascending=lower, kind="stable")
    baselines = ranked[ranked["model"] != "mlp"]
    mlp = table.set_index("model").loc["mlp"]
    best = baselines.iloc[0]
    margin = float(mlp["cv_mean"] - best["cv_mean"]) * (-1 if lower else 1)  # > 0: the MLP is better
    spread = float(np.hypot(mlp["cv_std"], best["cv_std"])) or float("nan")
    return {
        "winner": str(ranked.iloc[0]["model"]),
        "best_baseline": str(best["model"]),
        "mlp_minus_best_baseline": margin,
        "margin_in_std": margin / spread if np.isfinite(spread) else float("nan"),
    }


def report_markdown(table: pd.DataFrame, metric: str, dataset: str, task: str, outcome: dict) -> str:
    lower = metric in LOWER_IS_BETTER
    shown = table.sort_values("cv_mean", ascending=lower, kind="stable")
    lines = [
        f"# quest: does an MLP beat the classic models on `{dataset}`?",
        "",
        f"Task: {task}. Metric: **{metric}** ({'lower' if lower else 'higher'} is better). Every model saw the "
        "same cross-validation folds of the training split and the same held-out test split.",
        "",
        "| model | what | CV mean ± std | test |",
        "|---|---|---|---|",
    ]
    for row in shown.itertuples():
        what = "Keras MLP" if row.model == "mlp" else describe(row.model, task)
        name = f"**{row.model}**" if row.model == outcome["winner"] else row.model
        lines.append(f"| {name} | {what} | {row.cv_mean:.4f} ± {row.cv_std:.4f} | {row.test_score:.4f} |")
    margin, in_std = outcome["mlp_minus_best_baseline"], outcome["margin_in_std"]
    side = "ahead of" if margin > 0 else ("level with" if margin == 0 else "behind")
    lines += [
        "",
        f"**Winner (CV mean): {outcome['winner']}.** The MLP is {abs(margin):.4f} {side} the best baseline, "
        f"{outcome['best_baseline']} ({abs(in_std):.1f} combined fold standard deviations).",
        "",
    ]
    if abs(in_std) < 1:
        lines.append(
            "The gap is smaller than the fold-to-fold spread: on this data the MLP and the best baseline are not "
            "distinguishable by these numbers."
        )
    else:
        lines.append("The gap is larger than the fold-to-fold spread; more folds or repeats would firm it up.")
    lines += ["", "![comparison](comparison.png)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("compare", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    prepared = read_prepared(args.data)
    metric = primary_metric(params.compare.metric, prepared.schema.task)
    mlp = _read_mlp(args.reports)
    results = [mlp]
    for name in params.compare.baselines:
        result = evaluate_baseline(name, prepared, seed=params.seed)
        folds = result.folds[metric]
        print(
            f"compare: {name:<10} CV {metric} {np.mean(folds):.4f} ± {np.std(folds):.4f}  "
            f"test {result.test[metric]:.4f}  ({result.seconds:.1f}s)",
            file=sys.stderr,
        )
        results.append(result)

    table = comparison_table(results, metric)
    outcome = verdict(table, metric)
    write_text(
        args.reports / paths.COMPARISON.name, table.to_csv(index=False, float_format="%.6f", lineterminator="\n")
    )
    write_json(args.reports / "cv_folds.json", {r.name: r.folds for r in results})
    write_json(args.reports / "verdict.json", {"metric": metric, **outcome})
    chart = args.reports / "comparison.png"
    plots.comparison_bars(
        table["model"], table["cv_mean"], table["cv_std"], table["test_score"], metric=metric, path=chart
    )
    report = args.reports / "comparison.md"
    write_text(report, report_markdown(table, metric, prepared.schema.dataset, prepared.schema.task, outcome))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=sys.stderr)
    print(f"compare: winner {outcome['winner']}; report {report}", file=sys.stderr)

    root = paths.repo_root(args.params.parent)
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
        artifacts=[chart, report, args.reports / paths.COMPARISON.name],
    )


def _read_mlp(reports: Path) -> ModelResult:
    cv_path, metrics_path = reports / paths.MLP_CV.name, reports / paths.METRICS.name
    for path, stage in ((cv_path, "train"), (metrics_path, "evaluate")):
        if not path.is_file():
            raise QuestError(f"{path}: not found; run `dvc repro {stage}` first")
    return ModelResult(name="mlp", folds=read_json(cv_path)["folds"], test=read_json(metrics_path)["mlp"]["test"])


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
    tracking.start(experiment, root)
    client = MlflowClient()
    provenance = tracking.provenance_tags(root, data_dir)
    rows = table.set_index("model")
    mlp_run = tracking.mlp_run(experiment, model_path, root=root, data_dir=data_dir)
    with mlflow.start_run(
        run_name=f"comparison · {schema.dataset}",
        tags={**provenance, tracking.TAG_MODEL: "comparison", "quest.winner": outcome["winner"]},
    ) as parent:
        group = {tracking.TAG_GROUP: parent.info.run_id}
        mlflow.log_params({"metric": metric, "dataset": schema.dataset, "models": len(results), "seed": params.seed})
        best = outcome["best_baseline"]
        mlflow.log_metrics(
            {
                "mlp_cv_mean": float(rows.loc["mlp", "cv_mean"]),
                "best_baseline_cv_mean": float(rows.loc[best, "cv_mean"]),
                "mlp_minus_best_baseline": float(outcome["mlp_minus_best_baseline"]),
            }
        )
        for artifact in artifacts:
            mlflow.log_artifact(str(artifact))
        fingerprint = tracking.environment(root, seed=params.seed, backend="scikit-learn", device="cpu")
        mlflow.log_dict(fingerprint, "environment.json")
        now = int(time.time() * 1000)
        for result in results:
            metrics = [
                Metric(key, float(rows.loc[result.name, key]), now, 0) for key in ("cv_mean", "cv_std", "test_score")
            ]
            metrics += [Metric(f"test_{k}", v, now, 0) for k, v in result.test.items() if np.isfinite(v)]
            metrics += [Metric("cv_fold_score", float(v), now, i) for i, v in enumerate(result.folds[metric], 1)]
            if result.name == "mlp":  # trained and logged by the train stage: file it under this comparison
                client.set_tag(mlp_run, tracking.TAG_PARENT, parent.info.run_id)
                client.set_tag(mlp_run, tracking.TAG_GROUP, parent.info.run_id)
                client.log_batch(mlp_run, metrics=metrics)
                continue
            tags = {**provenance, **group, tracking.TAG_MODEL: result.name}
            with mlflow.start_run(run_name=result.name, nested=True, tags=tags) as child:
                mlflow.log_params(
                    tracking.model_params(
                        result.name,
                        describe(result.name, schema.task),
                        task=schema.task,
                        dataset=schema.dataset,
                        folds=schema.folds,
                        seed=params.seed,
                    )
                )
                tracking.log_training_data(prepared.x_train, prepared.y_train, name=schema.dataset, data_dir=data_dir)
                mlflow.log_dict(fingerprint, "environment.json")
                client.log_batch(child.info.run_id, metrics=[*metrics, Metric("fit_seconds", result.seconds, now, 0)])


if __name__ == "__main__":
    run_cli("quest compare", main)
