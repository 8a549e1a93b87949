"""The CCA family: mean canonical correlation, SVCCA and PWCCA, for every layer pair.

With column-centred X ``(n, dx)``, Y ``(n, dy)``, S_xx = X^T X, S_xy = X^T Y, the
canonical correlations rho_1 >= ... >= rho_k (k = min(dx, dy)) are the singular
values of S_xx^{-1/2} S_xy S_yy^{-1/2} (Hotelling 1936). Measures:

* ``"cca"``: the mean canonical correlation rho-bar = (1/k) sum_i rho_i
  (Raghu et al. 2017, Eq. 1 in its mean form).
* ``"svcca"`` (Raghu et al. 2017): each layer is first reduced to the top
  singular directions that keep ``variance`` (default 99 %) of its variance,
  X -> U_k S_k; then rho-bar of the reduced pair. Since U_k is orthonormal, the
  correlations are the singular values of U_kx^T U_ky.
* ``"pwcca"`` (Morcos et al. 2018, Eq. 2): sum_i alpha_i rho_i with
  alpha_i proportional to sum_j |<h_i, z_j>|, h_i the unit-norm canonical variate
  X w_i and z_j the centred neuron (column) j; the weights come from the side
  with fewer neurons (x on ties), as in Morcos et al.'s code.

Plain CCA is undefined when a centred layer does not have full column rank (always
when n - 1 < d): that is a ``CKAProbeError`` naming the layer, unless
``ridge`` > 0, which regularises S_xx -> S_xx + ridge * diag(S_xx)
(canonical ridge on standardised variables, Vinod 1976; scale-free). SVCCA never needs it: its reduced
layers have full rank by construction. All of it is float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import one_thread

RANK_TOL = 1e-10  # eigenvalue of S_xx below this fraction of the largest: rank deficient


class Whitened:
    """One centred layer ``x (n, d)`` float64: S_xx (``cov``) and ``white`` ``(d, d)``, (x white)^T (x white)
    = I.

    The whitening is taken on the standardised columns (CCA does not depend on
    column scales), so badly scaled but full-rank layers stay well conditioned.
    """

    def __init__(self, x: torch.Tensor, label: str, ridge: float):
        self.cov = x.T @ x
        scale = self.cov.diagonal().sqrt()  # not all 0: constant layers are refused before
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        evals, evecs = torch.linalg.eigh(self.cov / scale[:, None] / scale[None, :])
        top = float(evals[-1])
        if ridge > 0:
            evals = evals.clamp_min(0) + ridge
        elif float(evals[0]) <= RANK_TOL * top:
            rank = int((evals > RANK_TOL * top).sum())
            raise CKAProbeError(
                f"{label}: CCA needs full column rank, but the centred layer has rank {rank} < d = "
                f"{x.shape[1]} "
                f"(n = {x.shape[0]}); pass ridge > 0 or use svcca"
            )
        self.white = (evecs * evals.rsqrt()) @ evecs.T / scale[:, None]


def correlations(
    a: Whitened, b: Whitened, cross: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(U, rho, V^T)`` of the whitened cross-covariance ``W_a^T S_ab W_b`` (``cross`` = X_a^T X_b)."""
    return torch.linalg.svd(a.white.T @ cross @ b.white, full_matrices=False)


def pwcca_weights(side: Whitened, directions: torch.Tensor) -> torch.Tensor:
    """alpha ``(k,)``: sum_j |<h_i, z_j>| / ||h_i|| for the variates h_i = X W u_i, normalised to sum 1."""
    coef = side.white @ directions  # (d, k): canonical directions w_i
    projections = (coef.T @ side.cov).abs().sum(1)  # sum_j |w_i^T X^T X e_j|
    norms = ((coef.T @ side.cov) * coef.T).sum(1).sqrt()  # ||X w_i||
    weights = projections / norms
    return weights / weights.sum()


def reduced(x: torch.Tensor, variance: float) -> torch.Tensor:
    """U_k ``(n, k)``: the top left singular vectors of centred ``x`` keeping ``variance`` of its variance.

    From the eigenvectors of X^T X = V S^2 V^T: U_k = X V_k S_k^{-1} (O(n d^2), one d x d eigh).
    """
    with one_thread():
        evals, evecs = torch.linalg.eigh(x.T @ x)
    evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
    energy = evals.cumsum(0)  # positive: constant layers are refused before
    k = min(int((energy < variance * energy[-1]).sum()) + 1, int((evals > RANK_TOL * evals[0]).sum()))
    return x @ (evecs[:, :k] * evals[:k].rsqrt())


def cca_grid(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    labels_x: Sequence[str],
    labels_y: Sequence[str],
    *,
    measure: str,
    ridge: float = 0.0,
    variance: float = 0.99,
) -> torch.Tensor:
    """``(Lx, Ly)`` float64 of ``measure`` ("cca", "svcca" or "pwcca") for centred float64 layers."""
    if ridge < 0:
        raise CKAProbeError(f"ridge must be >= 0, got {ridge}")
    if not 0 < variance <= 1:
        raise CKAProbeError(f"variance must be in (0, 1], got {variance}")
    if measure == "svcca":
        bx, by = [reduced(x, variance) for x in xs], [reduced(y, variance) for y in ys]
        cross = torch.cat(bx, 1).T @ torch.cat(by, 1)
        return block_apply(cross, bx, by, lambda a, b, block: torch.linalg.svdvals(block).mean())
    with one_thread():
        wx = [Whitened(x, label, ridge) for x, label in zip(xs, labels_x)]
        wy = [Whitened(y, label, ridge) for y, label in zip(ys, labels_y)]
    cross = torch.cat(xs, 1).T @ torch.cat(ys, 1)
    return block_apply(cross, wx, wy, lambda a, b, block: pair_value(a, b, block, measure))


def pair_value(a: Whitened, b: Whitened, block: torch.Tensor, measure: str) -> torch.Tensor:
    """Mean CCA or PWCCA of one layer pair from its cross-covariance ``block``."""
    u, rho, vh = correlations(a, b, block)
    if measure == "cca":
        return rho.mean()
    weights = pwcca_weights(a, u) if a.cov.shape[0] <= b.cov.shape[0] else pwcca_weights(b, vh.T)
    return (weights * rho).sum()


def blocks(cross: torch.Tensor, left: Sequence, right: Sequence):
    """``((i, left[i]), (j, right[j]), block)`` for every layer pair of a concatenated product ``cross``."""
    widths = lambda side: [s.shape[1] if isinstance(s, torch.Tensor) else s.cov.shape[0] for s in side]
    row_starts = [0, *torch.tensor(widths(left)).cumsum(0).tolist()]
    col_starts = [0, *torch.tensor(widths(right)).cumsum(0).tolist()]
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            yield (i, a), (j, b), cross[row_starts[i] : row_starts[i + 1], col_starts[j] : col_starts[j + 1]]


def block_apply(cross: torch.Tensor, left: Sequence, right: Sequence, fn) -> torch.Tensor:
    """``(Lx, Ly)`` float64 of ``fn(left[i], right[j], block)`` over the layer-pair blocks of ``cross``.

    The small decompositions inside ``fn`` run on one thread (see ``one_thread``).
    """
    out = torch.empty(len(left), len(right), dtype=torch.float64)
    with one_thread():
        for (i, a), (j, b), block in blocks(cross, left, right):
            out[i, j] = fn(a, b, block)
    return out
