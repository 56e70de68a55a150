"""Stage 2, train: cross-validate the Keras MLP on the shared folds, then fit the final model on the whole
training split and save it as models/mlp.keras with its history and resolved config beside it."""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quest.core import arguments, interrupts, paths, timing
from quest.core.errors import StoreFailure, run_cli, store_failure
from quest.core.files import file_md5, history_csv, write_json, write_text
from quest.core.processes import alive
from quest.data.artifacts import Prepared, read_prepared
from quest.evaluation import scoring
from quest.learners.base import Problem
from quest.learners.callbacks import EpochHook, Progress
from quest.learners.mlp.learner import MLP
from quest.learners.registry import load_params
from quest.params import Params
from quest.tracking import provenance, runs, store
from quest.tracking.epochs import MlflowEpochLogger
from quest.tracking.tags import TAG_KIND, TAG_MODEL, TAG_MODEL_MD5

if TYPE_CHECKING:
    from quest.learners.backend import DeviceInfo
    from quest.learners.jobs import FitResult

KEPT_DIR = Path(".quest/unlogged")  # where a stage whose logging failed keeps what it made


@dataclass(frozen=True)
class Trained:
    cv: dict[str, list[float]]  # per metric, one score per shared split
    final: FitResult  # the network fitted on the whole training split
    config: dict  # the resolved config, saved beside the model


def train(
    params: Params, prepared: Prepared, learner: MLP, *, device: DeviceInfo, hooks: Sequence[EpochHook] = ()
) -> Trained:
    """The MLP's CV scores on the shared splits (all its networks trained together by the fast engine), then
    the final network on the whole training split, through the scoring path every fit takes; `hooks` watch its
    epochs."""
    import keras

    spec, schema, problem = params.train, prepared.schema, Problem.of(prepared)
    cv = scoring.cross_validate(learner, prepared, problem, seed=params.seed, label="CV")
    watch = [Progress("final", spec.epochs), *hooks]
    final = scoring.final_fit(learner, prepared, problem, seed=params.seed, hooks=watch)
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
    return Trained(cv=cv, final=final, config=config)


@dataclass(frozen=True)
class Outputs:
    """Where train writes: the model, the three files beside it, the CV scores."""

    model: Path
    cv: Path

    @property
    def config(self) -> Path:
        return self.model.parent / paths.MODEL_CONFIG.name

    @property
    def environment(self) -> Path:
        return self.model.parent / paths.ENVIRONMENT.name

    @property
    def history(self) -> Path:
        return self.model.parent / paths.HISTORY.name

    def all(self) -> list[Path]:
        return [self.model, self.config, self.history, self.environment, self.cv]

    def staged_in(self, directory: Path) -> Outputs:
        return Outputs(model=directory / self.model.name, cv=directory / self.cv.name)


def write_outputs(out: Outputs, trained: Trained, fingerprint: dict) -> None:
    from quest.learners.networks import save_mlp

    save_mlp(trained.final.model, out.model)
    write_json(out.config, trained.config)
    write_json(out.environment, fingerprint)
    write_text(out.history, history_csv(trained.final.history))
    write_json(out.cv, {"model": "mlp", "folds": trained.cv})


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.train", __doc__, "params", "data", "model", "cv_out")
    args = parser.parse_args(argv)

    params = load_params(args.params, table=args.table)
    prepared = read_prepared(args.data)
    learner = MLP(params.train, seed=params.seed)
    device = learner.configure()
    print(f"train: device {device.describe()}", file=sys.stderr)
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with timing.phase("mlflow"):
        store.start(params.mlflow.experiment, origin)
    outputs = Outputs(model=args.model, cv=args.cv_out)
    # The outputs are written beside their places and take them only once MLflow has everything: a store
    # that fails mid-stage leaves the earlier outputs whole, and the new model is kept, not lost.
    with (
        published_when_logged(outputs, origin.root) as staged,
        timing.phase("mlflow"),
        training_run(params, prepared, learner, device, origin, data_dir=args.data) as run_id,
    ):
        epochs = MlflowEpochLogger(run_id)
        with timing.phase("compute"), interrupts.during("training the MLP"):
            trained = train(params, prepared, learner, device=device, hooks=[epochs])
        fingerprint = origin.fingerprint(seed=params.seed, backend=device.backend, device=device.describe())
        write_outputs(staged, trained, fingerprint)
        epochs.flush(strict=True)  # any epochs a busy store held back
        log_results(params, prepared, trained, fingerprint, device=device, staged=staged, data_dir=args.data)
    best = {name: f"{np.mean(values):.4f}±{np.std(values):.4f}" for name, values in trained.cv.items()}
    print(
        f"train: CV {best}; final model best epoch {trained.final.best_epoch}/{trained.final.epochs_run} "
        f"-> {args.model}",
        file=sys.stderr,
    )


