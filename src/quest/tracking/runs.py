"""Logging to runs and finding them again: the params every model run carries, the training data, the
provenance artifacts, the run that trained a saved model."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quest.core.errors import QuestError, Terminated, first_line
from quest.core.files import file_md5
from quest.core.processes import this_process
from quest.tracking.provenance import Provenance
from quest.tracking.tags import TAG_FAILURE, TAG_MODEL, TAG_MODEL_MD5, TAG_PROCESS

if TYPE_CHECKING:
    from quest.params import Params


@contextmanager
def killed_on_interrupt() -> Iterator[None]:
    """Inside an active run: Ctrl-C or SIGTERM ends it KILLED (MLflow would say FAILED), then goes on up."""
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        import mlflow

        mlflow.end_run(status="KILLED")
        raise


@contextmanager
def failed_with_reason() -> Iterator[None]:
    """Inside an active run: a user error (a network that diverged) tags the run with its one line before the
    run ends FAILED, so the UI says why."""
    try:
        yield
    except QuestError as error:
        import mlflow

        mlflow.set_tag(TAG_FAILURE, first_line(error))
        raise


@contextmanager
def reopened(run_id: str) -> Iterator[Any]:
    """The finished run `run_id`, active again for this process to add to, then FINISHED again. The run names
    this process first: RUNNING under a tag naming the process that created it, gone by now, another worker's
    store.end_orphans would take it for a run that process left behind and end it KILLED."""
    import mlflow

    mlflow.MlflowClient().set_tag(run_id, TAG_PROCESS, this_process())
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def log_provenance(fingerprint: dict, params: Params) -> None:
    """The environment fingerprint and the whole resolved params.yaml, as artifacts of the active run."""
    import mlflow

    mlflow.log_dict(fingerprint, "environment.json")
    mlflow.log_dict(params.as_dict(), "params.json")


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested params as MLflow's flat `a.b.c` keys; lists as their YAML-ish text."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    if isinstance(value, list | tuple):
        return {prefix: "[" + ", ".join(map(str, value)) + "]"}
    return {prefix: value}


def find_run(experiment: str, tags: Mapping[str, str]) -> str | None:
    """The newest run of `experiment` carrying all `tags`, or None."""
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return None
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = mlflow.search_runs(
        experiment_ids=[found.experiment_id],
        filter_string=query,
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


def model_params(
    model: str, estimator: str, *, task: str, dataset: str, folds: int, seed: int, split: str
) -> dict[str, object]:
    """The params every model run carries, so the UI's compare view lines the MLP up with each baseline; `split`
    says how the rows were divided (Schema.split_param)."""
    return {
        "model": model,
        "estimator": estimator,
        "task": task,
        "dataset": dataset,
        "folds": folds,
        "seed": seed,
        "split": split,
    }


def log_training_data(x: np.ndarray, y: np.ndarray, *, name: str, data_dir: Path) -> None:
    """The training split as the active run's input dataset (MLflow computes its digest)."""
    import mlflow

    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types; either is right
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_numpy(x, targets=y, name=name, source=str(data_dir.resolve()))
    mlflow.log_input(dataset, context="training")


def mlp_run(experiment: str, model_path: Path, provenance: Provenance) -> str:
    """The run that trained `model_path` (found by the file's hash), or a new one if that run is gone,
    e.g. when the model came from `dvc pull` and was trained on another machine."""
    from mlflow.tracking import MlflowClient

    identity = {TAG_MODEL: "mlp", TAG_MODEL_MD5: file_md5(model_path)}
    found = find_run(experiment, identity)
    if found:
        return found
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    created = client.create_run(experiment_id, run_name="mlp", tags={**identity, **provenance.tags()})
    client.set_terminated(created.info.run_id)
    return created.info.run_id
