"""Linear CKA of many resamples of the same rows, in Gram space (the fast path of the
cross-task statistics; :mod:`cka_probe.cka.stats` is the general one for any statistic).

The cross-task statistics (bootstrap intervals over utterances, permutation
p-values) recompute a whole L_a × L_b CKA matrix hundreds of times. With one
row per utterance (per-utterance mean representations, n a few hundred to a
few thousand), every resample is an index vector into the same n utterances,
so each layer's linear Gram matrix ``K = X Xᵀ`` (n, n) is built once and a
resample only gathers its rows and columns; the HSIC terms of all layer pairs
are then one matrix product of the flattened Gram matrices.

Estimators (Kornblith et al. 2019, Eq. 2–4; Song et al. 2012, Eq. 5):

* biased:   HSIC₀(K, L) = tr(K H L H) / (n−1)², H = I − 11ᵀ/n
* debiased: HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)),
  K̃ = K with its diagonal set to zero
* CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))

Ties. A bootstrap resample holds copies of utterances; a pair of copies of one
utterance is a "self" pair, which the biased estimator over-weights (its upward
bias, ≈ d/(n+d) for unrelated representations, would grow with every copy and
push the whole bootstrap distribution above the point estimate). The pairs of
distinct positions holding the same utterance are therefore left out of every
HSIC sum, as the diagonal is in HSIC₁; for the identity resample nothing is
left out and the result is the usual estimator.

The Grams are of the centred rows (x − x̄ over the original n utterances):
CKA is translation invariant, but leaving tie pairs out of an uncentred Gram
is not, and a layer with a large mean offset then had its debiased resamples
pulled far below or above its estimate.

Precision: Gram matrices and all sums are float64. Memory: 8·L·n² bytes per
model side (12 layers, n = 2,000: 384 MB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cka_probe.cka.hsic import gram_hsic
from cka_probe.errors import CKAProbeError


@dataclass(frozen=True)
class HSICTerms:
    """What one side contributes to HSIC for one resample (L layers, n rows).

    flat (L, n²): the (masked, centred or zero-diagonal) Gram matrices, flattened;
    total (L,): 1ᵀK̃1 and rowsum (L, n): K̃1, used by the debiased estimator only.
    """

    flat: np.ndarray
    total: np.ndarray
    rowsum: np.ndarray


class GramSet:
    """Linear Gram matrices ``K_l = X_l X_lᵀ`` of one model's layers over the same n utterances.

    ``layers`` maps layer name -> (n, d_l) array, in model order.
    """

    def __init__(self, layers: Mapping[str, np.ndarray], *, source: str = "") -> None:
        self.names: list[str] = list(layers)
        arrays = [_checked(np.asarray(x, dtype=np.float64), f"{source}{name}") for name, x in layers.items()]
        if len({x.shape[0] for x in arrays}) > 1:
            raise CKAProbeError(f"{source}: layers have different numbers of rows {[x.shape[0] for x in arrays]}")
        self.n: int = arrays[0].shape[0]
        # centred first: CKA is unchanged, and a left-out tie pair (a zero of K̃) then stands at the
        # value an independent pair has on average, not at a similarity far below every other
        centred = [x - x.mean(0) for x in arrays]
        self.grams = np.stack([c @ c.T for c in centred])  # (L, n, n)

    def terms(self, index: np.ndarray, *, debiased: bool) -> HSICTerms:
        """HSIC terms of the resample ``index`` (n,) of row numbers (copies allowed)."""
        k = self.grams[:, index][:, :, index]  # (L, n, n)
        keep = (index[:, None] != index[None, :]) | np.eye(len(index), dtype=bool)
        if debiased:
            k = k * (keep & ~np.eye(len(index), dtype=bool))
            rowsum = k.sum(axis=2)
            return HSICTerms(k.reshape(len(k), -1), rowsum.sum(axis=1), rowsum)
        k = k - k.mean(axis=1, keepdims=True) - k.mean(axis=2, keepdims=True) + k.mean(axis=(1, 2), keepdims=True)
        return HSICTerms((k * keep).reshape(len(k), -1), np.empty(0), np.empty(0))


def _checked(x: np.ndarray, name: str) -> np.ndarray:
    """x (n, d) with finite values and n ≥ 4 (the debiased estimator's minimum)."""
    if x.ndim != 2:
        raise CKAProbeError(f"{name}: expected a (n, d) array, got shape {x.shape}")
    if x.shape[0] < 4:
        raise CKAProbeError(f"{name}: {x.shape[0]} utterances; CKA statistics need at least 4")
    if not np.isfinite(x).all():
        raise CKAProbeError(f"{name}: contains NaN or Inf")
    return x


def hsic(a: HSICTerms, b: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """HSIC of every layer pair, (L_a, L_b)."""
    return masked_gram_hsic(a.flat @ b.flat.T, a.rowsum @ b.rowsum.T if debiased else 0.0,
                            a.total[:, None], b.total[None, :], n, debiased)


def self_hsic(a: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """HSIC(K_l, K_l) of every layer, (L,)."""
    rows = np.einsum("li,li->l", a.rowsum, a.rowsum) if debiased else 0.0
    return masked_gram_hsic(np.einsum("lk,lk->l", a.flat, a.flat), rows, a.total, a.total, n, debiased)


def masked_gram_hsic(inner, rows, sum_k, sum_l, n: int, debiased: bool) -> np.ndarray:
    """:func:`gram_hsic` of the masked Grams: centred ones (biased) have zero row sums and totals,
    zero-diagonal ones (debiased) zero traces and diagonal terms."""
    if not debiased:
        return gram_hsic(inner, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, n, unbiased=False)
    return gram_hsic(inner, rows, 0.0, 0.0, 0.0, sum_k, sum_l, 0.0, 0.0, n, unbiased=True)


def cka_grid(a: HSICTerms, b: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """CKA of every layer pair, (L_a, L_b); NaN where a layer has no variance."""
    norms = np.sqrt(np.clip(np.outer(self_hsic(a, n, debiased=debiased), self_hsic(b, n, debiased=debiased)), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, hsic(a, b, n, debiased=debiased) / norms, np.nan)


def point_estimate(a: GramSet, b: GramSet, *, debiased: bool = False) -> np.ndarray:
    """CKA (L_a, L_b) on all n utterances; a constant layer is an error naming it."""
    identity = np.arange(a.n)
    grid = cka_grid(a.terms(identity, debiased=debiased), b.terms(identity, debiased=debiased), a.n, debiased=debiased)
    bad = np.argwhere(np.isnan(grid))
    if len(bad):
        i, j = bad[0]
        raise CKAProbeError(f"CKA undefined for layers {a.names[i]} vs {b.names[j]}: a representation is constant")
    return grid


def bootstrap(a: GramSet, b: GramSet, indices: Sequence[np.ndarray], *, debiased: bool = False) -> np.ndarray:
    """CKA (R, L_a, L_b) of each resample in ``indices``: the same rows of both sides."""
    grids = [cka_grid(a.terms(i, debiased=debiased), b.terms(i, debiased=debiased), a.n, debiased=debiased)
             for i in indices]  # fmt: skip
    return _stacked(grids, a, b)


def permuted(a: GramSet, b: GramSet, permutations: Sequence[np.ndarray], *, debiased: bool = False) -> np.ndarray:
    """CKA (R, L_a, L_b) with the rows of ``b`` shuffled by each permutation: the null of no association."""
    fixed = a.terms(np.arange(a.n), debiased=debiased)
    grids = [cka_grid(fixed, b.terms(p, debiased=debiased), a.n, debiased=debiased) for p in permutations]
    return _stacked(grids, a, b)


def _stacked(grids: list[np.ndarray], a: GramSet, b: GramSet) -> np.ndarray:
    """(R, L_a, L_b) from R grids, also for R = 0."""
    return np.stack(grids) if grids else np.empty((0, len(a.names), len(b.names)))


def percentile_interval(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, §13.3) over axis 0 of ``draws``.

    Kept as the baseline of ``benchmarks/bench_coverage.py``: for biased CKA at
    small n or weak association it covers far less than its level.
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


def t_interval(estimate, parts: Sequence[tuple[np.ndarray, float]],
               level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
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


def bca_interval(draws: np.ndarray, estimate, jackknife: np.ndarray | None = None,
                 level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
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


def cka_interval(draws: np.ndarray, estimate, level: float = 0.95, *,
                 debiased: bool) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
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
