"""HSIC estimators and CKA as normalised HSIC.

Notation: K, L are n x n Gram matrices, H = I - 11^T/n the centring matrix,
K~ and L~ the Grams with their diagonals set to zero.

* Biased HSIC (Gretton et al. 2005, Eq. 4): HSIC_0 = tr(KHLH) / (n-1)^2.
* Unbiased HSIC (Song et al. 2012, Eq. 5):
  HSIC_1 = [tr(K~L~) + 1^T K~ 1 . 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).
* CKA (Kornblith et al. 2019, Eq. 4): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L));
  with HSIC_1 it is the debiased CKA of Nguyen et al. 2021 / Murphy et al. 2024.

Every function takes float64 tensors and broadcasts, so the same formula
serves one pair (scalars), the diagonal of a layer-by-layer matrix (vectors)
and the whole matrix (``(Lx, 1)`` against ``(1, Ly)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def gram_hsic(
    inner: torch.Tensor,
    rows: torch.Tensor,
    rows_diag: torch.Tensor,
    diag_rows: torch.Tensor,
    diags: torch.Tensor,
    sum_k: torch.Tensor,
    sum_l: torch.Tensor,
    trace_k: torch.Tensor,
    trace_l: torch.Tensor,
    n: int,
    unbiased: bool,
) -> torch.Tensor:
    """HSIC from raw (uncentred) Gram sums, so that Grams can be visited block by block.

    With k = K1, l = L1 (row sums) and dk, dl the diagonals:
    ``inner`` = <K, L>_F, ``rows`` = k^T l, ``rows_diag`` = k^T dl, ``diag_rows`` = dk^T l,
    ``diags`` = dk^T dl, ``sum_k`` = 1^T K 1, ``trace_k`` = tr K (likewise for L).
    Biased: tr(KHLH) = <K, L> - 2 k^T l / n + (1^T K 1)(1^T L 1) / n^2.
    Unbiased: tr(K~L~) = <K, L> - dk^T dl, 1^T K~ 1 = 1^T K 1 - tr K,
    1^T K~ L~ 1 = (k - dk)^T (l - dl).
    """
    if not unbiased:
        return (inner - 2 * rows / n + sum_k * sum_l / n**2) / (n - 1) ** 2
    trace_term = inner - diags
    ones_term = (sum_k - trace_k) * (sum_l - trace_l) / ((n - 1) * (n - 2))
    cross_term = 2 * (rows - rows_diag - diag_rows + diags) / (n - 2)
    return (trace_term + ones_term - cross_term) / (n * (n - 3))


def feature_hsic(
    cross_sq: torch.Tensor,
    n: int,
    row_norms: torch.Tensor | None = None,
    total_x: torch.Tensor | None = None,
    total_y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Linear-kernel HSIC from feature-space sums, never forming an n x n matrix.

    With column-centred X (n x dx), Y (n x dy): ``cross_sq`` = ||X^T Y||_F^2.
    Biased (Kornblith et al. 2019, Sec. 3): HSIC_0 = ||X^T Y||_F^2 / (n-1)^2.
    Unbiased: with r_x = squared row norms of X and s_x = ||X||_F^2 (likewise y),
    ``row_norms`` = r_x^T r_y, ``total_x`` = s_x, ``total_y`` = s_y,
    n(n-3) HSIC_1 = ||X^T Y||_F^2 - n/(n-2) r_x^T r_y + s_x s_y / ((n-1)(n-2)),
    which is Song et al.'s formula with K = XX^T, L = YY^T, K1 = 0.
    """
    if row_norms is None:
        return cross_sq / (n - 1) ** 2
    numerator = cross_sq - n / (n - 2) * row_norms + total_x * total_y / ((n - 1) * (n - 2))
    return numerator / (n * (n - 3))


def cka_from_hsic(
    cross: torch.Tensor, self_x: torch.Tensor, self_y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CKA matrix ``(Lx, Ly)`` = cross / sqrt(self_x self_y^T), never clamped.

    A layer whose self-HSIC is not positive (a negative unbiased estimate at few
    rows) has undefined CKA: its cells are NaN (constant layers are refused
    before any HSIC is computed).
    Returns ``(cka, undefined_x (Lx,) bool, undefined_y (Ly,) bool)``.
    """
    bad_x, bad_y = self_x <= 0, self_y <= 0
    denominator = torch.sqrt(self_x.clamp_min(0)[:, None] * self_y.clamp_min(0)[None, :])
    cka = cross / denominator
    cka[bad_x, :] = float("nan")
    cka[:, bad_y] = float("nan")
    return cka, bad_x, bad_y


@dataclass
class HSICTerms:
    """HSIC of every layer pair and of every layer with itself, and how they were computed."""

    cross: torch.Tensor  # (Lx, Ly) float64
    self_x: torch.Tensor  # (Lx,) float64
    self_y: torch.Tensor  # (Ly,) float64
    n: int
    space: str  # "feature" or "gram"
    bandwidth_x: list[float | None] = field(default_factory=list)  # RBF s^2 per layer
    bandwidth_y: list[float | None] = field(default_factory=list)
