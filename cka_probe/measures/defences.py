"""Defences for linear CKA itself: how much of it a few high-variance directions carry.

High linear CKA can be carried by the few directions of largest variance of
each representation and stay high while the rest differ (Ding et al. 2021;
Cloos et al. 2024), and it can be moved without changing what a network
computes (Davari et al. 2022). Two checks on one pair of representations
``x (n, d_x)``, ``y (n, d_y)`` (rows = the same samples), in float64:

* :func:`cka_without_top_pcs`: linear CKA after removing each side's top-k
  principal directions (:func:`remove_top_pcs`);
* :func:`top_direction_share`: the share of CKA's numerator carried by the
  top-k principal directions of each side. With the centred X_c = U_x S_x V_xᵀ
  (thin SVD, singular values s_x1 ≥ s_x2 ≥ …) and Y_c likewise, linear HSIC
  in the eigenvectors of X_c X_cᵀ and Y_c Y_cᵀ (Kornblith et al. 2019, Table 1)
  is

      ||Y_cᵀ X_c||_F² = Σ_i Σ_j s_xi² s_yj² (u_xiᵀ u_yj)²,

  and the share of the top k is Σ_{i<k} Σ_{j<k} of the terms over their total.

The third check, a measure that weights each direction by its singular value
rather than its square, is the angular Procrustes distance
(:mod:`~cka_probe.measures.procrustes`, ``similarity(x, y, measure="procrustes_angle")``).
Every function takes the arrays or their :func:`principal_axes`, so that one
SVD per side serves several calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import as_matrix, constant_message
from cka_probe.measures.matrix import check_rows
from cka_probe.measures.pair import linear_cka
from cka_probe.measures.registry import centred


@dataclass(frozen=True)
class PrincipalAxes:
    """The thin SVD X_c = U S Vᵀ of a centred ``(n, d)`` representation, cut to its numerical rank r:
    ``scores`` U S ``(n, r)`` and ``axes`` Vᵀ ``(r, d)``, by decreasing singular value."""

    scores: torch.Tensor
    axes: torch.Tensor

    @property
    def rank(self) -> int:
        """r: the number of principal directions with non-zero variance."""
        return self.scores.shape[1]


def principal_axes(x, label: str = "x") -> PrincipalAxes:
    """The :class:`PrincipalAxes` of ``x (n, d)`` (an array, a tensor or its axes already), float64.

    Directions whose singular value is at most s_1 · max(n, d) · eps are rounding
    noise and left out (the rank tolerance of ``numpy.linalg.matrix_rank``);
    a constant ``x`` (rank 0) raises ``CKAProbeError`` naming ``label``.
    """
    if isinstance(x, PrincipalAxes):
        return x
    xc = centred(as_matrix(x, label))
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    rank = int((s > s[0] * max(xc.shape) * torch.finfo(s.dtype).eps).sum())
    if rank == 0:
        raise CKAProbeError(constant_message(label))
    return PrincipalAxes(u[:, :rank] * s[:rank], vh[:rank])


def remove_top_pcs(x, k: int, *, label: str = "x") -> torch.Tensor:
    """X_c − X_c V_k V_kᵀ ``(n, d)`` float64: ``x (n, d)`` centred, less its projection on its top-k
    principal directions V_k ``(d, k)``; ``CKAProbeError`` unless 0 ≤ k < rank (nothing would be left)."""
    p = principal_axes(x, label)
    if not 0 <= k < p.rank:
        raise CKAProbeError(
            f"{label}: cannot remove {k} principal directions of a representation of rank {p.rank}"
        )
    return p.scores[:, k:] @ p.axes[k:]


def cka_without_top_pcs(x, y, k: int, *, debiased: bool = True) -> float:
    """Linear CKA (:func:`~cka_probe.measures.pair.linear_cka`) of ``x (n, d_x)`` and ``y (n, d_y)`` after
    :func:`remove_top_pcs` of each, k directions each; ``debiased`` as the study's tables (default)."""
    return linear_cka(remove_top_pcs(x, k, label="x"), remove_top_pcs(y, k, label="y"), debiased=debiased)


def numerator_terms(x, y) -> torch.Tensor:
    """``(r_x, r_y)`` float64: term (i, j) of ||Y_cᵀ X_c||_F² = Σ_ij s_xi² s_yj² (u_xiᵀ u_yj)²
    (module docstring) for ``x (n, d_x)`` and ``y (n, d_y)``."""
    px, py = principal_axes(x, "x"), principal_axes(y, "y")
    check_rows({"x": px.scores, "y": py.scores})
    return (px.scores.T @ py.scores).square()


def top_direction_share(x, y, k: int) -> float:
    """The share of ||Y_cᵀ X_c||_F² carried by the top-k principal directions of both ``x (n, d_x)`` and
    ``y (n, d_y)``: Σ_{i<k, j<k} s_xi² s_yj² (u_xiᵀ u_yj)² / Σ_ij (the same), in [0, 1], 1 for k ≥ both
    ranks. Undefined (``CKAProbeError``) where the numerator is 0: x and y share no direction."""
    terms = numerator_terms(x, y)
    total = terms.sum()
    if total == 0:
        raise CKAProbeError("the top-direction share is undefined: ||Y_c^T X_c||_F = 0 (CKA is 0)")
    return float(terms[:k, :k].sum() / total)
