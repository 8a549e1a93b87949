"""Convolutional front end: 4× time subsampling (Conv2dSubsampling4, as in WeNet/ESPnet).

Two 3×3 convolutions with stride 2 and no padding, each followed by ReLU, turn
fbank ``(B, T, F)`` into ``(B, C, T', F')`` with
``T' = ((T − 1) // 2 − 1) // 2`` and ``F' = ((F − 1) // 2 − 1) // 2``; a linear
layer maps ``C·F'`` to ``d_model``, then the positional encoding is applied.
An output frame ``t`` depends on input frames ``4t .. 4t + 6`` only, so valid
outputs never see padding.
"""

from __future__ import annotations

import torch
from torch import nn


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Valid output frames of two stride-2, kernel-3 convolutions: ``((T − 1) // 2 − 1) // 2``."""
    return ((lengths - 1) // 2 - 1) // 2


class Conv2dSubsampling4(nn.Module):
    """``(B, T, F) -> ((B, T', d_model), pos_emb)``; ``pos_emb`` as the positional encoding returns."""

    def __init__(self, n_mels: int, channels: int, d_model: int, pos_enc: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, 2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 2),
            nn.ReLU(),
        )
        freq = ((n_mels - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, d_model)
        self.pos_enc = pos_enc

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.conv(feats.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', d_model)
        return self.pos_enc(x)