@contextmanager
def training_run(
    params: Params,
    prepared: Prepared,
    learner: MLP,
    device: DeviceInfo,
    origin: provenance.Provenance,
    *,
    data_dir: Path,
) -> Iterator[str]:
    """The MLP's MLflow run, open while it trains, with its params and training data logged; yields its id."""
    import keras
    import mlflow

    spec, schema = params.train, prepared.schema
    tags = {
        TAG_MODEL: learner.name,
        TAG_KIND: learner.kind,
        **origin.tags(device=device.describe(), backend=device.backend),
        "quest.device_kind": device.kind,
        "quest.keras_version": keras.__version__,
    }
    with mlflow.start_run(run_name="mlp", tags=tags) as run, runs.killed_on_interrupt(), runs.failed_with_reason():
        estimator = f"Keras MLP {'-'.join(map(str, spec.hidden_layers))} {spec.activation}"
        model = runs.model_params(
            "mlp",
            estimator,
            task=schema.task,
            dataset=schema.dataset,
            folds=schema.folds,
            seed=params.seed,
            split=schema.split_param,
        )
        mlflow.log_params({**model, **runs.flatten("train", asdict(spec))})
        runs.log_training_data(prepared.x_train, prepared.y_train, name=schema.dataset, data_dir=data_dir)
        yield run.info.run_id


def log_results(
    params: Params,
    prepared: Prepared,
    trained: Trained,
    fingerprint: dict,
    *,
    device: DeviceInfo,
    staged: Outputs,
    data_dir: Path,
) -> None:
    """Into the active run: provenance, the CV summary, the config, the model that takes raw rows (the
    network with the fitted preprocessing, quest.commands.serve) and the network's hash."""
    import mlflow

    from quest.tracking import models

    runs.log_provenance(fingerprint, params)
    final = trained.final
    summary = {f"cv_{name}_mean": float(np.mean(values)) for name, values in trained.cv.items()}
    mlflow.log_metrics({"best_epoch": final.best_epoch, "epochs_run": final.epochs_run, **summary})
    mlflow.log_dict(trained.config, "config.json")
    artifacts = {
        models.NETWORK: staged.model,
        models.PREPROCESSING: data_dir / paths.PREPROCESSING,
        models.SCHEMA: data_dir / paths.SCHEMA,
        models.CONFIG: staged.config,
    }
    models.log_raw_rows_model(artifacts, prepared.schema, requirements=models.requirements(device.backend))
    mlflow.set_tag(TAG_MODEL_MD5, file_md5(staged.model))


@contextmanager
def published_when_logged(outputs: Outputs, root: Path) -> Iterator[Outputs]:
    """Staged places for `outputs`, beside them; they replace the outputs only when the block succeeds.

    When the tracking store or the disk fails, the earlier outputs stay as they were, the model just trained
    moves to .quest/unlogged/, and the stage ends with a StoreFailure (exit 75) saying so.
    """
    for directory in {path.parent for path in outputs.all()}:
        directory.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_staging(outputs.model.parent)
    staging = Path(tempfile.mkdtemp(dir=outputs.model.parent, prefix=f".train.{os.getpid()}.", suffix=".tmp"))
    staged = outputs.staged_in(staging)
    try:
        with interrupts.cleanup(functools.partial(shutil.rmtree, staging, ignore_errors=True)):
            yield staged
            with interrupts.publishing():  # a signal now waits for every output to be in place
                for final, path in zip(outputs.all(), staged.all(), strict=True):
                    os.replace(path, final)
    except Exception as error:
        reason = store_failure(error)
        if reason is None:
            raise
        kept = _keep(staging, root) if staged.model.is_file() else None
        saved = f"the trained model is kept in {kept}" if kept else "no model was trained yet"
        raise StoreFailure(
            f"the MLflow store or the disk failed: {reason}; {saved}; the earlier outputs are untouched"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_orphaned_staging(directory: Path) -> None:
    """Staging directories of train processes that are gone (killed with SIGKILL, or out of memory)."""
    for leftover in directory.glob(".train.*.tmp"):
        pid = leftover.name.split(".")[2]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _keep(staging: Path, root: Path) -> Path:
    """Move a stage's unpublished outputs to .quest/unlogged/train-<UTC time>/ under the repo root."""
    kept = root / KEPT_DIR / time.strftime("train-%Y%m%dT%H%M%SZ", time.gmtime())
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, kept)
    return kept.relative_to(root) if kept.is_relative_to(root) else kept


if __name__ == "__main__":
    run_cli("quest train", main)
