"""The comparison in MLflow: a parent run per comparison with its answer, one child run per compared model
carrying the keys every model run carries (cv_mean, cv_std, test_score, ...) and its split scores, the MLP's
own run (from train) joined to the group, and a network entrant's final fit as a model that takes raw rows.

It takes plain values (tracking/ sits below evaluation/): the compare stage says what its comparison found in
a `Headline` and an `Entrant` per model.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quest.core import paths
from quest.core.files import write_json
from quest.data.artifacts import Prepared
from quest.params import Params
from quest.tracking import provenance, runs
from quest.tracking.tags import TAG_COMPARISON_MD5, TAG_GROUP, TAG_KIND, TAG_MODEL, TAG_PARENT


@dataclass(frozen=True)
class Headline:
    """What the parent run says: the comparison's answer and the files it logs."""

    metric: str
    models: int
    winner: str
    words: str  # the answer in words (quest.answer)
    outcome: str  # better / equivalent / worse / unclear (quest.outcome)
    settings: Mapping[str, object]  # rope, probability, best_neural, best_classic: logged as params
    judged: Mapping[str, float]  # the headline pair's difference, p_better, p_equivalent, p_worse, p_value
    best_cv_means: Mapping[str, float]  # best_neural_cv_mean, best_classic_cv_mean
    skipped: Mapping[str, str]  # models left out before they trained, and why
    files: Sequence[Path]  # the charts, the report and the table, logged as artifacts
    comparison_md5: str  # of comparison.csv, as published


@dataclass(frozen=True)
class Entrant:
    """One compared model's child run, or, for the subject (the MLP, logged by train), what joins its run."""

    name: str
    kind: str
    description: str
    shared: Mapping[str, float]  # its row's keys every model run carries
    folds: Sequence[float]  # its score on each shared split, in the comparison's metric
    test: Mapping[str, float]  # every test metric
    seconds: float
    # The final fit's network, where the model is one: `save(path)` writes it in Keras' format; `settings` go
    # into its config.
    save: Callable[[Path], None] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@contextmanager
def comparison_run(
    params: Params,
    prepared: Prepared,
    headline: Headline,
    entrants: Sequence[Entrant],
    *,
    origin: provenance.Provenance,
    subject: str,
    subject_run: str,
    data_dir: Path,
) -> Iterator[str]:
    """The parent run and a child per entrant (the subject's own run joins the group instead), in the active
    experiment; yields the parent's id while it is still the active run, for the caller's last tags."""
    import mlflow

    skipped = "; ".join(f"{name}: {why}" for name, why in headline.skipped.items())[:5000]
    tags = {
        **origin.tags(),
        TAG_MODEL: "comparison",
        TAG_COMPARISON_MD5: headline.comparison_md5,
        "quest.winner": headline.winner,
        **({"quest.skipped": skipped} if skipped else {}),
    }
    with mlflow.start_run(run_name=f"comparison · {prepared.schema.dataset}", tags=tags) as parent:
        _log_headline(params, prepared, headline)
        fingerprint = origin.fingerprint(seed=params.seed, backend="scikit-learn", device="cpu")
        runs.log_provenance(fingerprint, params)
        now = int(time.time() * 1000)
        for entrant in entrants:
            metrics = _shared_metrics(entrant, now)
            if entrant.name == subject:  # trained by train, tested by evaluate: add the shared keys only
                _join_group(subject_run, parent.info.run_id, metrics)
                continue
            tags = {**origin.tags(), TAG_GROUP: parent.info.run_id, TAG_MODEL: entrant.name, TAG_KIND: entrant.kind}
            with mlflow.start_run(run_name=entrant.name, nested=True, tags=tags) as child:
                run_id = child.info.run_id
                logged = {"now": now, "run_id": run_id, "fingerprint": fingerprint, "data_dir": data_dir}
                _log_entrant(params, prepared, entrant, metrics, **logged)
                if entrant.save is not None:
                    _log_network(params, prepared, entrant, data_dir=data_dir)
        yield parent.info.run_id


def _log_headline(params: Params, prepared: Prepared, headline: Headline) -> None:
    """The parent run's params, headline metrics and the comparison's files."""
    import mlflow

    mlflow.log_params(
        {
            "metric": headline.metric,
            "dataset": prepared.schema.dataset,
            "models": headline.models,
            "seed": params.seed,
            **headline.settings,
        }
    )
    mlflow.set_tags({"quest.answer": headline.words, "quest.outcome": headline.outcome})
    mlflow.log_metrics(
        {**headline.best_cv_means, **{f"neural_vs_classic_{key}": value for key, value in headline.judged.items()}}
    )
    for path in headline.files:
        mlflow.log_artifact(str(path))


def _shared_metrics(entrant: Entrant, now: int) -> list:
    """The keys every model run carries, so MLflow's compare view lines them up, and the per-split scores."""
    from mlflow.entities import Metric

    metrics = [Metric(key, value, now, 0) for key, value in entrant.shared.items() if math.isfinite(value)]
    return metrics + [Metric("cv_fold_score", float(v), now, i) for i, v in enumerate(entrant.folds, 1)]


def _join_group(run_id: str, parent_id: str, metrics: list) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, TAG_PARENT, parent_id)
    client.set_tag(run_id, TAG_GROUP, parent_id)
    client.log_batch(run_id, metrics=metrics)


def _log_entrant(
    params: Params,
    prepared: Prepared,
    entrant: Entrant,
    metrics: list,
    *,
    now: int,
    run_id: str,
    fingerprint: dict,
    data_dir: Path,
) -> None:
    """One compared model's child run: the params every model run carries, its data, test scores and time."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    schema = prepared.schema
    described = {"task": schema.task, "dataset": schema.dataset, "folds": schema.folds, "seed": params.seed,
                 "split": schema.split_param}  # fmt: skip
    mlflow.log_params(runs.model_params(entrant.name, entrant.description, **described))
    runs.log_training_data(prepared.x_train, prepared.y_train, name=schema.dataset, data_dir=data_dir)
    runs.log_provenance(fingerprint, params)
    tests = [Metric(f"test_{k}", v, now, 0) for k, v in entrant.test.items() if math.isfinite(v)]
    MlflowClient().log_batch(run_id, metrics=[*metrics, *tests, Metric("fit_seconds", entrant.seconds, now, 0)])


def _log_network(params: Params, prepared: Prepared, entrant: Entrant, *, data_dir: Path) -> None:
    """A network entrant's final fit (the whole training split) as an MLflow model that takes raw rows, as the
    MLP's is: the network behind the preprocessing prepare fitted, served by quest.commands.serve."""
    from quest.tracking import models

    assert entrant.save is not None
    with tempfile.TemporaryDirectory(prefix="quest-network-") as scratch:
        folder = Path(scratch)
        entrant.save(folder / "network.keras")
        config = {
            "model": entrant.name,
            "backend": params.train.backend,
            "seed": params.seed,
            "train": {"device": params.train.device},  # where quest.commands.serve runs it, as for the MLP
            "settings": dict(entrant.settings),
        }
        write_json(folder / "config.json", config)
        artifacts = {
            models.NETWORK: folder / "network.keras",
            models.PREPROCESSING: data_dir / paths.PREPROCESSING,
            models.SCHEMA: data_dir / paths.SCHEMA,
            models.CONFIG: folder / "config.json",
        }
        models.log_raw_rows_model(artifacts, prepared.schema, requirements=models.requirements(params.train.backend))
