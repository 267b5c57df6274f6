"""Tests for livercore.stats: DeLong's AUC variance and Steel's many-to-one test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from livercore.stats import (
    _steel_null_moments,
    delong_auc_ci,
    kruskal_wallis,
    steel_many_to_one,
)

# --- DeLong ---------------------------------------------------------------------------------


def _delong_by_definition(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong 1988's structural components written as the plain m x n comparison loop."""
    pos, neg = s[y == 1], s[y == 0]
    psi = np.array([[1.0 if x > z else 0.5 if x == z else 0.0 for z in neg] for x in pos])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))


def test_delong_tiny_example_by_hand():
    """Positives (3, 2, 2), negatives (1, 2). Comparisons: V10 = (1, 3/4, 3/4), V01 = (1, 2/3);
    AUC = 5/6; variance = var(V10)/3 + var(V01)/2 = (1/48)/3 + (1/18)/2 = 5/144."""
    auc, _, _, var = delong_auc_ci([1, 1, 1, 0, 0], [3, 2, 2, 1, 2])
    assert auc == pytest.approx(5 / 6)
    assert var == pytest.approx(5 / 144)


def test_delong_auc_equals_sklearn_roc_auc_score():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = rng.integers(1, 5, 60)  # an ordinal score with many ties, like the clinical score
    assert delong_auc_ci(y, s)[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_delong_variance_equals_structural_components_loop():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.normal(size=50) + y, 1)
    auc, var = _delong_by_definition(y, s)
    got = delong_auc_ci(y, s)
    assert (got[0], got[3]) == pytest.approx((auc, var), abs=1e-12)


def test_delong_matches_published_hanley_mcneil_example():
    """Hanley & McNeil (Radiology 1982;143:29, Table 1): 109 CT images rated 1-5; 58 normal with
    ratings 1-5 counted (33, 6, 6, 11, 2), 51 abnormal (3, 2, 2, 11, 33). Stata's manual, [R]
    roctab, Example 1 (``roctab disease rating`` on hanley.dta, DeLong standard error) prints
    ROC area 0.8932, Std. Err. 0.0307, asymptotic normal 95 % CI 0.83295 to 0.95339."""
    counts_normal, counts_abnormal = (33, 6, 6, 11, 2), (3, 2, 2, 11, 33)
    rating = np.repeat(np.tile(np.arange(1, 6), 2), counts_normal + counts_abnormal)
    disease = np.repeat([0, 1], [58, 51])
    auc, low, high, var = delong_auc_ci(disease, rating)
    assert round(auc, 4) == 0.8932
    assert round(math.sqrt(var), 4) == 0.0307
    assert (round(low, 5), round(high, 5)) == (0.83295, 0.95339)


def test_delong_interval_is_clipped_to_unit_interval():
    """Positives (2, 3), negatives (1, 2.5): AUC 3/4, variance 1/16 + 1/16 = 1/8, so the upper
    Wald limit 0.75 + 1.96 * 0.354 exceeds 1 and is clipped."""
    _, low, high, var = delong_auc_ci([1, 1, 0, 0], [2, 3, 1, 2.5])
    assert var == pytest.approx(1 / 8)
    assert high == 1.0
    assert low == pytest.approx(0.75 - stats.norm.ppf(0.975) * math.sqrt(1 / 8))


def test_delong_alpha_sets_the_interval_width():
    y, s = [1, 1, 1, 0, 0], [3, 2, 2, 1, 2]
    auc, _, high, var = delong_auc_ci(y, s, alpha=0.5)
    assert high - auc == pytest.approx(stats.norm.ppf(0.75) * math.sqrt(var))


def test_delong_needs_two_cases_of_each_class():
    with pytest.raises(ValueError, match="positives"):
        delong_auc_ci([1, 0, 0], [0.9, 0.1, 0.2])


# --- Steel ----------------------------------------------------------------------------------

# Steel (Biometrics 1959;15:560), IQ by birth condition; control first. Printed with its Steel
# statistic in the documentation of R package kSamples (F. Scholz), Steel.test:
# Steel.test(z1, z2, z3, z4, alternative = "less") -> test statistic -1.77126551,
# asympt. P-value 0.09459608 (simulated 0.10474 with 1e5 permutations).
STEEL_IQ = (
    [103, 111, 136, 106, 122, 114],
    [119, 100, 97, 89, 112, 86],
    [89, 132, 86, 114, 114, 125],
    [92, 114, 86, 119, 131, 94],
)


def test_steel_matches_published_kSamples_example():
    result = steel_many_to_one(*STEEL_IQ, alternative="less")
    statistic, p_value = min(result)
    assert statistic == pytest.approx(-1.77126551, abs=1e-8)
    assert p_value == pytest.approx(0.09459608, abs=1e-7)


