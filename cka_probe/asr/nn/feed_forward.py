"""Position-wise feed-forward network (Vaswani et al. 2017, §3.3): ``W₂ act(W₁x + b₁) + b₂``.

The Conformer uses Swish (Gulati et al. 2020, §2.3), the Transformer decoder ReLU.
"""

from __future__ import annotations

import torch
from torch import nn


class PositionwiseFeedForward(nn.Module):
    """``(B, T, d) -> (B, T, d)`` through a hidden layer of ``ffn_dim``."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float, activation: nn.Module) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, ffn_dim)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.w_2 = nn.Linear(ffn_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.activation(self.w_1(x))))
