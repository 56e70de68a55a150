"""Stage 2, train: cross-validate the Keras MLP on the shared folds, then fit the final model on the whole
training split and save it as models/mlp.keras with its history and resolved config beside it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from quest import paths, timing
from quest.data.artifacts import Prepared, read_prepared
from quest.errors import StoreFailure, run_cli, store_failure
from quest.evaluation.metrics import scores
from quest.files import file_md5, write_json, write_text
from quest.learners import backend
from quest.params import Params, TrainParams, load_params
from quest.tracking import store

KEPT_DIR = Path(".quest/unlogged")  # where a stage whose logging failed keeps what it made
SEED_STRIDE = 10007  # between a split's extra seeds: far from the next split's seed + split + 1


def cross_validate(
    prepared: Prepared,
    *,
    spec: TrainParams,
    seed: int,
    callbacks_for: Callable[[int], list] = lambda split: [],
) -> dict[str, list[float]]:
    """Per-metric scores of MLPs fitted on each shared fold's training rows and scored on its held-out rows.

    Every split trains `spec.seeds` networks (each its own seed; the split scores their mean). The fast engine
    trains all of them in one program; `callbacks_for(split)` reaches each of the split's networks.
    """
    from quest.learners.network import fit_mlps, plan_job, predict

    task = prepared.schema.task
    jobs, held_outs, callbacks = [], [], []
    for split, held_out in prepared.splits():
        rows = np.flatnonzero(~held_out)
        held_outs.append(held_out)
        for copy in range(spec.seeds):
            # Each split (and copy) its own, still seeded, initialisation; copy 0 keeps seed + split + 1.
            job_seed = seed + split + 1 + SEED_STRIDE * copy
            jobs.append(
                plan_job(
                    rows,
                    prepared.y_train,
                    task=task,
                    validation_fraction=spec.early_stopping.validation_fraction,
                    seed=job_seed,
                )
            )
            callbacks.append(callbacks_for(split))
    results = fit_mlps(
        prepared.x_train,
        prepared.y_train,
        jobs,
        task=task,
        n_classes=prepared.n_classes,
        spec=spec,
        callbacks=callbacks,
        label="CV",
    )
    per_metric: dict[str, list[float]] = {}
    for split, held_out in enumerate(held_outs):
        copies = results[split * spec.seeds : (split + 1) * spec.seeds]
        per_copy = [
            scores(task, prepared.y_train[held_out], predict(r.model, prepared.x_train[held_out], task=task))
            for r in copies
        ]
        for name in per_copy[0]:
            per_metric.setdefault(name, []).append(float(np.mean([s[name] for s in per_copy])))
    return per_metric


def history_csv(history: dict[str, list[float]]) -> str:
    names = sorted(history)
    rows = [",".join(["epoch", *names])]
    for epoch in range(len(history[names[0]])):
        rows.append(",".join([str(epoch + 1), *(repr(history[name][epoch]) for name in names)]))
    return "\n".join(rows) + "\n"


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = paths.stage_parser("stages.train", __doc__, "params", "data", "model", "cv_out")
    args = parser.parse_args(argv)

    params = load_params(args.params)
    prepared = read_prepared(args.data)
    device = backend.configure(params.train.backend, params.train.device, params.seed, params.train.data_parallel)
    print(f"train: device {device.describe()}", file=sys.stderr)
    root = paths.repo_root(args.params.parent)
    train_and_log(
        params, prepared, device=device, root=root, model_path=args.model, cv_path=args.cv_out, data_dir=args.data
    )


@timing.timed("mlflow")  # all but the training inside, which is compute
def train_and_log(
    params: Params,
    prepared: Prepared,
    *,
    device: backend.DeviceInfo,
    root: Path,
    model_path: Path,
    cv_path: Path,
    data_dir: Path,
) -> None:
    import keras
    import mlflow

    from quest.learners.callbacks import MlflowEpochLogger, Progress
    from quest.learners.network import fit_mlp, predict, save_mlp, without_tensorflow

    spec, schema = params.train, prepared.schema
    store.start(params.mlflow.experiment, root)
    tags = {
        store.TAG_MODEL: "mlp",
        **store.provenance_tags(root, data_dir, device=device.describe(), backend=device.backend),
        "quest.device_kind": device.kind,
        "quest.keras_version": keras.__version__,
    }
    # The outputs are written beside their places and take them only once MLflow has everything: a store
    # that fails mid-stage leaves the earlier outputs whole, and the new model is kept, not lost.
    outputs = [model_path, *(model_path.parent / p.name for p in paths.MODEL_SIDECARS), cv_path]
    for directory in {path.parent for path in outputs}:
        directory.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_staging(model_path.parent)
    staging = Path(tempfile.mkdtemp(dir=model_path.parent, prefix=f".train.{os.getpid()}.", suffix=".tmp"))
    staged = {final: staging / final.name for final in outputs}
    try:
        with mlflow.start_run(run_name="mlp", tags=tags) as run, store.killed_on_interrupt():
            estimator = f"Keras MLP {'-'.join(map(str, spec.hidden_layers))} {spec.activation}"
            mlflow.log_params(
                {
                    **store.model_params(
                        "mlp", estimator, task=schema.task, dataset=schema.dataset, folds=schema.folds, seed=params.seed
                    ),
                    **store.flatten("train", asdict(spec)),
                }
            )
            store.log_training_data(prepared.x_train, prepared.y_train, name=schema.dataset, data_dir=data_dir)
            splits = schema.folds * schema.repeats
            epochs = MlflowEpochLogger(run.info.run_id)
            with timing.phase("compute"):
                cv = cross_validate(
                    prepared,
                    spec=spec,
                    seed=params.seed,
                    # The fit engine reports each split as it goes; the fast engine, all networks at once, per block.
                    callbacks_for=lambda split: (
                        [Progress(f"split {split + 1}/{splits}", spec.epochs)] if spec.engine == "fit" else []
                    ),
                )
                final = fit_mlp(
                    prepared.x_train,
                    prepared.y_train,
                    task=schema.task,
                    n_classes=prepared.n_classes,
                    spec=spec,
                    seed=params.seed,
                    callbacks=[Progress("final", spec.epochs), epochs],
                )
            config = {
                "train": asdict(spec),
                "seed": params.seed,
                "backend": device.backend,
                "keras_version": keras.__version__,
                "device": device.describe(),
                "task": schema.task,
                "n_features": len(schema.features),
                "class_labels": schema.class_labels,
                "best_epoch": final.best_epoch,
                "epochs_run": final.epochs_run,
            }
            save_mlp(final.model, staged[model_path])
            write_json(staged[model_path.parent / paths.MODEL_CONFIG.name], config)
            fingerprint = store.environment(root, seed=params.seed, backend=device.backend, device=device.describe())
            write_json(staged[model_path.parent / paths.ENVIRONMENT.name], fingerprint)
            write_text(staged[model_path.parent / paths.HISTORY.name], history_csv(final.history))
            write_json(staged[cv_path], {"model": "mlp", "folds": cv})
            epochs.flush(strict=True)  # any epochs a busy store held back
            store.log_provenance(fingerprint, params)
            metric_summary = {f"cv_{name}_mean": float(np.mean(values)) for name, values in cv.items()}
            mlflow.log_metrics({"best_epoch": final.best_epoch, "epochs_run": final.epochs_run, **metric_summary})
            mlflow.log_dict(config, "config.json")
            example = prepared.x_train[:5]
            # No input_example= here: mlflow 3.17's keras flavour writes it before creating the model directory
            # and fails, so the example travels as a run artifact beside the model instead.
            with without_tensorflow():
                mlflow.keras.log_model(
                    final.model,
                    name="model",
                    signature=mlflow.models.infer_signature(example, predict(final.model, example, task=schema.task)),
                    pip_requirements=[f"keras=={keras.__version__}", _backend_requirement(device.backend)],
                )
            mlflow.log_dict({"columns": list(schema.features), "data": example.tolist()}, "model_input_example.json")
            mlflow.set_tag(store.TAG_MODEL_MD5, file_md5(staged[model_path]))
        for final_path, staged_path in staged.items():
            os.replace(staged_path, final_path)
    except Exception as error:
        reason = store_failure(error)
        if reason is None:
            raise
        kept = _keep(staging, root) if staged[model_path].is_file() else None
        saved = f"the trained model is kept in {kept}" if kept else "no model was trained yet"
        raise StoreFailure(
            f"the MLflow store or the disk failed: {reason}; {saved}; the earlier outputs are untouched"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    best = {name: f"{np.mean(values):.4f}±{np.std(values):.4f}" for name, values in cv.items()}
    print(
        f"train: CV {best}; final model best epoch {final.best_epoch}/{final.epochs_run} -> {model_path}",
        file=sys.stderr,
    )


def _remove_orphaned_staging(directory: Path) -> None:
    """Staging directories of train processes that are gone (killed with SIGKILL, or out of memory)."""
    for leftover in directory.glob(".train.*.tmp"):
        pid = leftover.name.split(".")[2]
        if pid.isdigit() and not store.alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _keep(staging: Path, root: Path) -> Path:
    """Move a stage's unpublished outputs to .quest/unlogged/train-<UTC time>/ under the repo root."""
    kept = root / KEPT_DIR / time.strftime("train-%Y%m%dT%H%M%SZ", time.gmtime())
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, kept)
    return kept.relative_to(root) if kept.is_relative_to(root) else kept


def _backend_requirement(name: str) -> str:
    from importlib.metadata import version

    return f"{name}=={version(name)}"


if __name__ == "__main__":
    run_cli("quest train", main)
