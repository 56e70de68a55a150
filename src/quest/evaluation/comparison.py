"""The comparison, computed: one table row per model over the shared splits (mean, spread, corrected interval,
test score, and the neural-against-classic tests), the verdict in words, and the report that says it.

The question is asked of families. Every learner is neural or classic; the headline is the best neural entrant
(by CV mean) against the best classic one, then each neural entrant against the best classic. A classic row
carries the best neural entrant's tests against it, a neural row its own against the best classic model, so
every p_better is the neural side's probability of being better."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quest.evaluation.metrics import LOWER_IS_BETTER
from quest.evaluation.scoring import ModelResult
from quest.evaluation.stats import Posterior, corrected_ttest, correlated_bayes, mean_interval, win_tie_loss
from quest.learners import wide as wide_recipes

# The comparison's numbers every model run carries, so MLflow's compare view lines them up.
SHARED_KEYS = ("cv_mean", "cv_std", "ci_low", "ci_high", "test_score", "p_value", "p_better", "p_equivalent", "p_worse")
COLUMNS = [
    "model",
    "family",
    "metric",
    "cv_mean",
    "cv_std",
    "ci_low",
    "ci_high",
    "test_score",
    "versus",
    "p_value",
    "p_better",
    "p_equivalent",
    "p_worse",
    "wins",
    "ties",
    "losses",
]
TEXT_COLUMNS = ("model", "family", "metric", "versus")
# Metrics in the target's units: compare.rope is a fraction of the training target's standard deviation there.
RELATIVE_ROPE = ("rmse", "mae")
FAMILIES = ("neural", "classic")


def rope_in_units(rope: float, metric: str, y_train: np.ndarray) -> float:
    """compare.rope in the metric's units: as given, or for RMSE and MAE times the target's standard deviation."""
    return rope * float(np.std(y_train)) if metric in RELATIVE_ROPE else rope


@dataclass(frozen=True)
class Pair:
    """A neural entrant against a classic model on the shared splits, from the neural side (> 0: it is better)."""

    neural: str
    classic: str
    difference: float  # CV means, neural minus classic, signed so that > 0 is better
    posterior: Posterior
    p_value: float  # the corrected resampled t-test, two-sided
    record: tuple[int, int, int]  # the neural entrant's wins, ties and losses, split by split


def pair(
    scores: Mapping[str, np.ndarray], neural: str, classic: str, *, lower: bool, n_train: int, n_test: int, rope: float
) -> Pair:
    gains = (scores[neural] - scores[classic]) * (-1.0 if lower else 1.0)
    return Pair(
        neural,
        classic,
        float(gains.mean()),
        correlated_bayes(gains, n_train=n_train, n_test=n_test, rope=rope),
        corrected_ttest(gains, n_train=n_train, n_test=n_test)[1],
        win_tie_loss(scores[neural], scores[classic], lower_is_better=lower),
    )


def best_of(results: Sequence[ModelResult], kinds: Mapping[str, str], metric: str) -> dict[str, str | None]:
    """Per family, the entrant with the best CV mean (the first listed on a tie); None for an empty family."""
    lower = metric in LOWER_IS_BETTER
    best: dict[str, str | None] = dict.fromkeys(FAMILIES)
    means: dict[str, float] = {}
    for result in results:
        family, mean = kinds[result.name], float(np.mean(result.folds[metric]))
        current = best[family]
        if current is None or (mean < means[current] if lower else mean > means[current]):
            best[family] = result.name
        means[result.name] = mean
    return best


def pairs_of(
    results: Sequence[ModelResult],
    metric: str,
    *,
    kinds: Mapping[str, str],
    n_train: int,
    n_test: int,
    rope: float,
) -> tuple[dict[str, str | None], dict[str, Pair]]:
    """The best of each family, and each model's pair from the neural side: a classic model against the best
    neural entrant, a neural one against the best classic model (none while the other family is empty)."""
    lower = metric in LOWER_IS_BETTER
    scores = {result.name: np.asarray(result.folds[metric], dtype=float) for result in results}
    best = best_of(results, kinds, metric)
    pairs = {}
    for name in scores:
        other = best["classic" if kinds[name] == "neural" else "neural"]
        if other is not None:
            neural, classic = (name, other) if kinds[name] == "neural" else (other, name)
            pairs[name] = pair(scores, neural, classic, lower=lower, n_train=n_train, n_test=n_test, rope=rope)
    return best, pairs


def comparison_table(
    results: Sequence[ModelResult],
    metric: str,
    *,
    kinds: Mapping[str, str],
    n_train: int,
    n_test: int,
    rope: float,
) -> pd.DataFrame:
    """One row per model over the shared splits: mean, (population) std and corrected 95% interval of the primary
    metric, the test score, and the neural-against-classic tests of its pair (`versus` names the other side):
    the corrected t-test's p-value, the Bayesian correlated t-test's P(better), P(equivalent within ±rope),
    P(worse), and the neural side's wins, ties and losses split by split."""
    _, pairs = pairs_of(results, metric, kinds=kinds, n_train=n_train, n_test=n_test, rope=rope)
    rows = []
    for result in results:
        scores = np.asarray(result.folds[metric], dtype=float)
        low, high = mean_interval(scores, n_train=n_train, n_test=n_test)
        row = {
            "model": result.name,
            "family": kinds[result.name],
            "metric": metric,
            "cv_mean": float(scores.mean()),
            "cv_std": float(scores.std()),
            "ci_low": low,
            "ci_high": high,
            "test_score": float(result.test[metric]),
            "versus": "",
            **dict.fromkeys(("p_value", "p_better", "p_equivalent", "p_worse"), float("nan")),
            **dict.fromkeys(("wins", "ties", "losses"), pd.NA),
        }
        found = pairs.get(result.name)
        if found is not None:
            posterior = found.posterior
            other = found.classic if found.neural == result.name else found.neural
            row.update(versus=other, p_value=found.p_value, p_better=posterior.p_better)
            row.update(p_equivalent=posterior.p_equivalent, p_worse=posterior.p_worse)
            row["wins"], row["ties"], row["losses"] = found.record
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"wins": "Int64", "ties": "Int64", "losses": "Int64"})


