"""Conformer convolution module (Gulati et al. 2020, §2.2, Fig. 2).

``pointwise conv (d → 2d) → GLU → depthwise conv (kernel K, 'same') → norm → Swish →
pointwise conv (d → d) → dropout``; the norm is BatchNorm (the paper) or
LayerNorm. Padded frames are zeroed before the depthwise convolution, so
valid frames never see padding. The module's own pre-norm LayerNorm lives in
the encoder layer.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvolutionModule(nn.Module):
    """``(B, T, d), valid (B, T) -> (B, T, d)``."""

    def __init__(self, d_model: int, kernel_size: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.use_layer_norm = norm == "layer_norm"
        self.norm = nn.LayerNorm(d_model) if self.use_layer_norm else nn.BatchNorm1d(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm over channels of ``(B, d, T)`` or LayerNorm over ``d``."""
        return self.norm(x.transpose(1, 2)).transpose(1, 2) if self.use_layer_norm else self.norm(x)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = nn.functional.glu(self.pointwise_in(x.transpose(1, 2)), dim=1)  # (B, d, T)
        x = self.depthwise(x.masked_fill(~valid[:, None], 0.0))
        x = self.pointwise_out(nn.functional.silu(self.normalize(x)))
        return self.dropout(x.transpose(1, 2))
