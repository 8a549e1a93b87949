"""Orthogonality ("difference") penalty between shared and private features (Bousmalis et al. 2016, eq. 5).

Bousmalis et al. penalise ‖SᵀP‖²_F, with ``S`` and ``P`` the ``(N, d)``
matrices of shared and private features of the ``N`` valid frames of a batch.
Here it is divided by ‖SᵀS‖_F·‖PᵀP‖_F:

    L_diff = ‖SᵀP‖²_F / (‖SᵀS‖_F · ‖PᵀP‖_F)

the RV coefficient of the two feature sets (Robert & Escoufier 1976; linear
CKA without centring). It is 0 exactly when every shared feature (a column of
``S``) is orthogonal to every private one over the frames, as the raw
penalty is, but it lies in [0, 1] whatever the features' scale and the
batch's length, so one weight suits every model size (the raw value of
LayerNorm-ed features is of order d², and the model could lower it by
shrinking P). Sums of squares are taken in float64.
"""

from __future__ import annotations

import torch


def orthogonality_penalty(shared: torch.Tensor, private: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``shared (B, T, d), private (B, T, d'), valid (B, T) bool -> ‖SᵀP‖²_F / (‖SᵀS‖_F‖PᵀP‖_F)`` (scalar)."""
    s, p = shared[valid].double(), private[valid].double()  # (N, d), (N, d')
    cross = (s.T @ p).square().sum()
    scale = (s.T @ s).square().sum().sqrt() * (p.T @ p).square().sum().sqrt()
    return (cross / scale).to(shared.dtype)