def probability_text(value: float) -> str:
    """A probability in two decimals that never rounds to a certainty it is not."""
    if 0.995 <= value < 1.0:
        return "> 0.99"
    if 0.0 < value < 0.005:
        return "< 0.01"
    return f"{value:.2f}"


def _is(value: float) -> str:
    """ "= 0.97", or "> 0.99" and "< 0.01" where two decimals would round to a certainty."""
    text = probability_text(value)
    return text if text[0] in "<>" else f"= {text}"


def judge(found: Pair, *, probability: float) -> tuple[str, str]:
    """(outcome, words): better, worse or equivalent when the posterior gives it `probability`, else unclear;
    the corrected t-test's p-value beside it."""
    posterior, neural, classic = found.posterior, found.neural, found.classic
    if posterior.p_better >= probability:
        outcome, words = "better", f"{neural} is better than {classic} with P {_is(posterior.p_better)}"
    elif posterior.p_worse >= probability:
        outcome, words = "worse", f"{neural} is worse than {classic} with P {_is(posterior.p_worse)}"
    elif posterior.p_equivalent >= probability:
        outcome = "equivalent"
        words = (
            f"{neural} and {classic} are practically equivalent (P {_is(posterior.p_equivalent)} that the "
            f"difference is within ±{posterior.rope:.3g})"
        )
    else:
        outcome = "unclear"
        words = (
            f"no clear answer between {neural} and {classic}: P(better) {_is(posterior.p_better)}, "
            f"P(equivalent) {_is(posterior.p_equivalent)}, P(worse) {_is(posterior.p_worse)}"
        )
    return outcome, f"{words}; corrected t-test p = {found.p_value:.3g}"


@dataclass(frozen=True)
class Entry:
    """One neural entrant against a classic model: the difference of their CV means (> 0: the neural side is
    better), the correlated t-test's posterior masses, the corrected t-test's p-value, and the outcome in a word
    and in words."""

    neural: str
    classic: str
    difference: float
    p_better: float
    p_equivalent: float
    p_worse: float
    p_value: float
    outcome: str  # better, worse, equivalent or unclear
    words: str

    @classmethod
    def of(cls, found: Pair, *, probability: float) -> Entry:
        outcome, words = judge(found, probability=probability)
        posterior = found.posterior
        return cls(
            found.neural,
            found.classic,
            found.difference,
            posterior.p_better,
            posterior.p_equivalent,
            posterior.p_worse,
            found.p_value,
            outcome,
            words,
        )

    def judged(self) -> dict[str, object]:
        """What verdict.json says of the pair, its names aside."""
        return {
            "difference": self.difference,
            "p_better": self.p_better,
            "p_equivalent": self.p_equivalent,
            "p_worse": self.p_worse,
            "p_value": self.p_value,
            "outcome": self.outcome,
            "words": self.words,
        }


