"""Stage 3, evaluate: score models/mlp.keras on the held-out test split; write the metrics, the confusion
matrix and ROC/PR curves (or residual plots for regression) as images and as DVC plot data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from quest.core import arguments, paths, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import read_history, staged_into, write_json, write_logged, write_text
from quest.data.artifacts import Prepared, Schema, read_prepared
from quest.evaluation import plots
from quest.evaluation.diagnostics import csv_table, roc_pr_lines
from quest.evaluation.metrics import scores
from quest.learners import backend
from quest.learners.registry import load_params
from quest.tracking import provenance, runs, store

PREDICTIONS = "predictions.csv"  # in reports/eval: the MLP's answer for every test row


def write_evaluation(prepared: Prepared, output: np.ndarray, *, reports: Path) -> tuple[dict[str, float], list[Path]]:
    """Test metrics plus the plot images and DVC plot data; returns the metrics and the images written."""
    schema, y_test = prepared.schema, prepared.y_test
    test_metrics = scores(schema.task, y_test, output)
    eval_dir = reports / paths.EVAL_DIR.name
    images: list[Path] = []
    if schema.task == "classification":
        labels = schema.class_labels
        predicted = output.argmax(axis=1)
        matrix = skm.confusion_matrix(y_test, predicted, labels=np.arange(len(labels)))
        images.append(eval_dir / "confusion_matrix.png")
        plots.confusion_matrix(matrix, labels, images[-1], title=f"MLP on {schema.dataset} (test)")
        names = np.asarray(labels)
        write_text(eval_dir / "confusion.csv", csv_table(["actual", "predicted"], [names[y_test], names[predicted]]))
        roc, pr = roc_pr_lines(y_test, output, labels)
        images += [eval_dir / "roc.png", eval_dir / "pr.png"]
        plots.curves(
            roc,
            images[-2],
            title="ROC (test)",
            xlabel="false positive rate",
            ylabel="true positive rate",
            diagonal=True,
        )
        plots.curves(pr, images[-1], title="Precision-recall (test)", xlabel="recall", ylabel="precision")
        first_roc, first_pr = next(iter(roc.values())), next(iter(pr.values()))
        write_text(eval_dir / "roc.csv", csv_table(["fpr", "tpr"], list(first_roc)))
        write_text(eval_dir / "pr.csv", csv_table(["recall", "precision"], list(first_pr)))
    else:
        images.append(eval_dir / "residuals.png")
        plots.residuals(y_test, output, images[-1], title=f"MLP on {schema.dataset}")
    write_text(eval_dir / PREDICTIONS, predictions_csv(schema, y_test, output))
    return test_metrics, images


def predictions_csv(schema: Schema, y_test: np.ndarray, output: np.ndarray) -> str:
    """Every test row's answer as the served model and `quest predict` give it: the label and each class's
    probability, or the value; with the actual value first."""
    if schema.task == "regression":
        return csv_table(["actual", *schema.outputs()], [y_test, output])
    labels = np.asarray(schema.class_labels)
    columns = [labels[y_test], labels[output.argmax(axis=1)], *output.T]
    return csv_table(["actual", *schema.outputs()], columns)


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.evaluate", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)

    params = load_params(args.params, table=args.table)
    prepared = read_prepared(args.data)
    backend.configure(params.train.backend, params.train.device, params.seed)
    from quest.learners.networks import load_mlp, predict
    from quest.learners.registry import keras_classes

    model = load_mlp(args.model, keras_classes())
    inputs = model.input_shape[-1]
    if inputs != prepared.x_test.shape[1]:
        raise QuestError(
            f"{args.model}: the model takes {inputs} inputs but {args.data} holds {prepared.x_test.shape[1]} "
            "features: it was trained on another prepare; run `dvc repro train`"
        )
    output = predict(model, prepared.x_test, task=prepared.schema.task)
    if not np.isfinite(output).all():
        raise QuestError(f"{args.model}: the model gives non-finite outputs on the test split; run `dvc repro train`")
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with staged_into(args.reports) as out:  # published only once MLflow has them
        test_metrics, images = write_evaluation(prepared, output, reports=out)
        write_json(out / paths.METRICS.name, {"mlp": {"test": test_metrics}})
        history = read_history(args.model.parent / paths.HISTORY.name)
        if history:
            images.append(out / paths.EVAL_DIR.name / "training_curves.png")
            best_epoch = int(np.argmin(history["val_loss"])) + 1
            plots.training_curves(history, best_epoch, images[-1])
        log_to_mlflow(params.mlflow.experiment, origin, args.model, test_metrics, images)
        logged = [out / paths.METRICS.name, out / paths.EVAL_DIR.name]
        write_logged(out / paths.LOGGED.format(stage="evaluate"), experiment=params.mlflow.experiment, outputs=logged)
    shown = ", ".join(f"{name}={value:.4f}" for name, value in test_metrics.items())
    print(f"evaluate: MLP on the test split: {shown}", file=sys.stderr)


@timing.timed("mlflow")
def log_to_mlflow(
    experiment: str,
    origin: provenance.Provenance,
    model_path: Path,
    test_metrics: dict[str, float],
    images: list[Path],
) -> None:
    """Add the test metrics and plots to the run that trained the model."""
    import mlflow

    store.start(experiment, origin)
    run_id = runs.mlp_run(experiment, model_path, origin)
    with runs.reopened(run_id):
        mlflow.log_metrics({f"test_{name}": value for name, value in test_metrics.items() if np.isfinite(value)})
        for image in images:
            mlflow.log_artifact(str(image), artifact_path="plots")


if __name__ == "__main__":
    run_cli("quest evaluate", main)
