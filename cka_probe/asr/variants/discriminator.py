"""Utterance discriminator for adversarial shared–private training (Liu, Qiu & Huang 2017, §4).

The features of the valid frames are mean-pooled to one vector per utterance,
passed through a gradient-reversal layer (Ganin & Lempitsky 2015) and a
one-hidden-layer classifier; the loss is the cross-entropy of its label. The
classifier minimises it, and through the reversal the encoder below maximises
it: the shared features learn to hide the label.
"""

from __future__ import annotations

import torch
from torch import nn

from cka_probe.asr.variants.gradient_reversal import GradientReversal


class Discriminator(nn.Module):
    """``features (B, T, d), valid (B, T) -> logits (B, n_classes)`` behind a gradient reversal."""

    def __init__(self, d_model: int, hidden: int, n_classes: int, reversal: float) -> None:
        super().__init__()
        self.reverse = GradientReversal(reversal)
        self.classifier = nn.Sequential(nn.Linear(d_model, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights = valid.to(features.dtype)[..., None]  # (B, T, 1)
        pooled = (features * weights).sum(1) / weights.sum(1).clamp(min=1)  # (B, d)
        return self.classifier(self.reverse(pooled))

    def loss(self, features: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``labels (B,)`` (long)."""
        return nn.functional.cross_entropy(self(features, valid), labels)
