"""Debiased linear HSIC and CKA over distinct *groups* (utterances), for frames that are not independent.

The debiased estimator of Song et al. (2012, Eq. 5) is the U-statistic of
HSIC over tuples of four distinct rows. With frames grouped by utterance, two
rows of one utterance are correlated, so tuples holding both bias it upward as
the diagonal biases the plain estimator (``benchmarks/bench_coverage.py``: at
12 frames per utterance and within-utterance correlation 0.8 its intervals
covered only 86–90 %). Here every sum runs over tuples of *distinct groups*,
which are independent. For linear kernels the population HSIC of one frame is

    ‖P − μνᵀ‖²_F = ‖P‖²_F − 2 μᵀPν + ‖μ‖²‖ν‖²,   P = E[x yᵀ], μ = E[x], ν = E[y],

and with group sums a_g = Σ_{t∈g} x_t, b_g = Σ y_t, S_g = Σ x_t y_tᵀ of
m_g frames (E[S_g] = m_g P, E[a_g] = m_g μ, E[b_g] = m_g ν, whatever the
dependence inside a group) each term has an unbiased estimate from distinct groups:

    ‖P‖²    ≈ Σ_{g≠h} ⟨S_g, S_h⟩ / Σ_{g≠h} m_g m_h
    μᵀPν    ≈ Σ_{g,h,k distinct} a_gᵀ S_h b_k / Σ m_g m_h m_k
    ‖μ‖²‖ν‖² ≈ Σ_{g,h,k,l distinct} (a_g·a_h)(b_k·b_l) / Σ m_g m_h m_k m_l

Every numerator is the denominator's sum with the frames' features in place
of the constant 1, so the denominators are the same sums of x = y = 1. With
one row per group this is Song et al.'s estimator (both are the symmetric
unbiased estimator of the same parameter, which is unique). A bootstrap
resample is given as group multiplicities w_g: a group drawn w_g times weighs
w_g in every sum and is never paired with its own copies (the tie correction
of :mod:`cka_probe.measures.weighted`, at the level of groups). The sums over
distinct indices are power sums less their coincidences (inclusion–exclusion).

Shapes: x (N, d_x), y (N, d_y) frames, labels (N,) group numbers 0..G−1,
weights (B, G). Everything is float64, on rows unit-scaled (a power of 2; CKA is
scale invariant) and centred on their mean (the estimator is unbiased for every
offset, but the sums of products are then small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cka_probe.measures._tensor import unit_scaled_array


@dataclass(frozen=True)
class GroupSums:
    """Per-group sums of one (x, y) side pair: a (G, d_x), b (G, d_y), frame products S_g and their
    contractions.

    s_sq (G,) ‖S_g‖²_F; s_b (G, d_x) S_g b_g; s_a (G, d_y) S_gᵀ a_g; asb (G,) a_gᵀ S_g b_g.
    ``x``, ``y``, ``labels`` are kept for the resample's Σ_g w_g S_g = Xᵀ diag(w_labels) Y.
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    a: np.ndarray
    b: np.ndarray
    s_sq: np.ndarray
    s_b: np.ndarray
    s_a: np.ndarray
    asb: np.ndarray


def group_sums(x: np.ndarray, y: np.ndarray, labels: np.ndarray, groups: int) -> GroupSums:
    """The per-group sums of frames ``x (N, d_x)``, ``y (N, d_y)`` with group ``labels (N,)``."""
    a, b = _summed(x, labels, groups), _summed(y, labels, groups)
    rows = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels, minlength=groups))[:-1])
    products = [x[r].T @ y[r] for r in rows]  # S_g (d_x, d_y), one pass over the rows sorted by group
    s_sq = np.array([np.sum(s**2) for s in products])
    s_b = np.stack([s @ bg for s, bg in zip(products, b)])
    s_a = np.stack([s.T @ ag for s, ag in zip(products, a)])
    return GroupSums(x, y, labels, a, b, s_sq, s_b, s_a, np.einsum("gi,gi->g", a, s_b))


def _summed(x: np.ndarray, labels: np.ndarray, groups: int) -> np.ndarray:
    """Σ_{t∈g} x_t of each group, (G, d)."""
    out = np.zeros((groups, x.shape[1]))
    np.add.at(out, labels, x)
    return out


