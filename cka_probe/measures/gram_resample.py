"""Linear CKA of many resamples of the same rows, in Gram space (the fast path of the
cross-task statistics; :mod:`cka_probe.inference.bootstrap` is the general one for any statistic).

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

Precision: Gram matrices and all sums are float64; each layer is first
multiplied by the power of 2 that brings its largest |value| into [0.5, 1)
(exact; CKA is scale invariant), so that no Gram entry overflows or underflows. Memory: 8·L·n² bytes per
model side (12 layers, n = 2,000: 384 MB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import Extent, constant_message, unit_scaled_array
from cka_probe.measures.hsic import gram_hsic


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
        self.source = source
        arrays = [_checked(np.asarray(x, dtype=np.float64), f"{source}{name}") for name, x in layers.items()]
        # a constant layer keeps an all-zero Gram (NaN in every grid); point_estimate names it
        self.constant = [Extent(torch.from_numpy(x)).constant() for x in arrays]
        arrays = [x * 0 if flat else x for x, flat in zip(arrays, self.constant)]
        if len({x.shape[0] for x in arrays}) > 1:
            raise CKAProbeError(
                f"{source}: layers have different numbers of rows {[x.shape[0] for x in arrays]}"
            )
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
        k = (
            k
            - k.mean(axis=1, keepdims=True)
            - k.mean(axis=2, keepdims=True)
            + k.mean(axis=(1, 2), keepdims=True)
        )
        return HSICTerms((k * keep).reshape(len(k), -1), np.empty(0), np.empty(0))


def _checked(x: np.ndarray, name: str) -> np.ndarray:
    """x (n, d) with finite values and n ≥ 4 (the debiased estimator's minimum), unit-scaled
    (:func:`~cka_probe.measures._tensor.unit_scaled_array`)."""
    if x.ndim != 2:
        raise CKAProbeError(f"{name}: expected a (n, d) array, got shape {x.shape}")
    if x.shape[0] < 4:
        raise CKAProbeError(f"{name}: {x.shape[0]} utterances; CKA statistics need at least 4")
    if not np.isfinite(x).all():
        raise CKAProbeError(f"{name}: contains NaN or Inf")
    return unit_scaled_array(x)


def hsic(a: HSICTerms, b: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """HSIC of every layer pair, (L_a, L_b)."""
    return masked_gram_hsic(
        a.flat @ b.flat.T,
        a.rowsum @ b.rowsum.T if debiased else 0.0,
        a.total[:, None],
        b.total[None, :],
        n,
        debiased,
    )


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
    norms = np.sqrt(
        np.clip(np.outer(self_hsic(a, n, debiased=debiased), self_hsic(b, n, debiased=debiased)), 0, None)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, hsic(a, b, n, debiased=debiased) / norms, np.nan)


def point_estimate(a: GramSet, b: GramSet, *, debiased: bool = False) -> np.ndarray:
    """CKA (L_a, L_b) on all n utterances; a constant layer or another undefined cell (a self-HSIC not
    positive) is an error naming the layer."""
    for side in (a, b):
        for name, flat in zip(side.names, side.constant):
            if flat:
                raise CKAProbeError(constant_message(f"{side.source}{name}"))
    identity = np.arange(a.n)
    grid = cka_grid(
        a.terms(identity, debiased=debiased), b.terms(identity, debiased=debiased), a.n, debiased=debiased
    )
    bad = np.argwhere(np.isnan(grid))
    if len(bad):
        i, j = bad[0]
        raise CKAProbeError(
            f"CKA undefined for layers {a.names[i]} vs {b.names[j]}: a self-HSIC is not positive at "
            f"n={a.n} utterances; use more utterances or the biased estimator"
        )
    return grid


def bootstrap(a: GramSet, b: GramSet, indices: Sequence[np.ndarray], *, debiased: bool = False) -> np.ndarray:
    """CKA (R, L_a, L_b) of each resample in ``indices``: the same rows of both sides."""
    grids = [
        cka_grid(a.terms(i, debiased=debiased), b.terms(i, debiased=debiased), a.n, debiased=debiased)
        for i in indices
    ]
    return _stacked(grids, a, b)


def permuted(
    a: GramSet, b: GramSet, permutations: Sequence[np.ndarray], *, debiased: bool = False
) -> np.ndarray:
    """CKA (R, L_a, L_b) with the rows of ``b`` shuffled by each permutation: the null of no association."""
    fixed = a.terms(np.arange(a.n), debiased=debiased)
    grids = [cka_grid(fixed, b.terms(p, debiased=debiased), a.n, debiased=debiased) for p in permutations]
    return _stacked(grids, a, b)


def _stacked(grids: list[np.ndarray], a: GramSet, b: GramSet) -> np.ndarray:
    """(R, L_a, L_b) from R grids, also for R = 0."""
    return np.stack(grids) if grids else np.empty((0, len(a.names), len(b.names)))
