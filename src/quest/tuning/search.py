"""Equal-budget random search (Optuna) for the MLP and every baseline: the work of the optional tune stage.

The `tune` stage (quest.tune) imports this only when the stage is on: its libraries are slow to load.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quest import paths, timing
from quest.data.artifacts import Prepared, read_prepared, validation_split
from quest.errors import QuestError
from quest.evaluation import plots
from quest.evaluation.metrics import LOWER_IS_BETTER, primary_metric, scores
from quest.files import atomic_dir, dumps_json, dvc_md5, write_json, write_text
from quest.learners.baselines import REQUIRES, available, make_baseline, model_output
from quest.params import Params, TrainParams
from quest.tracking import store
from quest.tuning import studies

if TYPE_CHECKING:
    import optuna

    from quest.learners.backend import DeviceInfo

TRIALS_FILE, BUDGET_FILE, CHART_FILE = "trials.csv", "budget.csv", "budget.png"
TRIALS_COLUMNS = ["model", "trial", "validation", "test", "best_so_far_test", "params"]
LAYERS_SEPARATOR = "-"  # [64, 32] travels through Optuna as "64-32": its categorical choices must be scalars


@dataclass(frozen=True)
class TuneData:
    """The inner split a trial fits and is scored on, and the test split it is reported on."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int


@dataclass(frozen=True)
class TrialResult:
    trial: int  # 1-based position in the model's budget
    values: dict[str, Any]  # the sampled hyperparameters, decoded (hidden_layers as a tuple of ints)
    validation: float  # NaN when the trial failed
    test: float


def tune_data(prepared: Prepared, *, fraction: float, seed: int) -> TuneData:
    task = prepared.schema.task
    fit_rows, validation_rows = validation_split(prepared.y_train, task=task, fraction=fraction, seed=seed)
    return TuneData(
        x_fit=prepared.x_train[fit_rows],
        y_fit=prepared.y_train[fit_rows],
        x_validation=prepared.x_train[validation_rows],
        y_validation=prepared.y_train[validation_rows],
        x_test=prepared.x_test,
        y_test=prepared.y_test,
        task=task,
        n_classes=prepared.n_classes,
    )


