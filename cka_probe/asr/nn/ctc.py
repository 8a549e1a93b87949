"""CTC head (Graves et al. 2006): a linear projection to the vocabulary and the CTC loss.

Id 0 is the blank. The loss is summed over utterances and divided by the
batch size (per-utterance negative log-likelihood, as in WeNet and ESPnet);
``zero_infinity`` guards utterances too short for their targets.
"""

from __future__ import annotations

import torch
from torch import nn


class CTC(nn.Module):
    """``enc (B, T, d) -> log-probabilities (B, T, V)``, and the loss against padded targets."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)

    def log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.proj(enc), dim=-1)

    def forward(
        self, enc: torch.Tensor, enc_lens: torch.Tensor, targets: torch.Tensor, target_lens: torch.Tensor
    ) -> torch.Tensor:
        """Mean over the batch of ``−log p(y | x)``; ``targets (B, L)`` padded with −1."""
        log_probs = self.log_probs(enc).transpose(0, 1)  # (T, B, V)
        loss = nn.functional.ctc_loss(
            log_probs,
            targets.clamp(min=0),
            enc_lens,
            target_lens,
            blank=0,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / enc.shape[0]
