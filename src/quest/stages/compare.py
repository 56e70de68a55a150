"""Stage 4, compare: cross-validate every other model on the folds the MLP used, score each on the same test
split, and write the comparison table, a bar chart with error bars and a short report."""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quest.core import arguments, interrupts, paths, progress, timing
from quest.core.errors import QuestError, run_cli
from quest.core.files import (
    file_md5,
    read_json,
    require,
    staged_into,
    write_bytes,
    write_json,
    write_logged,
    write_text,
)
from quest.data.artifacts import Prepared, read_prepared
from quest.evaluation import plots
from quest.evaluation.comparison import (
    RELATIVE_ROPE,
    SHARED_KEYS,
    Verdict,
    comparison_table,
    report_markdown,
    rope_in_units,
    verdict,
)
from quest.evaluation.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, primary_metric
from quest.evaluation.scoring import ModelResult, Skipped, evaluate_all
from quest.learners import registry
from quest.learners.base import Learner, Problem
from quest.learners.registry import load_params
from quest.params import Params
from quest.tracking import provenance, runs, store
from quest.tracking.comparison import Entrant, Headline, comparison_run
from quest.tracking.model_registry import register_mlp

OUTPUTS = tuple(
    p.name
    for p in (
        paths.COMPARISON,
        paths.COMPARISON_REPORT,
        paths.COMPARISON_CHART,
        paths.POSTERIOR_CHART,
        paths.CV_FOLDS,
        paths.VERDICT,
    )
)


def read_subject(reports: Path, prepared: Prepared) -> ModelResult:
    """The MLP's fold scores (train) and test scores (evaluate), as the stages before wrote them, checked against
    the prepared data: one finite score per shared split and per metric of the task."""
    names = CLASSIFICATION_METRICS if prepared.schema.task == "classification" else REGRESSION_METRICS
    splits = prepared.schema.folds * prepared.schema.repeats
    cv_path, metrics_path = reports / paths.MLP_CV.name, reports / paths.METRICS.name
    folds = _scores(read_json(require(cv_path, "train")), ("folds",), cv_path, names, stage="train")
    test = _scores(read_json(require(metrics_path, "evaluate")), ("mlp", "test"), metrics_path, names, stage="evaluate")
    for name, values in folds.items():
        if not isinstance(values, list) or len(values) != splits:
            count = len(values) if isinstance(values, list) else "no list of"
            raise QuestError(
                f"{cv_path}: holds {count} {name} scores but the prepared data has {splits} splits "
                f"({splits_text(prepared)}): it comes from another prepare; run `dvc repro train`"
            )
    return ModelResult(name=registry.SUBJECT, folds=folds, test=test)


def _scores(found: object, keys: tuple[str, ...], path: Path, names: tuple[str, ...], *, stage: str) -> dict:
    """found[keys[0]][keys[1]]..., a mapping with every metric in `names`, each a finite number or a list of them."""
    for key in keys:
        found = found.get(key) if isinstance(found, dict) else None
    missing = [name for name in names if not isinstance(found, dict) or name not in found]
    if missing:
        raise QuestError(f"{path}: has no {'.'.join(keys)}.{missing[0]} score; run `dvc repro {stage}`")
    for name in names:
        values = found[name] if isinstance(found[name], list) else [found[name]]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise QuestError(f"{path}: {'.'.join(keys)}.{name} is not all finite numbers; run `dvc repro {stage}`")
    return {name: found[name] for name in names}


def splits_text(prepared: Prepared) -> str:
    """The shared splits in words, for the report's first lines: how many, and how they divide the rows."""
    schema = prepared.schema
    folds = schema.folds_text
    if schema.split is None:
        return folds
    if schema.split.kind == "time":
        return f"{schema.folds} forward-chaining folds {schema.split.describe()}"
    return f"{folds} {schema.split.describe()}"


@dataclass(frozen=True)
class Comparison:
    """Everything the stage writes and logs, computed."""

    metric: str
    results: list[ModelResult]  # the MLP's first, then each entrant's in compare.models order
    table: pd.DataFrame
    outcome: Verdict
    learners: dict[str, Learner]
    descriptions: dict[str, str]  # what each row's model is, in words
    report: str  # comparison.md
    skipped: dict[str, str]  # models left out before they trained, and why (too large for the memory available)


HEARTBEAT = 60.0  # seconds without a line after which compare says what it is still doing


@contextmanager
def heartbeat(models: Sequence[str]) -> Iterator[Callable[[], None]]:
    """Inside the block, a line after every HEARTBEAT seconds in which no model was scored: how many are, how
    long it has taken, and each model at work, how far it is and what is left at that pace (quest.core.progress; the
    command's activities where the models run elsewhere). A wide or long table keeps CatBoost and RealMLP at
    work for many minutes after the last line otherwise. The block calls what this yields as each model's result
    arrives."""
    with progress.board(models) as board:
        yield from _beating(len(models), board)