@dataclass(frozen=True)
class Verdict:
    """The answer at the level of families (verdict.json, through `to_dict`): the best neural entrant against
    the best classic model (`headline`, with its posterior for the picture), every neural entrant against that
    classic model (`neural`, ranked by CV mean), and the winner by CV mean."""

    metric: str
    winner: str
    best_neural: str
    best_classic: str
    headline: Entry
    posterior: dict[str, float]  # the headline's posterior: mean, scale, df
    rope: float  # in the metric's units
    probability: float
    alpha: float
    neural: dict[str, Entry]
    rope_setting: float | str | None = None  # compare.rope as set (auto, or a number), once the stage adds it
    split: str | None = None  # how prepare divided the rows (Schema.split_param) where not at random

    @property
    def words(self) -> str:
        return self.headline.words

    @property
    def outcome(self) -> str:
        return self.headline.outcome

    def to_dict(self) -> dict[str, object]:
        """verdict.json: the headline's numbers beside the names, then the settings and each neural entrant."""
        written: dict[str, object] = {
            "metric": self.metric,
            "winner": self.winner,
            "best_neural": self.best_neural,
            "best_classic": self.best_classic,
            **self.headline.judged(),
            "posterior": self.posterior,
            "rope": self.rope,
            "probability": self.probability,
            "alpha": self.alpha,
            "neural": {
                name: {"neural": entry.neural, "classic": entry.classic, **entry.judged()}
                for name, entry in self.neural.items()
            },
        }
        if self.rope_setting is not None:
            written["rope_setting"] = self.rope_setting
        if self.split is not None:  # a random split's verdict.json is what it was before prepare.split
            written["split"] = self.split
        return written


def verdict(
    results: Sequence[ModelResult],
    metric: str,
    *,
    kinds: Mapping[str, str],
    n_train: int,
    n_test: int,
    rope: float,
    probability: float,
    alpha: float,
) -> Verdict:
    """The answer at the level of families: the best neural entrant against the best classic one (its posterior
    kept for the picture), then each neural entrant against the best classic one; and the winner by CV mean."""
    lower = metric in LOWER_IS_BETTER
    best, pairs = pairs_of(results, metric, kinds=kinds, n_train=n_train, n_test=n_test, rope=rope)
    neural, classic = best["neural"], best["classic"]
    if neural is None or classic is None:
        missing = "neural" if neural is None else "classic"
        raise ValueError(f"the comparison needs a neural and a classic entrant; it has no {missing} one")
    means = {result.name: float(np.mean(result.folds[metric])) for result in results}
    winner = min(means, key=means.get) if lower else max(means, key=means.get)
    ranked = sorted(results, key=lambda result: means[result.name], reverse=not lower)  # stable: ties keep order
    each = [result.name for result in ranked if kinds[result.name] == "neural"]
    posterior = pairs[neural].posterior  # the best neural entrant's pair is with the best classic model
    return Verdict(
        metric=metric,
        winner=winner,
        best_neural=neural,
        best_classic=classic,
        headline=Entry.of(pairs[neural], probability=probability),
        posterior={"mean": posterior.mean, "scale": posterior.scale, "df": posterior.df},
        rope=rope,
        probability=probability,
        alpha=alpha,
        neural={name: Entry.of(pairs[name], probability=probability) for name in each},
    )


def report_markdown(
    table: pd.DataFrame,
    dataset: str,
    task: str,
    outcome: Verdict,
    splits: str,
    *,
    descriptions: Mapping[str, str],
    rope_note: str = "",
    large: bool = False,
    wide: str = "",
    skipped: Mapping[str, str] | None = None,
) -> str:
    """The short report: the answer in words and as a picture, then the table ranked by CV mean. `descriptions`
    says what each row's model is; `rope_note` what ±rope means in the metric's units, when that needs saying;
    `wide`, when the inputs are past compare.wide_threshold, how many there are against it."""
    lines = [
        *_answer_lines(table, dataset, task, outcome, splits, rope_note=rope_note),
        *_table_lines(table, outcome, descriptions=descriptions),
        *_method_lines(outcome, large=large, wide=wide, skipped=skipped or {}),
    ]
    return "\n".join(lines)


