import math

import numpy as np
import pytest

from quest.evaluation.stats import corrected_ttest, correlated_bayes, mean_interval, win_tie_loss


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


def test_the_bayesian_correlated_ttest_gives_baycomps_numbers():
    """baycomp's two_on_single(x, y, rope, runs) is (P(x better), P(equivalent), P(y better)) for higher-is-better
    scores, with rho = 1/folds; quest's rho = n_test / (n_train + n_test) is the same when folds are equal."""
    import baycomp

    rng = np.random.default_rng(7)
    for folds, repeats, shift, rope in [(5, 3, 0.004, 0.01), (10, 1, 0.03, 0.01), (3, 2, -0.02, 0.005), (5, 2, 0, 0.1)]:
        x = rng.normal(0.85 + shift, 0.02, folds * repeats)
        y = rng.normal(0.85, 0.02, folds * repeats)
        # n rows split into `folds` equal parts: n_test = n / folds, n_train = n - n_test
        posterior = correlated_bayes(x - y, n_train=100 * (folds - 1), n_test=100, rope=rope)
        expected = baycomp.two_on_single(x, y, rope=rope, runs=repeats)
        found = (posterior.p_better, posterior.p_equivalent, posterior.p_worse)
        assert found == pytest.approx(tuple(map(float, expected)), abs=1e-12)
        assert sum(found) == pytest.approx(1.0)


def test_the_bayesian_test_by_hand():
    # gains 0.01, 0.03 (mean 0.02, var 0.0002), n_test/n_train = 1/4: scale sqrt((1/2 + 1/4) * 0.0002) = 0.01225,
    # a Student t with 1 degree of freedom (Cauchy): P(> 0.01) = 1/2 + atan((0.02 - 0.01) / scale) / pi.
    posterior = correlated_bayes(np.array([0.01, 0.03]), n_train=40, n_test=10, rope=0.01)
    scale = math.sqrt(0.75 * 0.0002)
    assert posterior.scale == pytest.approx(scale)
    assert posterior.p_better == pytest.approx(0.5 + math.atan(0.01 / scale) / math.pi)
    assert posterior.p_worse == pytest.approx(0.5 - math.atan(0.03 / scale) / math.pi)
    # The same gain on every split: all the mass at it, inside the ROPE or beyond it.
    assert correlated_bayes(np.full(6, 0.02), n_train=40, n_test=10, rope=0.01).p_better == 1.0
    flat = correlated_bayes(np.full(6, 0.005), n_train=40, n_test=10, rope=0.01)
    assert (flat.p_better, flat.p_equivalent, flat.p_worse) == (0.0, 1.0, 0.0)
    # Without a ROPE nothing is ever equivalent; with a wide one everything is.
    assert correlated_bayes(np.array([0.01, 0.03]), n_train=40, n_test=10, rope=0.0).p_equivalent == 0.0
    assert correlated_bayes(np.array([0.01, 0.03]), n_train=40, n_test=10, rope=10.0).p_equivalent > 0.99
