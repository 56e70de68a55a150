import math

import numpy as np
import pytest

from quest.evaluation.stats import corrected_ttest, mean_interval, win_tie_loss


def test_corrected_ttest_matches_a_hand_computed_example():
    # J = 4 differences, each split trained on 80 rows and tested on 20:
    # mean 0.03, sample variance 0.002 / 3, correction 1/4 + 20/80 = 0.5,
    # t = 0.03 / sqrt(0.5 * 0.002 / 3) = 1.64316767..., two-sided p with 3 degrees of freedom.
    t, p = corrected_ttest(np.array([0.02, 0.04, 0.00, 0.06]), n_train=80, n_test=20)
    assert t == pytest.approx(0.03 / math.sqrt(0.5 * 0.002 / 3), rel=1e-12)
    assert t == pytest.approx(1.6431676725, rel=1e-9)
    assert p == pytest.approx(0.198892188, rel=1e-6)


def test_the_correction_is_more_cautious_than_a_naive_paired_test():
    differences = np.array([0.01, 0.03, 0.02, 0.04, 0.0, 0.03, 0.02, 0.01, 0.03, 0.02])
    _, corrected = corrected_ttest(differences, n_train=90, n_test=10)
    from scipy import stats

    naive = stats.ttest_1samp(differences, 0.0).pvalue
    assert naive < 0.001 < corrected


def test_degenerate_cases():
    assert corrected_ttest(np.zeros(5), n_train=8, n_test=2) == (0.0, 1.0)
    t, p = corrected_ttest(np.full(5, 0.1), n_train=8, n_test=2)
    assert t == math.inf and p == 0.0
    assert all(math.isnan(v) for v in corrected_ttest(np.array([0.1]), n_train=8, n_test=2))


def test_mean_interval_uses_the_corrected_error():
    low, high = mean_interval(np.array([0.8, 0.9, 0.7, 1.0]), n_train=30, n_test=10, level=0.95)
    half = 3.1824463052837078 * math.sqrt((1 / 4 + 10 / 30) * np.var([0.8, 0.9, 0.7, 1.0], ddof=1))
    assert (low, high) == pytest.approx((0.85 - half, 0.85 + half), rel=1e-12)


def test_win_tie_loss():
    assert win_tie_loss(np.array([0.9, 0.8, 0.7]), np.array([0.8, 0.8, 0.9]), lower_is_better=False) == (1, 1, 1)
    assert win_tie_loss(np.array([1.0, 2.0]), np.array([2.0, 2.5]), lower_is_better=True) == (2, 0, 0)
