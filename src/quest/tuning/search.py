"""Equal-budget random search (Optuna) for the MLP and every baseline: the work of the optional tune stage and
of the sweep's workers.

Each model gets the same number of trials. A trial fits on an inner slice of the training split and is scored
on the rest of it (validation), which is all the search sees; the same fitted model is also scored on the test
split, only to draw the budget curve: the test score of the best-by-validation trial so far, against trials.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from quest.core.errors import QuestError, TrainingDiverged
from quest.core.files import dvc_md5
from quest.data.artifacts import Prepared, read_prepared
from quest.data.splits import validation_split
from quest.evaluation.metrics import LOWER_IS_BETTER, primary_metric
from quest.evaluation.scoring import Scored, scores_of
from quest.learners import registry
from quest.learners.base import Learner, Problem
from quest.params import Params, TuneParams
from quest.tuning import studies
from quest.tuning.space import decode_params, sample_space, sampler_seed, study_name

if TYPE_CHECKING:
    import optuna

TRIALS_COLUMNS = ["model", "trial", "validation", "test", "best_so_far_test", "params"]
# [(values, slot), ...] -> per trial (validation, test), or the error that failed it
Score = Callable[[Sequence[tuple[dict[str, Any], int]]], list[studies.Outcome]]


@dataclass(frozen=True)
class TuneData:
    """The inner split a trial fits and is scored on, and the test split it is reported on."""

    x: np.ndarray  # the training split
    y: np.ndarray
    fit_rows: np.ndarray  # what a trial learns from
    validation_rows: np.ndarray  # what scores it
    x_test: np.ndarray
    y_test: np.ndarray
    problem: Problem


@dataclass(frozen=True)
class TrialResult:
    trial: int  # 1-based position in the model's budget
    values: dict[str, Any]  # the sampled hyperparameters, decoded (hidden_layers as a tuple of ints)
    validation: float  # NaN when the trial failed
    test: float


def tune_data(prepared: Prepared, problem: Problem, *, fraction: float, seed: int) -> TuneData:
    fit_rows, validation_rows = validation_split(
        prepared.y_train, task=problem.task, fraction=fraction, seed=seed, division=prepared.division
    )
    return TuneData(
        x=prepared.x_train,
        y=prepared.y_train,
        fit_rows=fit_rows,
        validation_rows=validation_rows,
        x_test=prepared.x_test,
        y_test=prepared.y_test,
        problem=problem,
    )


def tuned_learners(params: Params, *, who: str) -> list[Learner]:
    """The MLP and every installed learner of compare.models; each must have a search space."""
    registry.check_spaces(params)
    learners = [registry.subject(params), *registry.entrants(params, who=who)]
    for learner in learners:
        if learner.name not in params.tune.spaces:
            raise QuestError(
                f"params.yaml: tune.spaces.{learner.name} is missing; every tuned model needs a search space"
            )
    return learners


def trial_scores(
    learner: Learner, trials: Sequence[tuple[Mapping[str, Any], int]], data: TuneData, *, metric: str, seed: int
) -> list[tuple[float, float]]:
    """Per (values, slot): fit `learner` with the values on the fit rows (once per seed it draws for the slot);
    its `metric` on the validation rows and on the test split, each the mean over those fits. The trials go to
    the learner together: one that trains fits together trains them in one program."""
    held_out = data.validation_rows
    targets, inputs = (data.y[held_out], data.y_test), (data.x[held_out], data.x_test)
    cells = [Scored(data.fit_rows, targets, inputs, index=slot, hyper=dict(values)) for values, slot in trials]
    found = scores_of(learner, data.x, data.y, cells, data.problem, seed=seed)
    return [(validation[metric], test[metric]) for validation, test in found]


def scorer(learner: Learner, data: TuneData, *, metric: str, seed: int) -> Score:
    """`search`'s objective for one model: [(values, slot), ...] -> per trial (validation, test), or its error.

    Trials scored together fail together when one of them does (a learning rate that diverges ends the program
    that trains it): each is then scored alone, so only the one to blame fails, with the scores it has alone."""

    def score(trials: Sequence[tuple[dict[str, Any], int]]) -> list[studies.Outcome]:
        try:
            return list(trial_scores(learner, trials, data, metric=metric, seed=seed))  # as Outcomes
        except (ValueError, TrainingDiverged) as error:
            if len(trials) == 1:
                return [error]
        return [score([trial])[0] for trial in trials]

    return score


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
    batch: int = 1,
) -> int:
    """Run `handle`'s waiting trials (quest.tuning.studies.work), up to `batch` at a time, printing progress as
    `who`; how many it ran."""
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

    def run_trials(claimed: studies.Claimed) -> list[studies.Outcome]:
        return score([(sample_space(trial, space), slot) for trial, slot in claimed])

    return studies.work(handle, run_trials, wait=wait, batch=batch, on_done=on_done)


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


@dataclass(frozen=True)
class Plan:
    """What every process working on the tuning of one dataset agrees on: the stage and each sweep worker."""

    learners: dict[str, Learner]  # in tuning order: the MLP first
    data: TuneData
    metric: str
    study_names: dict[str, str]  # model -> study name, derived from everything that decides its trials
    settings: TuneParams  # params.yaml's tune section: spaces, budget, storage, heartbeat, trials together
    seed: int  # the pipeline's: each model's sampler seed and its fits' seeds derive from it
    split: str = "random"  # how prepare divided the rows (Schema.split_param), which the inner split follows

    @property
    def models(self) -> list[str]:
        return list(self.learners)

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def devices(self) -> list[str]:
        """`<model> on <device>` for each model that says where it trains (the MLP's backend and device)."""
        found = {name: learner.device_tags().get("quest.device") for name, learner in self.learners.items()}
        return [f"{name} on {device}" for name, device in found.items() if device]

    def space(self, name: str) -> dict[str, Any]:
        return self.settings.spaces[name]

    def score(self, name: str) -> Score:
        return scorer(self.learners[name], self.data, metric=self.metric, seed=self.seed)

    def batch(self, name: str) -> int:
        """Trials a worker claims at once: tune.together for a learner that trains trials together, else 1."""
        return self.settings.together if self.learners[name].trials_together else 1

    def open(self, name: str) -> optuna.Study:
        """The model's shared study (quest.tuning.studies), created with its budget queued if it is new."""
        return studies.open_study(
            self.study_names[name],
            url=self.settings.storage,
            heartbeat=self.settings.heartbeat,
            trials=self.settings.trials,
            seed=sampler_seed(self.seed, name),
            lower_is_better=self.lower_is_better,
        )

    def work(self, name: str, handle: optuna.Study, *, wait: bool, who: str = "tune") -> int:
        """Run the study's waiting trials, `batch` at a time, printing progress as `who`; how many it ran."""
        return work_on(
            name,
            handle,
            self.space(name),
            self.score(name),
            trials=self.settings.trials,
            lower_is_better=self.lower_is_better,
            wait=wait,
            who=who,
            batch=self.batch(name),
        )

    def search(self, name: str) -> list[TrialResult]:
        """Random search of the model's space for the budget's trials; each trial's values and scores.

        The study is shared: trials that other workers, or an earlier interrupted run, finished are kept, and
        this process runs the rest, then waits for any another worker holds. A trial whose fit raises ValueError
        (a combination the estimator rejects) fails with NaN scores.
        """
        handle = self.open(name)
        self.work(name, handle, wait=True)
        space = self.space(name)
        return [
            TrialResult(
                trial=found.slot + 1,
                values=decode_params(space, found.params),
                validation=found.validation,
                test=found.test,
            )
            for found in studies.slots(handle, self.settings.trials)
        ]


def plan(data_dir: Path, params: Params, *, who: str = "tune") -> Plan:
    """Read the prepared data and check every space before any trial runs; name each model's study."""
    settings = params.tune
    learners = tuned_learners(params, who=who)
    prepared = read_prepared(data_dir)
    problem = registry.problem(params, prepared)  # tuned as compared
    for learner in learners:
        learner.check_space(settings.spaces[learner.name], problem)
    registry.recipe_notices(who, learners, problem, params, n_train=len(prepared.y_train), verb="are tuned")
    metric = primary_metric(params.compare.metric, problem.task, problem.n_classes)
    data_md5 = dvc_md5(data_dir)
    names = {}
    for learner in learners:
        key = {
            "space": settings.spaces[learner.name],
            "trials": settings.trials,  # the budget is queued when a study is created: a new budget, a new study
            "metric": metric,
            "seed": params.seed,
            "validation_fraction": settings.validation_fraction,
            "data": data_md5,
            "model": learner.settings(problem),
        }
        names[learner.name] = study_name(prepared.schema.dataset, learner.name, key)
    data = tune_data(prepared, problem, fraction=settings.validation_fraction, seed=params.seed)
    return Plan(
        learners={learner.name: learner for learner in learners},
        data=data,
        metric=metric,
        study_names=names,
        settings=settings,
        seed=params.seed,
        split=prepared.schema.split_param,
    )
