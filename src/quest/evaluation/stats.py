"""Statistics for comparing models evaluated on the same cross-validation splits.

Fold scores from k-fold CV are not independent: every pair of training sets overlaps, so the naive standard
error of a mean over folds is too small and naive paired t-tests find differences that are not there.
Nadeau & Bengio (2003) correct the variance by (1/J + n_test/n_train) for J = folds x repeats scores, which
is what the interval and the paired test below use.

A p-value cannot say that two models are equivalent. The Bayesian correlated t-test (Benavoli, Corani, Demšar
& Zaffalon, JMLR 2017) puts a Student-t posterior on the mean difference, with the same corrected variance,
and reads off the probability that it lies below, within or above a region of practical equivalence (ROPE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


def _corrected_standard_error(values: np.ndarray, n_train: int, n_test: int) -> float:
    return math.sqrt((1.0 / len(values) + n_test / n_train) * float(np.var(values, ddof=1)))


def corrected_ttest(differences: np.ndarray, *, n_train: int, n_test: int) -> tuple[float, float]:
    """Nadeau-Bengio corrected resampled t-test on per-split score differences: (t, two-sided p), df = J - 1."""
    differences = np.asarray(differences, dtype=float)
    if len(differences) < 2:
        return float("nan"), float("nan")
    mean = float(differences.mean())
    error = _corrected_standard_error(differences, n_train, n_test)
    if error == 0.0:  # identical on every split: no evidence either way, or an exact constant gap
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / error
    return t, float(2.0 * scipy_stats.t.sf(abs(t), df=len(differences) - 1))


def mean_interval(scores: np.ndarray, *, n_train: int, n_test: int, level: float = 0.95) -> tuple[float, float]:
    """A `level` interval for the mean CV score, with the same corrected standard error."""
    scores = np.asarray(scores, dtype=float)
    if len(scores) < 2:
        return float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df=len(scores) - 1)) * _corrected_standard_error(
        scores, n_train, n_test
    )
    mean = float(scores.mean())
    return mean - half, mean + half


def win_tie_loss(first: np.ndarray, second: np.ndarray, *, lower_is_better: bool) -> tuple[int, int, int]:
    """How often `first` beats, equals or loses to `second` on the shared splits."""
    gain = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if lower_is_better:
        gain = -gain
    return int((gain > 0).sum()), int((gain == 0).sum()), int((gain < 0).sum())


@dataclass(frozen=True)
class Posterior:
    """The Bayesian correlated t-test's posterior of the mean difference (first minus second, oriented so that
    > 0 means the first is better), and its mass below -rope, within ±rope and above +rope."""

    mean: float
    scale: float  # of the Student t; 0 when every split gave the same difference
    df: int
    rope: float
    p_better: float
    p_equivalent: float
    p_worse: float


def correlated_bayes(differences: np.ndarray, *, n_train: int, n_test: int, rope: float) -> Posterior:
    """Benavoli et al.'s correlated t-test on per-split gains (> 0: the first model better). With the correlation
    rho = n_test / (n_train + n_test), rho / (1 - rho) = n_test / n_train: Nadeau and Bengio's correction, as in
    `corrected_ttest`. baycomp's `two_on_single` is the same with rho = 1 / folds."""
    gains = np.asarray(differences, dtype=float)
    nan = float("nan")
    if len(gains) < 2:
        return Posterior(nan, nan, 0, rope, nan, nan, nan)
    mean = float(gains.mean())
    scale = _corrected_standard_error(gains, n_train, n_test)
    if scale == 0.0:  # the same gain on every split: all the mass at the mean
        better, worse = float(mean > rope), float(mean < -rope)
        equivalent = 1.0 - better - worse
    else:
        t = scipy_stats.t(len(gains) - 1, loc=mean, scale=scale)
        better, worse = float(t.sf(rope)), float(t.cdf(-rope))
        equivalent = float(t.cdf(rope) - t.cdf(-rope))  # exactly 0 without a ROPE
    return Posterior(mean, scale, len(gains) - 1, rope, better, equivalent, worse)
