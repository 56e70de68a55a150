"""Stage 3, evaluate: score models/mlp.keras on the held-out test split; write the metrics, the confusion
matrix and ROC/PR curves (or residual plots for regression) as images and as DVC plot data."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from quest import paths, timing
from quest.data.artifacts import Prepared, read_prepared
from quest.errors import QuestError, run_cli
from quest.evaluation import plots
from quest.evaluation.metrics import scores
from quest.files import staged_into, write_json, write_text
from quest.learners import backend
from quest.params import load_params
from quest.tracking import store


def roc_pr_lines(y_true: np.ndarray, proba: np.ndarray, labels: tuple[str, ...]) -> tuple[dict, dict]:
    """ROC and PR lines: the positive class of a binary problem, else one-vs-rest per class."""
    classes = [1] if proba.shape[1] == 2 else list(range(proba.shape[1]))
    roc, pr = {}, {}
    for k in classes:
        positive = y_true == k
        if positive.all() or not positive.any():
            continue  # a curve needs both outcomes
        fpr, tpr, _ = skm.roc_curve(positive, proba[:, k])
        precision, recall, _ = skm.precision_recall_curve(positive, proba[:, k])
        name = labels[k]
        roc[f"{name} (AUC {skm.auc(fpr, tpr):.3f})"] = (fpr, tpr)
        pr[f"{name} (AP {skm.average_precision_score(positive, proba[:, k]):.3f})"] = (recall, precision)
    return roc, pr


def csv_table(header: list[str], columns: list[np.ndarray]) -> str:
    rows = [",".join(header)]
    rows += [",".join(_cell(value) for value in row) for row in zip(*columns, strict=True)]
    return "\n".join(rows) + "\n"


def _cell(value: object) -> str:
    return repr(float(value)) if isinstance(value, float | np.floating) else str(value)


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
        write_text(eval_dir / "predictions.csv", csv_table(["actual", "predicted"], [y_test, output]))
    return test_metrics, images


def load_model(path: Path):
    """Load the saved MLP with Keras' safe mode; a missing or damaged file is a clear error."""
    import keras

    if not path.is_file():
        raise QuestError(f"{path}: model not found; run `dvc repro train` first")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise QuestError(f"{path}: cannot load the model ({type(error).__name__}); re-run `dvc repro train`") from None


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("stages.evaluate", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    prepared = read_prepared(args.data)
    backend.configure(params.train.backend, params.train.device, params.seed)
    from quest.learners.network import predict

    model = load_model(args.model)
    output = predict(model, prepared.x_test, task=prepared.schema.task)
    root = paths.repo_root(args.params.parent)
    with staged_into(args.reports) as out:  # published only once MLflow has them
        test_metrics, images = write_evaluation(prepared, output, reports=out)
        write_json(out / paths.METRICS.name, {"mlp": {"test": test_metrics}})
        history = _read_history(args.model.parent / paths.HISTORY.name)
        if history:
            images.append(out / paths.EVAL_DIR.name / "training_curves.png")
            best_epoch = int(np.argmin(history["val_loss"])) + 1
            plots.training_curves(history, best_epoch, images[-1])
        log_to_mlflow(params.mlflow.experiment, root, args.model, args.data, test_metrics, images)
    shown = ", ".join(f"{name}={value:.4f}" for name, value in test_metrics.items())
    print(f"evaluate: MLP on the test split: {shown}", file=sys.stderr)


def _read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    names = lines[0].split(",")[1:]
    rows = [list(map(float, line.split(",")[1:])) for line in lines[1:]]
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


@timing.timed("mlflow")
def log_to_mlflow(
    experiment: str,
    root: Path,
    model_path: Path,
    data_dir: Path,
    test_metrics: dict[str, float],
    images: list[Path],
) -> None:
    """Add the test metrics and plots to the run that trained the model."""
    import mlflow

    store.start(experiment, root)
    run_id = store.mlp_run(experiment, model_path, root=root, data_dir=data_dir)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{name}": value for name, value in test_metrics.items() if np.isfinite(value)})
        for image in images:
            mlflow.log_artifact(str(image), artifact_path="plots")


if __name__ == "__main__":
    run_cli("quest evaluate", main)