def distinct_sums(s: GroupSums, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair, triple and quadruple sums over distinct groups of the module's formulas, each (B,)."""
    w2, w3 = w**2, w**3
    cross = np.swapaxes(w[:, s.labels, None] * s.x, 1, 2) @ s.y  # Σ_g w_g S_g, (B, d_x, d_y)
    ties = np.swapaxes(w2[:, :, None] * s.a, 1, 2) @ s.b  # C = Σ_g w_g² a_g b_gᵀ, (B, d_x, d_y)
    sum_a, sum_b = w @ s.a, w @ s.b  # A, B: (B, d_x), (B, d_y)
    pair = np.sum(cross**2, axis=(1, 2)) - w2 @ s.s_sq
    triple = (
        np.einsum("bi,bij,bj->b", sum_a, cross, sum_b)
        - np.einsum("bj,bj->b", w2 @ s.s_a, sum_b)
        - np.einsum("bi,bi->b", sum_a, w2 @ s.s_b)
        - np.sum(cross * ties, axis=(1, 2))
        + 2 * w3 @ s.asb
    )
    sq_a, sq_b = np.sum(s.a**2, 1), np.sum(s.b**2, 1)
    both = np.sum(ties**2, axis=(1, 2)) - (w2 * w2) @ (sq_a * sq_b)  # Σ_{g≠h} w_g²w_h² (a_g·a_h)(b_g·b_h)
    one = np.sum(w2 * (sum_a @ s.a.T - w * sq_a) * (sum_b @ s.b.T - w * sq_b), axis=1) - both
    quad = (np.sum(sum_a**2, 1) - w2 @ sq_a) * (np.sum(sum_b**2, 1) - w2 @ sq_b) - 4 * one - 2 * both
    return pair, triple, quad


def grouped_hsic(sums: GroupSums, counts: tuple[np.ndarray, ...], w: np.ndarray) -> np.ndarray:
    """Unbiased HSIC of each resample ``w (B, G)`` over distinct groups, (B,): ‖P‖² − 2 μᵀPν + ‖μ‖²‖ν‖².

    ``counts``: the denominators, :func:`distinct_sums` at ``w`` of the group sums of x = y = 1;
    NaN where fewer than 4 groups have weight.
    """
    pair, triple, quad = distinct_sums(sums, w)
    count_2, count_3, count_4 = counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count_4 > 0, pair / count_2 - 2 * triple / count_3 + quad / count_4, np.nan)


class GroupedCKA:
    """Debiased linear CKA over distinct groups of frames ``x (N, d_x)``, ``y (N, d_y)`` with ``labels (N,)``
    in 0..G−1.

    The group sums are taken once; each call with multiplicities ``weights (B, G)`` costs
    B·N·d_x·d_y for Σ_g w_g S_g and B·G·d² for the rest.
    """

    def __init__(self, x, y, labels) -> None:
        x, y = unit_scaled_array(x), unit_scaled_array(y)  # exact; no product overflows at any scale
        x, y = x - x.mean(0), y - y.mean(0)
        labels = np.asarray(labels)
        self.groups = int(labels.max()) + 1
        ones = np.ones((len(labels), 1))
        self.xy, self.xx, self.yy, self.counts = (
            group_sums(a, b, labels, self.groups) for a, b in ((x, y), (x, x), (y, y), (ones, ones))
        )

    def __call__(self, weights) -> np.ndarray | float:
        """CKA of the resample(s): ``weights (G,)`` gives a float, ``(B, G)`` a (B,) array; NaN where a side
        has no
        variance or fewer than 4 groups are drawn."""
        w = np.asarray(weights, dtype=np.float64)
        batch = np.atleast_2d(w)
        counts = distinct_sums(self.counts, batch)  # the same denominators for all three HSICs
        xx, yy = (np.clip(grouped_hsic(s, counts, batch), 0, None) for s in (self.xx, self.yy))
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.sqrt(xx * yy)
            cka = np.where(norm > 0, grouped_hsic(self.xy, counts, batch) / norm, np.nan)
        return float(cka[0]) if w.ndim == 1 else cka


def grouped_linear_cka(x, y, labels, weights) -> np.ndarray | float:
    """:class:`GroupedCKA` of ``x``, ``y``, ``labels`` at ``weights`` (G,) or (B, G), in one call."""
    return GroupedCKA(x, y, labels)(weights)
