"""Across tables, the way the tabular benchmarks sum up (issue 33): Elo per model with a bootstrap over tables,
calibrated so that the random forest is 1000 (TabArena's method, computed by its own engine, `bencheval`), the
average rank, the normalised score, and the count of tables on which each verdict fell.

Every function takes one long table of results, a row per (table, model), with the model's score on that table
and whether lower is better there, so that tables judged on different metrics (ROC AUC, log loss, RMSE) sit
together: only each table's order of the models, or its scores rescaled within the table, ever crosses tables.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

CALIBRATION = ("forest", 1000.0)  # TabArena's anchor: the random forest at its defaults is 1000
OUTCOMES = ("better", "equivalent", "worse", "unclear")


def errors(results: pd.DataFrame) -> pd.DataFrame:
    """(table, model, error) from (table, model, score, lower_is_better): the error is the score where lower is
    better and its negative otherwise, so that lower is better everywhere and each table keeps its own order."""
    signed = results["score"].where(results["lower_is_better"], -results["score"])
    return pd.DataFrame({"table": results["table"], "model": results["model"], "error": signed.astype(float)})


def elo(results: pd.DataFrame, *, rounds: int = 200) -> pd.DataFrame:
    """Elo per model (Bradley–Terry, each table weighing the same), its 95 % interval from `rounds` bootstrap
    draws of the tables (seeded: the same numbers every run), calibrated so that the forest is 1000; columns
    elo, low, high, best first. bencheval computes it, as TabArena does."""
    from bencheval.evaluator import BenchmarkEvaluator

    found = errors(results).rename(columns={"table": "task", "model": "method", "error": "metric_error"})
    anchor, rating = CALIBRATION
    table = BenchmarkEvaluator().compute_elo(
        found,
        calibration_framework=anchor if anchor in set(found["method"]) else None,
        calibration_elo=rating,
        BOOTSTRAP_ROUNDS=rounds,
        round_decimals=None,
    )
    return pd.DataFrame(
        {"elo": table["elo"], "low": table["elo"] - table["elo-"], "high": table["elo"] + table["elo+"]}
    ).rename_axis("model")


def average_ranks(results: pd.DataFrame) -> pd.Series:
    """Each model's rank within each table (1 the best, ties sharing the mean of their places), averaged."""
    found = errors(results)
    ranks = found.groupby("table")["error"].rank(method="average")
    return ranks.groupby(found["model"]).mean().sort_values().rename("average_rank")


def normalised_scores(results: pd.DataFrame) -> pd.Series:
    """Each model's score rescaled within each table, 1 for the table's best and 0 for its worst, averaged over
    the tables (a table where every model scored the same counts 1 for all)."""
    found = errors(results)
    grouped = found.groupby("table")["error"]
    best, worst = grouped.transform("min"), grouped.transform("max")
    span = (worst - best).where(worst > best)
    rescaled = ((worst - found["error"]) / span).fillna(1.0)
    return rescaled.groupby(found["model"]).mean().sort_values(ascending=False).rename("normalised_score")


def verdict_counts(outcomes: Mapping[str, str]) -> dict[str, int]:
    """How many tables each verdict fell on (table -> better, equivalent, worse or unclear)."""
    unknown = sorted(set(outcomes.values()) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"verdicts must be {', '.join(OUTCOMES)} (got {', '.join(unknown)})")
    return {outcome: sum(found == outcome for found in outcomes.values()) for outcome in OUTCOMES}
