"""Sinusoidal position encodings (Vaswani et al. 2017, §3.5).

``PE(p, 2k) = sin(p / 10000^(2k/d))`` and ``PE(p, 2k+1) = cos(p / 10000^(2k/d))``.

- :class:`PositionalEncoding` (absolute): ``x·√d + PE(0..T−1)``.
- :class:`RelPositionalEncoding` (relative, Transformer-XL, Dai et al. 2019):
  ``x·√d`` and, separately, ``PE`` at the relative distances
  ``T−1, T−2, …, −(T−1)`` ``(1, 2T−1, d)`` for relative-position attention.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoids(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """``PE`` at real-valued ``positions (P,)``; returns ``(P, d_model)``."""
    rates = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    angles = positions.to(torch.float64)[:, None] * rates[None, :]  # (P, d/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).float()


class PositionalEncoding(nn.Module):
    """``(B, T, d) -> (x·√d + PE, None)`` with dropout."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        pe = sinusoids(torch.arange(x.shape[1]), x.shape[2]).to(x)
        return self.dropout(x * self.scale + pe), None


class RelPositionalEncoding(nn.Module):
    """``(B, T, d) -> (x·√d, PE(T−1 … −(T−1)) (1, 2T−1, d))`` with dropout on both."""

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        pos_emb = sinusoids(torch.arange(t - 1, -t, -1), x.shape[2]).to(x)[None]
        return self.dropout(x * self.scale), self.dropout(pos_emb)
