"""Learning curves, computed: every model scored at growing training-set sizes on the shared folds.

Each fold's training rows are subsampled (seeded, stratified, the same rows for every model) to each fraction;
the fraction 1.0 point is the comparison's own fold scores, not a second computation.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quest.core import cluster, processes
from quest.core.errors import first_line
from quest.data.artifacts import Prepared
from quest.data.splits import subsample
from quest.evaluation.metrics import LOWER_IS_BETTER
from quest.evaluation.scoring import Scored, scores_of
from quest.learners.base import Fit, Learner, Problem
from quest.learners.registry import SUBJECT


@dataclass(frozen=True)
class Cell:
    """A (split, fraction) point of the curves: the split's subsampled training rows and its held-out rows."""

    split: int
    fraction: float
    rows: np.ndarray
    held_out: np.ndarray  # boolean mask over the training split


def cells(prepared: Prepared, *, fractions: Sequence[float], repeats: int, seed: int) -> list[Cell]:
    """Every (split, fraction < 1) of the first `repeats` repeats; the same rows for every model."""
    limit = repeats * prepared.schema.folds
    found = []
    for split, training, held_out in prepared.splits():
        if split >= limit:
            break
        rows = np.flatnonzero(training)
        for fraction in (f for f in fractions if f < 1.0):
            chosen = subsample(
                rows, prepared.y_train, fraction, task=prepared.schema.task, seed=seed + split + 1,
                division=prepared.division,
            )  # fmt: skip
            found.append(Cell(split, fraction, chosen, held_out))
    return found


def curve_scores(
    learners: Sequence[Learner],
    prepared: Prepared,
    problem: Problem,
    grid: Sequence[Cell],
    *,
    metric: str,
    seed: int,
    executor: str = "local",
) -> pd.DataFrame:
    """One row per (model, fraction < 1, split): the split's training rows used and the held-out score; NaN
    where the model cannot fit so few rows (a notice says so) or a class is missing from them. Each model in
    turn here, or each one task on the Dask cluster `executor` (or QUEST_EXECUTOR) names (quest.core.cluster)."""
    chosen = cluster.executor(executor)
    if chosen == "local":
        return _table(
            learners, grid, (_curve(learner, (prepared, grid), problem, metric, seed) for learner in learners)
        )
    cores = len(os.sched_getaffinity(0))  # a model here has every core: there too, so it fits alike
    priorities = [1 if learner.trains_together else 0 for learner in learners]  # the longest first
    shared = (prepared, grid)
    with cluster.tasks(
        chosen, _curve_there, learners, shared, problem, metric, seed, cores, priorities=priorities
    ) as found:
        return _table(learners, grid, found)


def _table(learners: Sequence[Learner], grid: Sequence[Cell], curves: Iterable[_Curve]) -> pd.DataFrame:
    return pd.DataFrame(
        [row for learner, curve in zip(learners, curves, strict=True) for row in _rows(learner, grid, curve)]
    )


@dataclass(frozen=True)
class _Curve:
    """A model's held-out score at each cell of the grid (NaN where it could not fit), its seconds a cell, and the
    notices of the fits it could not make."""

    score: list[float]
    seconds: float
    notices: list[str]


def _curve(
    learner: Learner, shared: tuple[Prepared, Sequence[Cell]], problem: Problem, metric: str, seed: int
) -> _Curve:
    prepared, grid = shared
    x, y = prepared.x_train, prepared.y_train
    started = time.perf_counter()
    # A classifier needs two classes among its rows; a cell without them scores NaN for every model.
    usable = [i for i, cell in enumerate(grid) if problem.task != "classification" or _two_classes(y[cell.rows])]
    scored = [Scored(grid[i].rows, (y[grid[i].held_out],), (x[grid[i].held_out],), index=grid[i].split) for i in usable]
    notices: list[str] = []

    def refused(fit: Fit, error: ValueError) -> None:
        notices.append(f"learning: notice: {learner.name} cannot fit {len(fit.rows)} rows: {first_line(error)}")

    found = scores_of(learner, x, y, scored, problem, seed=seed, label="learning", on_failure=refused)
    score = [np.nan] * len(grid)
    for i, result in zip(usable, found, strict=True):
        score[i] = np.nan if result is None else result[0][metric]
    return _Curve(score, (time.perf_counter() - started) / max(1, len(grid)), notices)


def _curve_there(
    learner: Learner, shared: tuple[Prepared, Sequence[Cell]], problem: Problem, metric: str, seed: int, threads: int
) -> _Curve:
    """On a cluster's worker: `_curve` with the threads the stage's own process has."""
    with processes.threads_at_most(threads):
        return _curve(learner, shared, problem, metric, seed)


def _rows(learner: Learner, grid: Sequence[Cell], curve: _Curve) -> list[dict[str, object]]:
    for notice in curve.notices:
        print(notice, file=sys.stderr)
    print(
        f"learning: {learner.name} at {len(grid)} (split, fraction) cells, {curve.seconds:.2f}s each", file=sys.stderr
    )
    return [
        {
            "model": learner.name,
            "fraction": cell.fraction,
            "split": cell.split + 1,
            "n_train": len(cell.rows),
            "score": cell_score,
            "seconds": curve.seconds,
        }
        for cell, cell_score in zip(grid, curve.score, strict=True)
    ]


def _two_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) >= 2


def summarise(partial: pd.DataFrame, full_folds: dict[str, list[float]], *, limit: int, n_full: int) -> pd.DataFrame:
    """Mean and std per (model, fraction), with the comparison's own fold scores as the fraction-1.0 point."""
    summary = (
        partial.groupby(["model", "fraction"], sort=False)
        .agg(n_train=("n_train", "mean"), mean=("score", "mean"), std=("score", lambda s: float(np.std(s))))
        .reset_index()
    )
    full = [
        {
            "model": name,
            "fraction": 1.0,
            "n_train": float(n_full),
            "mean": float(np.mean(folds[:limit])),
            "std": float(np.std(folds[:limit])),
        }
        for name, folds in full_folds.items()
    ]
    table = pd.concat([summary, pd.DataFrame(full)], ignore_index=True) if len(summary) else pd.DataFrame(full)
    table["n_train"] = table["n_train"].round().astype(int)
    order = {name: index for index, name in enumerate(full_folds)}
    return table.sort_values(
        ["model", "fraction"], key=lambda c: c.map(order) if c.name == "model" else c, kind="stable"
    ).reset_index(drop=True)


def overtakes(table: pd.DataFrame, metric: str) -> dict[str, object]:
    """At each size, whether the MLP beats every baseline's mean; the smallest size from which it always does."""
    lower = metric in LOWER_IS_BETTER
    sizes = sorted(table["n_train"].unique())
    ahead = []
    for size in sizes:
        at = table[table["n_train"] == size].set_index("model")["mean"]
        if SUBJECT not in at or len(at) < 2:
            continue
        others = at.drop(SUBJECT)
        best = others.min() if lower else others.max()
        ahead.append((int(size), bool(at[SUBJECT] < best if lower else at[SUBJECT] > best)))
    from_size = next((size for index, (size, _) in enumerate(ahead) if all(a for _, a in ahead[index:])), None)
    if from_size is None:
        text = "the MLP does not lead every baseline at the largest training size"
    else:
        text = f"the MLP leads every baseline from {from_size} training rows on"
    return {"mlp_ahead_by_size": {str(size): lead for size, lead in ahead}, "from_n_train": from_size, "text": text}