def _answer_lines(
    table: pd.DataFrame, dataset: str, task: str, outcome: Verdict, splits: str, *, rope_note: str
) -> list[str]:
    """The question, the answer in words, the headline pair and its posterior; each neural entrant's verdict."""
    metric = outcome.metric
    lower = metric in LOWER_IS_BETTER
    means = table.set_index("model")["cv_mean"]
    neural, classic = outcome.best_neural, outcome.best_classic
    lines = [
        f"# quest: does a neural network beat the classic models on `{dataset}`?",
        "",
        f"Task: {task}. Metric: **{metric}** ({'lower' if lower else 'higher'} is better). Every model saw the "
        f"same {splits} of the training split and the same held-out test split.",
        "",
        f"**The answer: {outcome.words}.**",
        "",
        f"The best neural entrant, {neural} (CV mean {means[neural]:.4f}), against the best classic model, "
        f"{classic} ({means[classic]:.4f}): a difference of {outcome.headline.difference:+.4f} (> 0: the neural "
        f"side is better). The posterior of that difference, with the region of practical equivalence "
        f"±{outcome.rope:.3g}{rope_note} shaded:",
        "",
        "![posterior](posterior.png)",
        "",
    ]
    others = [entry for name, entry in outcome.neural.items() if name != neural]
    if others:
        lines += ["Each neural entrant against the best classic model:", ""]
        lines += [f"- {entry.words}." for entry in outcome.neural.values()]
        lines += [""]
    return lines


def _table_lines(table: pd.DataFrame, outcome: Verdict, *, descriptions: Mapping[str, str]) -> list[str]:
    """Every model ranked by CV mean, the winner in bold, each row with the neural side's tests against it."""
    shown = table.sort_values("cv_mean", ascending=outcome.metric in LOWER_IS_BETTER, kind="stable")
    lines = [
        "| model | family | what | CV mean ± std | 95% interval | test | vs | P(better) | P(equiv.) | P(worse) "
        "| p | W/T/L |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in shown.itertuples():
        name = f"**{row.model}**" if row.model == outcome.winner else row.model
        tested = isinstance(row.versus, str) and row.versus != ""
        tests = (
            f"{row.versus} | {probability_text(row.p_better)} | {probability_text(row.p_equivalent)} | "
            f"{probability_text(row.p_worse)} | {row.p_value:.3g} | {row.wins}/{row.ties}/{row.losses}"
            if tested
            else " | | | | | "
        )
        lines.append(
            f"| {name} | {row.family} | {descriptions[row.model]} | {row.cv_mean:.4f} ± {row.cv_std:.4f} "
            f"| {row.ci_low:.4f} – {row.ci_high:.4f} | {row.test_score:.4f} | {tests} |"
        )
    return lines


def _method_lines(outcome: Verdict, *, large: bool, wide: str, skipped: Mapping[str, str]) -> list[str]:
    """The winner, how the tests read, the stand-ins and the models left out; the comparison's chart."""
    neural, classic = outcome.best_neural, outcome.best_classic
    lines = [
        "",
        f"**Winner (CV mean): {outcome.winner}.** Each row's tests are the neural side's: for a classic row, "
        f"the best neural entrant ({neural}) against it; for a neural row, that entrant against the best classic "
        f"model ({classic}).",
        "",
        "P(better), P(equiv.) and P(worse) come from the Bayesian correlated t-test (Benavoli et al., 2017): the "
        f"posterior of the mean difference over the shared splits, and its mass beyond, within and below "
        f"±{outcome.rope:.3g}. A verdict needs P ≥ {outcome.probability:g}; otherwise there is no clear answer. "
        "p is the Nadeau–Bengio corrected resampled t-test; a large p only says no difference was shown, never "
        "that there is none. Both tests, and the intervals, correct the variance for the overlap of the training "
        "sets. The best of each family is picked on the same splits it is tested on, which flatters it a little. "
        "W/T/L counts the splits on which the neural side won, tied or lost.",
        "",
    ]
    if large:
        lines += [
            "The training split is past `compare.scale_threshold` rows, so the models whose cost grows fastest with "
            'the rows ran as their scalable stand-ins, named in the table ("scalable").',
            "",
        ]
    if wide:
        lines += [
            f"The table is wide ({wide}), so the models whose cost grows fastest with the columns took their wide "
            f'recipes, named in the table after "wide table": {wide_recipes.SUMMARY}.',
            "",
        ]
    if skipped:
        lines += [
            "Left out before they trained, because they would not fit in the memory available "
            "(`QUEST_MEMORY_LIMIT` sets another limit):",
            "",
            *(f"- {name}: {reason}." for name, reason in skipped.items()),
            "",
        ]
    return [*lines, "![comparison](comparison.png)", ""]