def test_steel_with_one_treatment_is_the_mann_whitney_test():
    control, treatment = [1, 2, 2, 3, 5, 8], [2, 4, 5, 5, 9]
    ((statistic, p_value),) = steel_many_to_one(control, treatment)
    mw = stats.mannwhitneyu(treatment, control, use_continuity=False, method="asymptotic")
    assert p_value == pytest.approx(mw.pvalue, abs=1e-9)
    assert statistic > 0  # the treatment tends higher than the control


def test_steel_null_moments_equal_the_exact_permutation_moments():
    """All 7!/(3! 2! 2!) = 210 allocations of tied values to a control of 3 and two treatments
    of 2: the exact mean and covariance of the Mann-Whitney counts equal the closed forms."""
    pooled = np.array([1, 1, 2, 3, 3, 3, 4], dtype=float)
    counts = []
    for ctrl in itertools.combinations(range(7), 3):
        rest = [i for i in range(7) if i not in ctrl]
        for first in itertools.combinations(rest, 2):
            second = [i for i in rest if i not in first]
            counts.append(
                [stats.mannwhitneyu(pooled[list(g)], pooled[list(ctrl)]).statistic for g in (first, second)]
            )
    counts_arr = np.array(counts)
    mean, cov, _ = _steel_null_moments(3, np.array([2.0, 2.0]), pooled)
    assert len(counts_arr) == 210
    np.testing.assert_allclose(mean, counts_arr.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(cov, np.cov(counts_arr.T, ddof=0), atol=1e-12)


def test_steel_correlation_without_ties_is_the_closed_form():
    """n0 = 4, n = (3, 5): corr = sqrt(3 * 5 / ((4 + 3 + 1)(4 + 5 + 1))) = sqrt(15/80)."""
    _, cov, loadings = _steel_null_moments(4, np.array([3.0, 5.0]), np.arange(12.0))
    corr = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    assert corr == pytest.approx(math.sqrt(15 / 80))
    assert loadings[0] * loadings[1] == pytest.approx(corr)


def test_steel_p_value_equals_multivariate_normal_cdf():
    """The one-factor integral equals scipy's k-variate normal probability (unequal sizes)."""
    control, treatments = [5, 7, 9, 11, 13], ([1, 2, 6, 8], [10, 12, 14, 15, 16, 17])
    result = steel_many_to_one(control, *treatments)
    pooled = np.concatenate([control, *treatments]).astype(float)
    _, cov, _ = _steel_null_moments(5, np.array([4.0, 6.0]), pooled)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    mvn = stats.multivariate_normal(mean=np.zeros(2), cov=corr)
    for statistic, p_value in result:
        a = np.full(2, abs(statistic))
        assert p_value == pytest.approx(1 - mvn.cdf(a, lower_limit=-a, rng=0), abs=1e-5)


def test_steel_adjusted_p_lies_between_unadjusted_and_bonferroni():
    """Four groups of five sessions each entirely below a control of five (the paper's situation
    for the unenhanced, arterial and delayed models): U = 0, mean 12.5, variance 5*5*11/12, so
    Z = -2.6112. The joint p-value must exceed the single-test one and stay below 4x it. (The
    paper reports .031/.030; its session accuracies, and so its ties, are not published.)"""
    control = [0.82, 0.84, 0.85, 0.86, 0.90]
    treatments = [np.linspace(0.1, 0.2, 5) + 0.2 * i for i in range(4)]
    result = steel_many_to_one(control, *treatments)
    z = -12.5 / math.sqrt(25 * 11 / 12)
    single = 2 * stats.norm.cdf(z)
    for statistic, p_value in result:
        assert statistic == pytest.approx(z)
        assert single < p_value < 4 * single


def test_steel_needs_two_observations_per_group():
    with pytest.raises(ValueError, match="two observations"):
        steel_many_to_one([1, 2, 3], [4])


def test_steel_all_tied_gives_no_evidence():
    assert steel_many_to_one([1, 1], [1, 1], [1, 1]) == [(0.0, 1.0), (0.0, 1.0)]


# --- Kruskal-Wallis -------------------------------------------------------------------------


def test_kruskal_wallis_by_hand():
    """Groups (1, 2, 3) and (4, 5, 6): rank sums 6 and 15, H = 12/(6*7) * (36/3 + 225/3) - 21
    = 27/7 on 1 degree of freedom."""
    h, p = kruskal_wallis([1, 2, 3], [4, 5, 6])
    assert h == pytest.approx(27 / 7)
    assert p == pytest.approx(stats.chi2.sf(27 / 7, 1))
    assert type(h) is float and type(p) is float
