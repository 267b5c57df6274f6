"""Statistics the paper uses that no installed library offers, written out by hand.

- DeLong's variance of the nonparametric ROC AUC (DeLong, DeLong & Clarke-Pearson, Biometrics
  1988;44:837), computed with the midrank algorithm of Sun & Xu (IEEE Signal Process Lett
  2014;21:1389). The paper's AUC confidence intervals come from pROC, which uses the same.
- Steel's many-to-one rank test (Steel, Biometrics 1959;15:560): each phase-model's session
  accuracies against the triphasic model's, after a Kruskal-Wallis test (paper, Statistics).

Everything else (the AUC itself, ranks, the normal distribution) comes from scipy / scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, special, stats

Alternative = Literal["two-sided", "less", "greater"]


def delong_auc_ci(
    y_true: ArrayLike, score: ArrayLike, *, alpha: float = 0.05
) -> tuple[float, float, float, float]:
    """The nonparametric AUC with DeLong's variance and a Wald confidence interval.

    Parameters
    ----------
    y_true : array (n,) of 0/1 or bool
        1 for a positive case (here: malignant, category A or B).
    score : array (n,)
        Any rating where higher means "more likely positive"; ties count one half.
    alpha : float
        1 - confidence level of the two-sided interval (0.05 gives a 95 % CI).

    Returns
    -------
    (auc, low, high, variance)
        ``auc`` equals ``sklearn.metrics.roc_auc_score``; ``low``/``high`` are
        ``auc -/+ z(1 - alpha/2) * sqrt(variance)`` clipped to [0, 1], as pROC's ``ci.auc``.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and score must be 1-D of equal length, got {y.shape} and {s.shape}")
    pos, neg = s[y], s[~y]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs >= 2 positives and >= 2 negatives, got {m} and {n}")
    # Sun & Xu: a case's midrank among all cases minus its midrank within its own class counts
    # the cases of the other class below it (ties one half). DeLong's structural components:
    # v10 (m,) the fraction of negatives below each positive, v01 (n,) of positives above each
    # negative.
    rank_all = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (rank_all[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (rank_all[m:] - stats.rankdata(neg)) / m
    auc = float(v10.mean())
    variance = float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    half = stats.norm.ppf(1 - alpha / 2) * np.sqrt(variance)
    return auc, float(max(0.0, auc - half)), float(min(1.0, auc + half)), variance


def _steel_null_moments(
    n_control: int, n_treatments: np.ndarray, pooled: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (k,), covariance (k, k) and correlation loadings (k,) of the k Mann-Whitney counts.

    The null is random allocation of the pooled values to the groups, conditional on their tie
    pattern (Scholz, "On Steel's test with ties", arXiv:2308.05873). Two counts share only the
    control, which gives the one-factor form W_i = n_i * V_0 + V_i with independent V's:
    Cov(W_i, W_j) = n_i n_j s0^2 (i != j) and Var(W_i) = n_i^2 s0^2 + s_i^2, where without ties
    s0^2 = n0/12 and s_i^2 = n0 n_i (n0 + 1)/12, i.e. Var(W_i) = n0 n_i (n0 + n_i + 1)/12 and
    corr(W_i, W_j) = sqrt(n_i n_j / ((n0 + n_i + 1)(n0 + n_j + 1))), 1/2 for large equal groups
    (Steel's value). The correlation is a_i a_j with loadings a_i = n_i s0 / sd(W_i).
    """
    n = len(pooled)
    _, d = np.unique(pooled, return_counts=True)
    d2 = float(np.sum(d * (d - 1))) / (n * (n - 1))
    d3 = float(np.sum(d * (d - 1) * (d - 2))) / (n * (n - 1) * (n - 2))
    n0, ni = n_control, n_treatments
    s0_sq = n0 / 12 * (1 - d3)
    si_sq = n0 * ni / 12 * (n0 + 1 - 3 * d2 - (n0 - 2) * d3)
    cov = np.outer(ni, ni) * s0_sq + np.diag(si_sq)
    return n0 * ni / 2, cov, ni * np.sqrt(s0_sq / np.diag(cov))


def _joint_tail(z: float, loadings: np.ndarray, alternative: Alternative) -> float:
    """P(the extreme of k correlated standard normals is at least as extreme as z).

    With corr(Z_i, Z_j) = a_i a_j (``loadings`` a, shape (k,)), Z_i = a_i U + sqrt(1 - a_i^2) E_i
    for independent standard normals U, E_i; so the k-variate normal probability is a 1-D integral
    over U, evaluated deterministically (it agrees with scipy.stats.multivariate_normal.cdf).
    """
    rest = np.sqrt(1 - loadings**2)

    def inside(u: float) -> float:
        centre = loadings * u
        if alternative == "two-sided":
            a = abs(z)
            p = special.ndtr((a - centre) / rest) - special.ndtr((-a - centre) / rest)
        elif alternative == "greater":
            p = special.ndtr((z - centre) / rest)
        else:
            p = special.ndtr((centre - z) / rest)
        # special.ndtr rather than stats.norm: quad calls this a few hundred times
        return float(np.exp(-u * u / 2) / np.sqrt(2 * np.pi) * np.prod(p))

    value, _ = integrate.quad(inside, -np.inf, np.inf, epsabs=1e-12, epsrel=1e-10)
    return float(min(1.0, max(0.0, 1.0 - value)))


def steel_many_to_one(
    control: ArrayLike, *treatments: ArrayLike, alternative: Alternative = "two-sided"
) -> list[tuple[float, float]]:
    """Steel's (1959) many-to-one rank test of each treatment group against one control group.

    Each treatment is ranked jointly with the control only (pairwise rankings). Its statistic is
    the standardised Mann-Whitney count of (treatment > control) pairs, ties one half, so
    positive means the treatment tends higher than the control. The p-values are single-step
    adjusted for the k comparisons from the joint normal distribution of the k statistics
    (see ``_steel_null_moments``), with no continuity correction.

    Parameters
    ----------
    control : array (n0,)
        The control group, e.g. the five session accuracies of the triphasic model.
    *treatments : arrays (n_i,)
        The k >= 1 treatment groups.
    alternative : "two-sided" (max |Z|), "less" (min Z) or "greater" (max Z)

    Returns
    -------
    list of k (statistic, p_value)
        p_value of treatment i is P(the k-variate extreme statistic is at least as extreme as
        Z_i); the smallest one is the overall Steel p-value.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be two-sided, less or greater, got {alternative!r}")
    x0 = np.asarray(control, dtype=float)
    groups: Sequence[np.ndarray] = [np.asarray(t, dtype=float) for t in treatments]
    if not groups:
        raise ValueError("steel_many_to_one needs at least one treatment group")
    if min(len(g) for g in (x0, *groups)) < 2:
        raise ValueError("every group needs at least two observations")
    pooled = np.concatenate([x0, *groups])
    if np.all(pooled == pooled[0]):
        return [(0.0, 1.0) for _ in groups]
    n_treat = np.array([len(g) for g in groups], dtype=float)
    counts = np.array([stats.mannwhitneyu(g, x0, method="asymptotic").statistic for g in groups])
    mean, cov, loadings = _steel_null_moments(len(x0), n_treat, pooled)
    z = (counts - mean) / np.sqrt(np.diag(cov))
    return [(float(zi), _joint_tail(float(zi), loadings, alternative)) for zi in z]


def kruskal_wallis(*groups: ArrayLike) -> tuple[float, float]:
    """Kruskal-Wallis H test across groups (arrays (n_i,)): (H, p), via scipy.stats.kruskal."""
    result = stats.kruskal(*groups)
    return float(result.statistic), float(result.pvalue)
