"""Bootstrap and t intervals and p-values over resampled draws, for CKA and CER alike.

Percentile, basic (reverse-percentile), BCa and Student-t intervals (with
Banerjee's (1960) interval for a variance in parts of their own df), the
bootstrap p-value of "the statistic is 0" and the permutation p-value
(Phipson & Smyth 2010). ``cka_interval`` is the choice the analysis reports
for CKA draws; each method's coverage is measured by
``benchmarks/bench_coverage.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, §13.3) over axis 0 of ``draws``.

    :func:`cka_interval`'s interval for debiased CKA, and the interval of the
    measures other than CKA; for biased CKA at small n or weak association it
    covers far less than its level (``benchmarks/bench_coverage.py``).
    """
    tail = 100 * (1 - level) / 2
    return np.nanpercentile(draws, tail, axis=0), np.nanpercentile(draws, 100 - tail, axis=0)


def basic_interval(draws: np.ndarray, estimate, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Basic (reverse-percentile) interval [2θ̂ − q_hi, 2θ̂ − q_lo] (Davison & Hinkley 1997, Eq. 5.6).

    It takes the bootstrap's shift θ* − θ̂ for the estimator's shift θ̂ − θ and
    removes it, where the percentile interval adds it a second time.
    """
    low, high = percentile_interval(draws, level)
    return 2 * np.asarray(estimate) - high, 2 * np.asarray(estimate) - low


def student_se(draws: np.ndarray, n: int) -> np.ndarray:
    """Bootstrap standard error with the small-sample factor: √(n/(n−1)) · sd*(θ*) over axis 0.

    For a mean the bootstrap variance is (n−1)/n · s²/n; the factor makes it
    s²/n, the variance the t-interval wants (the bootstrap's "narrowness bias",
    Hesterberg 2015). NaN for n < 2.
    """
    if n < 2:
        return np.full(np.shape(draws)[1:], np.nan)
    return np.sqrt(n / (n - 1)) * np.std(draws, axis=0)


def t_interval(
    estimate, parts: Sequence[tuple[np.ndarray, float]], level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """θ̂ ± √(Σ_j t²_{df_j, (1+level)/2} · v_j) for independent variance parts (v_j, df_j) of Var θ̂.

    One part (v = se²): Student's t interval (Efron & Tibshirani 1993, §12.4;
    on a bootstrap s.e., §13.2). With se = :func:`student_se` and df = n − 1 it
    is the CER gap's interval: for a ratio of sums over n = 50–400 utterances
    with heavy-tailed per-utterance errors it covered 93.0–95.6 % where the
    basic interval fell to 91.6 % (``benchmarks/bench_coverage.py``). Several
    parts: Banerjee's (1960) interval for a sum of variances with their own df,
    conservative whatever their ratio; over two or three seeds it covered
    95–96 %, where Satterthwaite's df fell to 90.5 % and 92.7 %.
    """
    half = _half_width(parts, level)
    return np.asarray(estimate) - half, np.asarray(estimate) + half


def _half_width(parts: Sequence[tuple[np.ndarray, float]], level: float) -> np.ndarray:
    from scipy.stats import t

    return np.sqrt(sum(t.ppf((1 + level) / 2, df) ** 2 * np.asarray(v, dtype=np.float64) for v, df in parts))


def t_pvalue(estimate, parts: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """Two-sided p of "θ = 0" matching :func:`t_interval`: the α whose 1 − α interval ends at 0.

    p < 1 − level exactly where that interval excludes 0. One part: 2·P(T_df ≥ |θ̂| / se);
    zero variance gives p = 1 for θ̂ = 0 and 0 otherwise; NaN where a variance is NaN.
    """
    from scipy.optimize import brentq
    from scipy.stats import t

    estimate = np.abs(np.asarray(estimate, dtype=np.float64))
    variances = np.broadcast_arrays(estimate, *(np.asarray(v, dtype=np.float64) for v, _ in parts))[1:]
    if len(parts) == 1:
        se, df = np.sqrt(variances[0]), parts[0][1]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(se > 0, estimate / se, np.where(estimate == 0, 0.0, np.inf))
        return np.where(np.isnan(se), np.nan, 2 * t.sf(z, df))

    def one(e: float, *vs: float) -> float:
        cell = [(v, df) for v, (_, df) in zip(vs, parts)]
        if np.isnan([e, *vs]).any():
            return np.nan
        if e == 0 or _half_width(cell, 1 - 1e-12) < e:
            return float(e == 0)
        return brentq(lambda alpha: _half_width(cell, 1 - alpha) - e, 1e-12, 1.0)

    return np.vectorize(one, otypes=[float])(estimate, *variances)


def bca_interval(
    draws: np.ndarray, estimate, jackknife: np.ndarray | None = None, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected (and accelerated) percentile interval (Efron 1987; Efron & Tibshirani 1993, §14.3).

    z₀ = Φ⁻¹(P*(θ* < θ̂) + ½P*(θ* = θ̂)); with ``jackknife`` values (G, ...) of
    the leave-one-group-out estimates the acceleration
    a = Σ(θ̄ − θ₍ᵢ₎)³ / (6 (Σ(θ̄ − θ₍ᵢ₎)²)^{3/2}), else a = 0 (the BC interval).
    The interval is the bootstrap quantiles at Φ(z₀ + (z₀ ± z)/(1 − a(z₀ ± z))).
    """
    from scipy.stats import norm

    estimate = np.asarray(estimate, dtype=np.float64)
    below = (draws < estimate).mean(axis=0) + 0.5 * (draws == estimate).mean(axis=0)
    z0 = norm.ppf(np.clip(below, 1 / (2 * len(draws)), 1 - 1 / (2 * len(draws))))
    accel = 0.0
    if jackknife is not None:
        spread = jackknife.mean(axis=0) - jackknife
        with np.errstate(invalid="ignore", divide="ignore"):
            accel = np.nan_to_num(np.sum(spread**3, axis=0) / (6 * np.sum(spread**2, axis=0) ** 1.5))
    bounds = []
    for z in norm.ppf([(1 - level) / 2, (1 + level) / 2]):
        q = norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        bounds.append(_quantiles(draws, q))
    return bounds[0], bounds[1]


def _quantiles(draws: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The q-quantile of each cell of ``draws`` (R, ...) with its own q (...) (linear interpolation)."""
    ordered = np.sort(draws, axis=0)
    position = np.asarray(q) * (len(draws) - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, len(draws) - 1)
    low = np.take_along_axis(ordered, below[None], axis=0)[0]
    high = np.take_along_axis(ordered, above[None], axis=0)[0]
    return low + (position - below) * (high - low)


def cka_interval(
    draws: np.ndarray, estimate, level: float = 0.95, *, debiased: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The interval the analysis reports for CKA (or a difference of CKAs) from tie-corrected draws.

    Debiased estimator: percentile (it covered the population value at 92–98 %
    in every regime of ``benchmarks/bench_coverage.py``); biased: basic, the
    better of the uncalibrated ones there.
    """
    return percentile_interval(draws, level) if debiased else basic_interval(draws, estimate, level)


def bootstrap_pvalue(draws: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value for "the statistic is 0": 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)), at most 1."""
    return np.minimum(1.0, 2 * np.minimum((draws <= 0).mean(axis=0), (draws >= 0).mean(axis=0)))


def permutation_pvalue(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided p = (1 + #{null ≥ observed}) / (1 + R) (Phipson & Smyth 2010)."""
    return (1 + (null >= observed[None]).sum(axis=0)) / (1 + len(null))