def _beating(models: int, board: progress.Board) -> Iterator[Callable[[], None]]:
    started = time.monotonic()
    last, done, stop = [started], [0], threading.Event()

    def scored() -> None:
        last[0], done[0] = time.monotonic(), done[0] + 1

    def beat() -> None:
        while not stop.wait(min(5.0, HEARTBEAT / 4)):
            now = time.monotonic()
            if now - last[0] >= HEARTBEAT and interrupts.received() is None:  # a stopped command's line is its last
                last[0] = now
                at_work = "; ".join(board.at_work() or interrupts.activities()) or "scoring"
                print(f"compare: {done[0]} of {models} models scored, {timing.duration_text(now - started)}; at "
                      f"work: {at_work}", file=sys.stderr, flush=True)  # fmt: skip

    thread = threading.Thread(target=beat, name="quest-heartbeat", daemon=True)
    thread.start()
    try:
        yield scored
    finally:
        stop.set()
        thread.join()


def compare(params: Params, prepared: Prepared, subject: ModelResult) -> Comparison:
    """Score every entrant on the shared splits and the test split, then set the neural family against the
    classic one."""
    schema = prepared.schema
    metric = primary_metric(params.compare.metric, schema.task, prepared.n_classes)
    entrants = registry.entrants(params, who="compare")
    problem = registry.problem(params, prepared)
    registry.recipe_notices("compare", entrants, problem, params, n_train=len(prepared.y_train))
    results, skipped = [subject], {}
    with heartbeat([learner.name for learner in entrants]) as scored:
        for result in evaluate_all(entrants, prepared, problem, seed=params.seed, executor=params.compare.executor):
            scored()
            if isinstance(result, Skipped):
                skipped[result.name] = result.reason
                print(f"compare: notice: skipping {result.name}: {result.reason}", file=sys.stderr)
                continue
            folds = result.folds[metric]
            print(
                f"compare: {result.name:<10} CV {metric} {np.mean(folds):.4f} ± {np.std(folds):.4f}  "
                f"test {result.test[metric]:.4f}  ({result.seconds:.1f}s)",
                file=sys.stderr,
            )
            results.append(result)
    n_train, n_test = prepared.correction_sizes
    ran = [learner for learner in entrants if learner.name not in skipped]
    learners = {learner.name: learner for learner in [registry.subject(params), *ran]}
    kinds = {name: learner.kind for name, learner in learners.items()}
    if "classic" not in kinds.values():
        raise QuestError("params.yaml: compare.models must name at least one classic model to compare with")
    rope = rope_in_units(params.compare.rope, metric, prepared.y_train)
    sizes = {"kinds": kinds, "n_train": n_train, "n_test": n_test, "rope": rope}
    table = comparison_table(results, metric, **sizes)
    settings = {"probability": params.compare.probability, "alpha": params.compare.alpha}
    outcome = dataclasses.replace(
        verdict(results, metric, **sizes, **settings),
        rope_setting=params.compare.rope,
        split=schema.split_param if schema.split is not None else None,
    )
    descriptions = {name: learner.describe(problem) for name, learner in learners.items()}
    rope_note = (
        f" ({params.compare.rope:g} of the training target's standard deviation)" if metric in RELATIVE_ROPE else ""
    )
    report = report_markdown(
        table,
        schema.dataset,
        schema.task,
        outcome,
        splits_text(prepared),
        descriptions=descriptions,
        rope_note=rope_note,
        large=problem.large,
        wide=(
            f"{problem.n_features} model inputs > `compare.wide_threshold`, {params.compare.wide_threshold}"
            if problem.wide
            else ""
        ),
        skipped=skipped,
    )
    return Comparison(metric, results, table, outcome, learners, descriptions, report, skipped)


def write_outputs(out: Path, comparison: Comparison) -> None:
    table, metric = comparison.table, comparison.metric
    csv_text = table.to_csv(index=False, float_format="%.6f", na_rep="", lineterminator="\n")
    write_text(out / paths.COMPARISON.name, csv_text)
    write_json(out / paths.CV_FOLDS.name, {r.name: r.folds for r in comparison.results})
    write_json(out / paths.VERDICT.name, comparison.outcome.to_dict())
    plots.comparison_bars(
        table["model"],
        table["cv_mean"],
        table["ci_low"],
        table["ci_high"],
        table["test_score"],
        families=table["family"],
        metric=metric,
        path=out / paths.COMPARISON_CHART.name,
    )
    outcome = comparison.outcome
    found, headline = outcome.posterior, outcome.headline
    plots.posterior(
        mean=found["mean"],
        scale=found["scale"],
        df=found["df"],
        rope=outcome.rope,
        probabilities=(headline.p_better, headline.p_equivalent, headline.p_worse),
        names=(outcome.best_neural, outcome.best_classic),
        metric=metric,
        path=out / paths.POSTERIOR_CHART.name,
    )
    write_text(out / paths.COMPARISON_REPORT.name, comparison.report)


