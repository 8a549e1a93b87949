"""Orthogonal Procrustes distance and the angular shape metric, for every layer pair.

Each layer is centred and scaled to unit Frobenius norm, X^ = X_c / ||X_c||_F
(the shape-space preprocessing of Williams et al. 2021 and Ding et al. 2021);
a narrower layer is padded with zero columns, which changes nothing below.
With ||.||_* the nuclear norm (sum of singular values):

* ``"procrustes"``: min over orthogonal Q of ||X^ - Y^ Q||_F^2
  = ||X^||^2 + ||Y^||^2 - 2 ||X^T^ Y^||_* = 2 - 2 ||X^T^ Y^||_* (Schönemann 1966;
  Ding et al. 2021, Eq. 3), in [0, 2], 0 for the same shape.
* ``"procrustes_angle"``: arccos ||X^T^ Y^||_* (Williams et al. 2021, Eq. 3
  with alpha = 1), in radians, in [0, pi/2]; a metric on shapes.

Both are distances (0 = identical up to rotation, reflection, translation and
isotropic scaling), float64; constant layers are refused by the registry's input check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cka_probe.measures.cca import block_apply


def normalised(x: torch.Tensor) -> torch.Tensor:
    """Centred float64 ``x (n, d)`` divided by its Frobenius norm (not 0: constant layers are refused)."""
    return x / x.square().sum().sqrt()


def procrustes_grid(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor],
    labels_x: Sequence[str],
    labels_y: Sequence[str],
    *,
    measure: str,
) -> torch.Tensor:
    """``(Lx, Ly)`` float64 "procrustes" distance or "procrustes_angle" for centred float64 layers."""
    nx, ny = [normalised(x) for x in xs], [normalised(y) for y in ys]
    cross = torch.cat(nx, 1).T @ torch.cat(ny, 1)
    nuclear = block_apply(cross, nx, ny, lambda a, b, block: torch.linalg.svdvals(block).sum())
    if measure == "procrustes":
        return 2 - 2 * nuclear
    return torch.arccos(nuclear.clamp(max=1.0))  # ||.||_* <= 1 exactly; the clamp only absorbs rounding
