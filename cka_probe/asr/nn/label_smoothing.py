"""Label-smoothed attention loss (Szegedy et al. 2016, §7).

The target distribution of token ``y`` is ``q = (1 − ε)·onehot(y) + ε/V`` (the
convention of ``torch.nn.functional.cross_entropy(label_smoothing=ε)``); the
loss is ``KL(q ‖ p) = Σ_c q_c (log q_c − log p_c)``, which is zero exactly
when the model predicts ``q``. It is summed over valid tokens (targets ≠
``ignore_id``) and divided by the batch size.
"""

from __future__ import annotations

import torch
from torch import nn


class LabelSmoothingLoss(nn.Module):
    """``logits (B, U, V), targets (B, U)`` padded with ``ignore_id`` -> scalar."""

    def __init__(self, smoothing: float, ignore_id: int = -1) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.ignore_id = ignore_id

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        v = logits.shape[-1]
        valid = targets != self.ignore_id  # (B, U)
        q = torch.full_like(logits, self.smoothing / v)
        q.scatter_add_(
            -1, targets.clamp(min=0)[..., None], torch.full_like(logits[..., :1], 1.0 - self.smoothing)
        )
        kl = (torch.xlogy(q, q) - q * torch.log_softmax(logits, dim=-1)).sum(-1)  # (B, U)
        return kl.masked_fill(~valid, 0.0).sum() / logits.shape[0]
