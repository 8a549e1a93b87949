"""Gradient reversal layer (Ganin & Lempitsky 2015, §3.2, eq. 9-10).

Forward it is the identity; backward it multiplies the gradient by −λ:

    R_λ(x) = x,        ∂R_λ/∂x = −λ I

so that a classifier on ``R_λ(features)`` learns to predict its label while the
layers below it learn to make the features uninformative about that label.
"""

from __future__ import annotations

import torch
from torch import nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``R_λ(x)``: ``x`` unchanged, its gradient multiplied by ``−scale``."""
    return _Reverse.apply(x, scale)


class GradientReversal(nn.Module):
    """:func:`reverse_gradient` as a module with a fixed ``scale`` (λ)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
