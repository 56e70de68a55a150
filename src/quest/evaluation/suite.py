"""Across tables, the way the tabular benchmarks sum up (issue 33): Elo per model with a bootstrap over tables,
calibrated so that the random forest is 1000 (TabArena's method, computed by its own engine, `bencheval`), the
average rank, the normalised score, the count of tables on which each verdict fell, and the pairwise Wilcoxon
signed-rank tests with Holm's correction that a critical-difference diagram draws (Benavoli, Corani and
Mangili, JMLR 2016, rather than a post-hoc test on mean ranks).

Every function takes one long table of results, a row per (table, model), with the model's score on that table
and whether lower is better there, so that tables judged on different metrics (ROC AUC, log loss, RMSE) sit
together: only each table's order of the models, or its scores rescaled within the table, ever crosses tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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
    found = rescaled(results)
    return found.groupby("model")["rescaled"].mean().sort_values(ascending=False).rename("normalised_score")


def verdict_counts(outcomes: Mapping[str, str]) -> dict[str, int]:
    """How many tables each verdict fell on (table -> better, equivalent, worse or unclear)."""
    unknown = sorted(set(outcomes.values()) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"verdicts must be {', '.join(OUTCOMES)} (got {', '.join(unknown)})")
    return {outcome: sum(found == outcome for found in outcomes.values()) for outcome in OUTCOMES}


def pairwise_wilcoxon(results: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p-values of the Wilcoxon signed-rank test between every two models, paired by table (models x
    models, 1 on the diagonal); scikit-posthocs computes them. Only the tables where both models ran count."""
    import scikit_posthocs

    found = errors(results)
    wide = found.pivot(index="table", columns="model", values="error").dropna()
    long = wide.melt(var_name="model", value_name="error", ignore_index=False).reset_index()  # tables in one order
    return scikit_posthocs.posthoc_wilcoxon(long, val_col="error", group_col="model", p_adjust="holm")


def critical_difference(results: pd.DataFrame, path: Path, *, alpha: float = 0.05) -> None:
    """The critical-difference diagram of the average ranks and the pairwise Wilcoxon–Holm tests
    (quest.evaluation.plots draws it)."""
    from quest.evaluation import plots

    tables = results["table"].nunique()
    plots.critical_difference(average_ranks(results), pairwise_wilcoxon(results), tables=tables, path=path, alpha=alpha)


def rescaled(results: pd.DataFrame) -> pd.DataFrame:
    """(table, model, rescaled): each model's score within its table, 1 for the table's best and 0 for its worst."""
    found = errors(results)
    grouped = found.groupby("table")["error"]
    best, worst = grouped.transform("min"), grouped.transform("max")
    value = ((worst - found["error"]) / (worst - best).where(worst > best)).fillna(1.0)
    return pd.DataFrame({"table": found["table"], "model": found["model"], "rescaled": value})


def network_against_trees(
    results: pd.DataFrame, rows: Mapping[str, int], *, networks: set[str], trees: set[str], path: Path
) -> pd.DataFrame:
    """The lecture's figure, per suite: each table a point, its best network's rescaled score against its best
    tree ensemble's, sized by the table's rows; above the diagonal the networks did better. Returns the points."""
    from quest.evaluation import plots

    found = rescaled(results)
    wide = found.pivot(index="table", columns="model", values="rescaled")
    points = pd.DataFrame(
        {
            "trees": wide[[m for m in wide.columns if m in trees]].max(axis=1),
            "networks": wide[[m for m in wide.columns if m in networks]].max(axis=1),
            "rows": [rows[table] for table in wide.index],
        },
        index=wide.index,
    )
    plots.network_against_trees(points, path)
    return points