def tuned_models(baselines: Sequence[str], spaces: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The MLP and every installed baseline of compare.baselines; each must have a search space."""
    models = ["mlp"]
    for name in baselines:
        if not available(name):
            print(f"tune: notice: skipping {name}: its library ({REQUIRES[name]}) is not installed", file=sys.stderr)
            continue
        models.append(name)
    for name in models:
        if name not in spaces:
            raise QuestError(f"params.yaml: tune.spaces.{name} is missing; every tuned model needs a search space")
    layers = spaces["mlp"].get("hidden_layers")
    if layers is not None and not (
        isinstance(layers, list)
        and all(isinstance(c, list) and all(isinstance(u, int) and u >= 1 for u in c) for c in layers)
    ):
        raise QuestError(
            f"params.yaml: tune.spaces.mlp.hidden_layers must be a list of layer-size lists such as "
            f"[[32], [64, 32]] (got {layers!r})"
        )
    return models


def _is_layers(spec: Any) -> bool:
    return isinstance(spec, list) and any(isinstance(choice, list) for choice in spec)


def _encode(choice: list[int]) -> str:
    return LAYERS_SEPARATOR.join(str(units) for units in choice)


def _decode(text: str) -> tuple[int, ...]:
    return tuple(int(units) for units in text.split(LAYERS_SEPARATOR) if units)


def sample_space(trial: optuna.trial.BaseTrial, space: Mapping[str, Any]) -> dict[str, Any]:
    """Draw one value per hyperparameter from an Optuna trial: a list is a categorical choice (a list of
    lists is encoded as strings and decoded to tuples of ints), {low, high, log} an int or float range."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if _is_layers(spec):
            values[name] = _decode(trial.suggest_categorical(name, [_encode(choice) for choice in spec]))
        elif isinstance(spec, list):
            values[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(spec[key], int) for key in ("low", "high")):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    return values


def decode_params(space: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """A stored trial's Optuna params (encoded) as the values sample_space returned."""
    return {name: _decode(value) if _is_layers(space.get(name)) else value for name, value in raw.items()}


def check_baseline_space(
    name: str, space: Mapping[str, Any], *, task: str, n_features: int, seed: int, large: bool = False
) -> None:
    """Fail before the search, not trials into it, when a space names a hyperparameter the estimator lacks."""
    first = {key: spec[0] if isinstance(spec, list) else spec["low"] for key, spec in space.items()}
    try:
        make_baseline(name, task=task, n_features=n_features, seed=seed, hyper=first, large=large)
    except TypeError as error:
        raise QuestError(f"params.yaml: tune.spaces.{name}: {error}") from None


def sampler_seed(seed: int, name: str) -> int:
    """Each model's own stream, stable by name: adding a model leaves the others' trials unchanged."""
    return seed + zlib.crc32(name.encode("utf-8")) % 10000


def study_name(dataset: str, name: str, key: Mapping[str, Any]) -> str:
    """A stored study is resumed only when everything that decides its trials (`key`) is unchanged."""
    digest = hashlib.sha256(dumps_json(key).encode("utf-8")).hexdigest()[:12]
    return f"quest-{dataset}-{name}-{digest}"


def trial_scores(
    name: str,
    values: Mapping[str, Any],
    data: TuneData,
    *,
    metric: str,
    train: TrainParams,
    seed: int,
    large: bool = False,
) -> tuple[float, float]:
    """Fit `name` with `values` on the fit rows; its `metric` on the validation rows and on the test split.

    `large` picks a baseline's scalable stand-in, as the comparison does. The MLP's imports are lazy:
    quest.backend.configure must have run first.
    """
    if name == "mlp":
        from quest.learners.network import fit_mlp, predict

        spec = dataclasses.replace(train, **values)
        fitted = fit_mlp(data.x_fit, data.y_fit, task=data.task, n_classes=data.n_classes, spec=spec, seed=seed)
        validation, test = (predict(fitted.model, x, task=data.task) for x in (data.x_validation, data.x_test))
    else:
        n_features = data.x_fit.shape[1]
        estimator = make_baseline(
            name, task=data.task, n_features=n_features, seed=seed, hyper=dict(values), large=large
        )
        estimator.fit(data.x_fit, data.y_fit)
        validation, test = (
            model_output(estimator, x, task=data.task, n_classes=data.n_classes)
            for x in (data.x_validation, data.x_test)
        )
    return (
        scores(data.task, data.y_validation, validation)[metric],
        scores(data.task, data.y_test, test)[metric],
    )


def scorer(
    name: str, data: TuneData, *, metric: str, train: TrainParams, seed: int, large: bool = False
) -> Callable[[dict[str, Any], int], tuple[float, float]]:
    """`search`'s objective for one model: (values, slot) -> (validation, test) score."""

    def score(values: dict[str, Any], slot: int) -> tuple[float, float]:
        # Each MLP trial its own, still seeded, initialisation; the baselines keep the pipeline's seed.
        trial_seed = seed + slot + 1 if name == "mlp" else seed
        return trial_scores(name, values, data, metric=metric, train=train, seed=trial_seed, large=large)

    return score


def search(
    name: str,
    space: Mapping[str, Any],
    score: Callable[[dict[str, Any], int], tuple[float, float]],
    *,
    trials: int,
    lower_is_better: bool,
    seed: int,
    storage: str | None,
    study: str,
    heartbeat: int = 30,
) -> list[TrialResult]:
    """Random search of `space` for `trials` trials; `score(values, slot)` gives (validation, test).

    The study is shared (quest.studies): trials that other workers, or an earlier interrupted run, finished
    are kept, and this process runs the rest, then waits for any another worker holds. A trial whose fit
    raises ValueError (a combination the estimator rejects) fails with NaN scores.
    """
    handle = studies.open_study(
        study, url=storage, heartbeat=heartbeat, trials=trials, seed=seed, lower_is_better=lower_is_better
    )
    work_on(name, handle, space, score, trials=trials, lower_is_better=lower_is_better, wait=True)
    return [
        TrialResult(
            trial=found.slot + 1,
            values=decode_params(space, found.params),
            validation=found.validation,
            test=found.test,
        )
        for found in studies.slots(handle, trials)
    ]


def work_on(
    name: str,
    handle: optuna.Study,
    space: Mapping[str, Any],
    score: Callable[[dict[str, Any], int], tuple[float, float]],
    *,
    trials: int,
    lower_is_better: bool,
    wait: bool,
    who: str = "tune",
) -> int:
    """Run `handle`'s waiting trials (quest.studies.work), printing progress as `who`; how many it ran."""
    from optuna.trial import TrialState

    def finished() -> list[optuna.trial.FrozenTrial]:  # every worker's, not only this one's
        stored = handle.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        return [t for t in stored if t.state == TrialState.COMPLETE or studies.ERROR in t.user_attrs]

    done = len(finished())
    if 0 < done < trials and not wait:
        print(f"{who}: {name:<10} study {handle.study_name}: {done}/{trials} trials done already", file=sys.stderr)
    every = 1 if trials <= 20 else max(1, trials // 10)

    def on_done(slot: int, validation: float) -> None:
        so_far = finished()
        best = math.nan
        for t in so_far:
            if t.state == TrialState.COMPLETE and _improves(t.value, best, lower_is_better=lower_is_better):
                best = t.value
        if len(so_far) % every == 0 or len(so_far) >= trials:
            shown = f"{len(so_far)}/{trials}"
            print(f"{who}: {name:<10} trial {slot + 1} done, {shown}  best val {best:.4f}", file=sys.stderr)

    def run_trial(trial: optuna.Trial, slot: int) -> tuple[float, float]:
        return score(sample_space(trial, space), slot)

    return studies.work(handle, run_trial, wait=wait, on_done=on_done)


def _improves(score: float, best: float, *, lower_is_better: bool) -> bool:
    """Whether `score` beats `best` (NaN: none yet); a failed trial's NaN never does, nor does a tie."""
    if not math.isfinite(score):
        return False
    return not math.isfinite(best) or (score < best if lower_is_better else score > best)


def best_so_far(validation: Sequence[float], test: Sequence[float], *, lower_is_better: bool) -> list[float]:
    """At each trial, the test score of the best-validation trial among those so far (the earliest on ties);
    NaN until a trial succeeds."""
    curve, best, best_test = [], math.nan, math.nan
    for score, held_out in zip(validation, test, strict=True):
        if _improves(score, best, lower_is_better=lower_is_better):
            best, best_test = score, held_out
        curve.append(best_test)
    return curve


def best_trial(results: Sequence[TrialResult], *, lower_is_better: bool) -> TrialResult | None:
    """The trial with the best validation score (the earliest on ties), None when every trial failed."""
    best = None
    for result in results:
        if _improves(result.validation, math.nan if best is None else best.validation, lower_is_better=lower_is_better):
            best = result
    return best


def params_text(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def trials_table(results: Mapping[str, Sequence[TrialResult]], *, lower_is_better: bool) -> pd.DataFrame:
    """One row per (model, trial): validation and test score, the budget curve, the sampled values as JSON."""
    rows = []
    for name, trials in results.items():
        curve = best_so_far([t.validation for t in trials], [t.test for t in trials], lower_is_better=lower_is_better)
        for result, best in zip(trials, curve, strict=True):
            rows.append(
                {
                    "model": name,
                    "trial": result.trial,
                    "validation": result.validation,
                    "test": result.test,
                    "best_so_far_test": best,
                    "params": params_text(result.values),
                }
            )
    return pd.DataFrame(rows, columns=TRIALS_COLUMNS)


def budget_table(table: pd.DataFrame) -> pd.DataFrame:
    """The budget curves in wide form, `trial` then one column per model, for `dvc plots`."""
    order = list(dict.fromkeys(table["model"]))
    wide = table.pivot(index="trial", columns="model", values="best_so_far_test")[order]
    wide.columns.name = None
    return wide.reset_index()


def summary(
    results: Mapping[str, Sequence[TrialResult]], *, metric: str, trials: int, validation_fraction: float
) -> dict[str, Any]:
    lower = metric in LOWER_IS_BETTER
    models = {}
    for name, found in results.items():
        best = best_trial(found, lower_is_better=lower)
        models[name] = {
            "best_params": None if best is None else best.values,
            "validation": None if best is None else best.validation,
            "test": None if best is None or not math.isfinite(best.test) else best.test,
        }
    return {
        "enabled": True,
        "metric": metric,
        "trials": trials,
        "validation_fraction": validation_fraction,
        "models": models,
    }


def _csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.6f", lineterminator="\n")


@dataclass(frozen=True)
class Plan:
    """What every process working on the tuning of one dataset agrees on: the stage and each sweep worker."""

    models: list[str]
    data: TuneData
    metric: str
    large: bool
    study_names: dict[str, str]  # model -> study name, derived from everything that decides its trials

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def score(self, name: str, params: Params) -> Callable[[dict[str, Any], int], tuple[float, float]]:
        return scorer(name, self.data, metric=self.metric, train=params.train, seed=params.seed, large=self.large)

    def open(self, name: str, params: Params) -> optuna.Study:
        return studies.open_study(
            self.study_names[name],
            url=params.tune.storage,
            heartbeat=params.tune.heartbeat,
            trials=params.tune.trials,
            seed=sampler_seed(params.seed, name),
            lower_is_better=self.lower_is_better,
        )


def plan(data_dir: Path, params: Params, *, who: str = "tune") -> Plan:
    """Read the prepared data and check every space before any trial runs; name each model's study."""
    settings = params.tune
    models = tuned_models(params.compare.baselines, settings.spaces)
    prepared = read_prepared(data_dir)
    task, dataset = prepared.schema.task, prepared.schema.dataset
    large = params.compare.large(len(prepared.y_train))  # the comparison's choice of model, tuned as compared
    if large:
        print(
            f"{who}: notice: {len(prepared.y_train)} training rows > compare.scale_threshold "
            f"({params.compare.scale_threshold}): svm_rbf and boosting are tuned as their scalable stand-ins",
            file=sys.stderr,
        )
    n_features = prepared.x_train.shape[1]
    for name in models[1:]:
        space = settings.spaces[name]
        check_baseline_space(name, space, task=task, n_features=n_features, seed=params.seed, large=large)
    metric = primary_metric(params.compare.metric, task)
    data_md5 = dvc_md5(data_dir)
    names = {}
    for name in models:
        key = {
            "space": settings.spaces[name],
            "trials": settings.trials,  # the budget is queued when a study is created: a new budget, a new study
            "metric": metric,
            "seed": params.seed,
            "validation_fraction": settings.validation_fraction,
            "data": data_md5,
            "model": dataclasses.asdict(params.train) if name == "mlp" else {"large": large},
        }
        names[name] = study_name(dataset, name, key)
    data = tune_data(prepared, fraction=settings.validation_fraction, seed=params.seed)
    return Plan(models=models, data=data, metric=metric, large=large, study_names=names)


def run(args: argparse.Namespace, params: Params) -> None:
    """The stage's work when it is on; `args` are the stage's parsed command line."""
    out_dir, settings = args.reports / paths.TUNING_DIR.name, params.tune
    tuning = plan(args.data, params)
    models, metric, lower = tuning.models, tuning.metric, tuning.lower_is_better

    from quest.learners import backend

    device = backend.configure(params.train.backend, params.train.device, params.seed, params.train.data_parallel)
    print(
        f"tune: {len(models)} models x {settings.trials} trials, {metric} on {len(tuning.data.y_validation)} "
        f"validation rows; MLP on {device.describe()}",
        file=sys.stderr,
    )
    results: dict[str, list[TrialResult]] = {}
    seconds: dict[str, float] = {}
    for name in models:
        started = time.perf_counter()
        results[name] = search(
            name,
            settings.spaces[name],
            tuning.score(name, params),
            trials=settings.trials,
            lower_is_better=lower,
            seed=sampler_seed(params.seed, name),
            storage=settings.storage,
            study=tuning.study_names[name],
            heartbeat=settings.heartbeat,
        )
        seconds[name] = time.perf_counter() - started

    table = trials_table(results, lower_is_better=lower)
    wide = budget_table(table)
    curves = {name: wide[name].tolist() for name in models}
    outcome = summary(results, metric=metric, trials=settings.trials, validation_fraction=settings.validation_fraction)
    with atomic_dir(out_dir) as staging:
        write_text(staging / TRIALS_FILE, _csv(table))
        write_text(staging / BUDGET_FILE, _csv(wide))
        plots.budget_curves(curves, metric=metric, path=staging / CHART_FILE)
        write_json(staging / paths.SUMMARY, outcome)
        for name, found in results.items():
            best = best_trial(found, lower_is_better=lower)
            shown = (
                "every trial failed"
                if best is None
                else (f"best val {best.validation:.4f} test {best.test:.4f} {params_text(best.values)}")
            )
            print(f"tune: {name:<10} {shown} ({seconds[name]:.1f}s)", file=sys.stderr)
        log_to_mlflow(  # inside: the results replace the earlier ones only once MLflow has them
            params,
            results,
            curves,
            metric=metric,
            study_names=tuning.study_names,
            out_dir=staging,
            root=paths.repo_root(args.params.parent),
            data_dir=args.data,
            device=device,
        )


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params,
    results: Mapping[str, Sequence[TrialResult]],
    curves: Mapping[str, Sequence[float]],
    *,
    metric: str,
    study_names: Mapping[str, str],
    out_dir: Path,
    root: Path,
    data_dir: Path,
    device: DeviceInfo,
) -> None:
    """Per model a parent run (the space, the budget curve as `best_so_far_test` by step, the chart and table)
    with one nested child run per trial (its values, validation_score, test_score)."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    store.start(params.mlflow.experiment, root)
    client = MlflowClient()
    provenance = store.provenance_tags(root, data_dir)
    lower = metric in LOWER_IS_BETTER
    for name, trials in results.items():
        stage = {store.TAG_MODEL: name, "quest.stage": "tune"}
        tags = {**provenance, **stage}
        if name == "mlp":
            tags.update({"quest.device": device.describe(), "quest.backend": device.backend})
        with mlflow.start_run(run_name=f"tune · {name}", tags=tags) as parent:
            mlflow.log_params(
                {
                    "trials": params.tune.trials,
                    "metric": metric,
                    "validation_fraction": params.tune.validation_fraction,
                    "sampler": "random",
                    "sampler_seed": sampler_seed(params.seed, name),
                    "study": study_names[name],
                }
            )
            mlflow.log_dict(params.tune.spaces[name], "space.json")
            now = int(time.time() * 1000)
            for result in trials:
                with mlflow.start_run(run_name=f"{name} · trial {result.trial}", nested=True, tags=stage) as child:
                    scored = {"validation_score": result.validation, "test_score": result.test}
                    client.log_batch(
                        child.info.run_id,
                        metrics=[Metric(k, v, now, 0) for k, v in scored.items() if math.isfinite(v)],
                        params=[Param(k, str(v)) for k, v in store.flatten("", result.values).items()],
                        tags=[
                            RunTag("quest.trial", str(result.trial)),
                            RunTag("quest.trial_state", "complete" if math.isfinite(result.validation) else "failed"),
                        ],
                    )
            metrics = [
                Metric("best_so_far_test", float(v), now, step)
                for step, v in enumerate(curves[name], start=1)
                if math.isfinite(v)
            ]
            best = best_trial(trials, lower_is_better=lower)
            if best is not None:
                metrics.append(Metric("best_validation", best.validation, now, 0))
                if math.isfinite(best.test):
                    metrics.append(Metric("best_test", best.test, now, 0))
            client.log_batch(parent.info.run_id, metrics=metrics)
            for artifact in (CHART_FILE, TRIALS_FILE):
                mlflow.log_artifact(str(out_dir / artifact))
