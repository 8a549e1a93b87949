"""Hard-concrete gates for L0 regularisation (Louizos, Welling & Kingma 2018, §4, eq. 9-12).

One gate z_j ∈ [0, 1] per unit, with a learned location log α_j:

    training:   u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α) / β)
    test:       s = σ(log α)
    both:       z = min(1, max(0, s·(ζ − γ) + γ))

The stretch (γ < 0 < 1 < ζ) puts a point mass on exactly 0 and exactly 1, so
gates can close for good. The expected L0 norm, differentiable in log α, is

    E‖z‖₀ = Σ_j σ(log α_j − β·log(−γ/ζ))            (eq. 12)

The module returns ``x · z`` over the last dimension of ``x`` (the units); one
gate sample is shared by every frame of a batch, as the units of a network are.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class HardConcreteGate(nn.Module):
    """``x (..., d) -> x · z`` with ``z (d,)`` hard-concrete gates."""

    def __init__(self, units: int, *, beta: float, gamma: float, zeta: float, init_open: float) -> None:
        super().__init__()
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        self.log_alpha = nn.Parameter(torch.full((units,), math.log(init_open / (1 - init_open))))

    def gates(self) -> torch.Tensor:
        """``z (d,)``: a fresh sample in training mode, the deterministic test-time value in eval mode."""
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (-u).log1p() + self.log_alpha) / self.beta)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def expected_open(self) -> torch.Tensor:
        """``E‖z‖₀ / d``: the expected fraction of non-zero gates (eq. 12 over the number of units)."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta)).mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gates()

    def extra_repr(self) -> str:
        return f"units={self.log_alpha.numel()}, beta={self.beta:.3g}, gamma={self.gamma}, zeta={self.zeta}"