@timing.timed("compute")
def main(argv: list[str] | None = None) -> None:
    parser = arguments.stage_parser("stages.compare", __doc__, "params", "data", "model", "reports")
    args = parser.parse_args(argv)

    params = load_params(args.params, table=args.table)
    prepared = read_prepared(args.data)
    comparison = compare(params, prepared, read_subject(args.reports, prepared))
    origin = provenance.collect(paths.repo_root(args.params.parent), args.data)
    with staged_into(args.reports) as out:  # published only once MLflow has them
        write_outputs(out, comparison)
        shown = comparison.table.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="")
        print(shown, file=sys.stderr)
        with interrupts.during("logging to MLflow"):
            log_to_mlflow(
                params, prepared, comparison, origin=origin, model_path=args.model, data_dir=args.data, reports=out
            )
        logged = [out / name for name in OUTPUTS]
        write_logged(out / paths.LOGGED.format(stage="compare"), experiment=params.mlflow.experiment, outputs=logged)
    outcome = comparison.outcome
    print(
        f"compare: winner {outcome.winner}; {outcome.words}; report {args.reports / paths.COMPARISON_REPORT.name}",
        file=sys.stderr,
    )


@timing.timed("mlflow")
def log_to_mlflow(
    params: Params,
    prepared: Prepared,
    comparison: Comparison,
    *,
    origin: provenance.Provenance,
    model_path: Path,
    data_dir: Path,
    reports: Path,
) -> None:
    """A parent run per comparison; one child per model carrying the same keys (cv_mean, cv_std, test_score).
    The MLP's own run, from train, joins the group; then the MLP is registered with the alias it earned."""
    experiment = params.mlflow.experiment
    store.start(experiment, origin)
    subject_run = runs.mlp_run(experiment, model_path, origin)
    with comparison_run(
        params,
        prepared,
        headline(comparison, reports),
        entrants(comparison, registry.problem(params, prepared)),
        origin=origin,
        subject=registry.SUBJECT,
        subject_run=subject_run,
        data_dir=data_dir,
    ):
        if params.mlflow.registered_model:
            _register(params.mlflow.registered_model, experiment, subject_run, comparison.outcome, reports, origin.root)


def headline(comparison: Comparison, reports: Path) -> Headline:
    """What the comparison's parent run says, from the verdict and the table."""
    outcome, rows = comparison.outcome, comparison.table.set_index("model")
    judged = outcome.headline.judged()
    files = (paths.COMPARISON_CHART, paths.POSTERIOR_CHART, paths.COMPARISON_REPORT, paths.COMPARISON)
    return Headline(
        metric=comparison.metric,
        models=len(comparison.results),
        winner=outcome.winner,
        words=outcome.words,
        outcome=outcome.outcome,
        settings={
            "rope": outcome.rope,
            "probability": outcome.probability,
            "best_neural": outcome.best_neural,
            "best_classic": outcome.best_classic,
        },
        judged={key: float(judged[key]) for key in ("difference", "p_better", "p_equivalent", "p_worse", "p_value")},
        best_cv_means={
            "best_neural_cv_mean": float(rows.loc[outcome.best_neural, "cv_mean"]),
            "best_classic_cv_mean": float(rows.loc[outcome.best_classic, "cv_mean"]),
        },
        skipped=comparison.skipped,
        files=[reports / path.name for path in files],
        comparison_md5=file_md5(reports / paths.COMPARISON.name),
    )


def entrants(comparison: Comparison, problem: Problem) -> list[Entrant]:
    """Each model's run: its row's shared keys, its split scores and test scores, its network where it has one."""
    rows = comparison.table.set_index("model")
    found = []
    for result in comparison.results:
        learner = comparison.learners[result.name]
        network = result.model
        found.append(
            Entrant(
                name=result.name,
                kind=learner.kind,
                description=comparison.descriptions[result.name],
                shared={key: float(rows.loc[result.name, key]) for key in SHARED_KEYS},
                folds=result.folds[comparison.metric],
                test=result.test,
                seconds=result.seconds,
                save=_saver(network),
                settings={} if network is None else learner.settings(problem),
            )
        )
    return found


def _saver(network: Any) -> Callable[[Path], None] | None:
    """How a result's network is saved: as Keras saves it, or, trained on a cluster's worker, the bytes of the
    archive it saved there (quest.evaluation.scoring), written as they are, without loading Keras here."""
    if network is None:
        return None
    if isinstance(network, bytes):
        return functools.partial(write_bytes, data=network)
    from quest.learners.networks import save_mlp

    return functools.partial(save_mlp, network)


def _register(name: str, experiment: str, subject_run: str, outcome: Verdict, reports: Path, root: Path) -> None:
    """The MLP as a new version of the registered model, its alias earned by the verdict; said on the parent."""
    import mlflow

    description = (reports / paths.COMPARISON_REPORT.name).read_text()
    registered = register_mlp(
        name,
        experiment=experiment,
        mlp_run=subject_run,
        entry=outcome.neural[registry.SUBJECT].judged(),
        winner=outcome.winner,
        description=description,
        root=root,
    )
    if registered:
        version, alias = registered
        mlflow.set_tag("quest.registered", f"{name} version {version} @ {alias}")
        print(f"compare: the MLP is {name} version {version}, alias {alias}", file=sys.stderr)


if __name__ == "__main__":
    run_cli("quest compare", main)
