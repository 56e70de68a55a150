"""The comparison, computed: one table row per model over the shared splits (mean, spread, corrected interval,
test score, and the MLP-vs-model test), the verdict, and the report that says it in words."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from quest.evaluation.metrics import LOWER_IS_BETTER
from quest.evaluation.scoring import ModelResult
from quest.evaluation.stats import corrected_ttest, mean_interval, win_tie_loss
from quest.learners.registry import SUBJECT  # the model the question is about: every other row is compared with it

# The comparison's numbers every model run carries, so MLflow's compare view lines them up.
SHARED_KEYS = ("cv_mean", "cv_std", "ci_low", "ci_high", "test_score", "p_value")
COLUMNS = [
    "model",
    "metric",
    "cv_mean",
    "cv_std",
    "ci_low",
    "ci_high",
    "test_score",
    "p_value",
    "wins",
    "ties",
    "losses",
]


def comparison_table(results: list[ModelResult], metric: str, *, n_train: int, n_test: int) -> pd.DataFrame:
    """One row per model over the shared splits: mean, (population) std and corrected 95% interval of the
    primary metric, the test score, and for each baseline the MLP-vs-baseline corrected t-test p-value and the
    MLP's wins/ties/losses against it, split by split."""
    lower = metric in LOWER_IS_BETTER
    mlp = np.asarray(next(r for r in results if r.name == SUBJECT).folds[metric])
    rows = []
    for result in results:
        scores = np.asarray(result.folds[metric])
        low, high = mean_interval(scores, n_train=n_train, n_test=n_test)
        row = {
            "model": result.name,
            "metric": metric,
            "cv_mean": float(scores.mean()),
            "cv_std": float(scores.std()),
            "ci_low": low,
            "ci_high": high,
            "test_score": float(result.test[metric]),
            "p_value": float("nan"),
            "wins": pd.NA,
            "ties": pd.NA,
            "losses": pd.NA,
        }
        if result.name != SUBJECT:
            row["p_value"] = corrected_ttest(mlp - scores, n_train=n_train, n_test=n_test)[1]
            row["wins"], row["ties"], row["losses"] = win_tie_loss(mlp, scores, lower_is_better=lower)
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"wins": "Int64", "ties": "Int64", "losses": "Int64"})


def verdict(table: pd.DataFrame, metric: str, alpha: float) -> dict[str, object]:
    """Winner by CV mean; whether the MLP is better, worse or indistinguishable from the best baseline at `alpha`."""
    lower = metric in LOWER_IS_BETTER
    ranked = table.sort_values("cv_mean", ascending=lower, kind="stable")
    best = ranked[ranked["model"] != SUBJECT].iloc[0]
    mlp = table.set_index("model").loc[SUBJECT]
    margin = float(mlp["cv_mean"] - best["cv_mean"]) * (-1 if lower else 1)  # > 0: the MLP is better
    p_value = float(best["p_value"])
    mlp_is = "indistinguishable from" if not p_value < alpha else ("better than" if margin > 0 else "worse than")
    return {
        "winner": str(ranked.iloc[0]["model"]),
        "best_baseline": str(best["model"]),
        "mlp_minus_best_baseline": margin,
        "p_value_vs_best_baseline": p_value,
        "alpha": alpha,
        "mlp_is": mlp_is,
    }


def report_markdown(
    table: pd.DataFrame,
    metric: str,
    dataset: str,
    task: str,
    outcome: dict,
    splits: str,
    *,
    descriptions: Mapping[str, str],
    large: bool = False,
) -> str:
    """The short report: the table ranked by CV mean, the winner, the margin and whether the gap is significant.
    `descriptions` says what each row's model is."""
    lower = metric in LOWER_IS_BETTER
    shown = table.sort_values("cv_mean", ascending=lower, kind="stable")
    lines = [
        f"# quest: does an MLP beat the classic models on `{dataset}`?",
        "",
        f"Task: {task}. Metric: **{metric}** ({'lower' if lower else 'higher'} is better). Every model saw the "
        f"same {splits} of the training split and the same held-out test split.",
        "",
        "| model | what | CV mean ± std | 95% interval | test | p (MLP vs) | MLP W/T/L |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in shown.itertuples():
        what = descriptions[row.model]
        name = f"**{row.model}**" if row.model == outcome["winner"] else row.model
        p_value = "" if row.model == SUBJECT else f"{row.p_value:.3g}"
        record = "" if row.model == SUBJECT else f"{row.wins}/{row.ties}/{row.losses}"
        lines.append(
            f"| {name} | {what} | {row.cv_mean:.4f} ± {row.cv_std:.4f} | {row.ci_low:.4f} – {row.ci_high:.4f} "
            f"| {row.test_score:.4f} | {p_value} | {record} |"
        )
    margin = outcome["mlp_minus_best_baseline"]
    side = "ahead of" if margin > 0 else ("level with" if margin == 0 else "behind")
    lines += [
        "",
        f"**Winner (CV mean): {outcome['winner']}.** The MLP is {abs(margin):.4f} {side} the best baseline, "
        f"{outcome['best_baseline']}. At α = {outcome['alpha']:g} the MLP is **{outcome['mlp_is']}** "
        f"{outcome['best_baseline']} (p = {outcome['p_value_vs_best_baseline']:.3g}).",
        "",
        "p is the Nadeau–Bengio corrected resampled t-test of the MLP against each model over the shared splits; "
        "the intervals use the same correction, because overlapping training sets make fold scores correlated. "
        "W/T/L counts the splits on which the MLP won, tied or lost.",
        "",
        *(
            [
                "The training split is past `compare.scale_threshold` rows, so the kernel SVM and exact gradient "
                "boosting rows ran as their scalable stand-ins, named in the table.",
                "",
            ]
            if large
            else []
        ),
        "![comparison](comparison.png)",
        "",
    ]
    return "\n".join(lines)
