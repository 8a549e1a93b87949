"""Multi-head attention (Vaswani et al. 2017) and its relative-position variant.

Absolute: ``softmax(QKᵀ / √d_k) V`` per head. Relative (Transformer-XL, Dai et
al. 2019, §3.3; the ``rel_pos`` attention of ESPnet's Conformer):

    score(i, j) = [(q_i + u)·k_j + (q_i + v)·W_p PE(i − j)] / √d_k

with learned biases ``u``, ``v`` per head. Masks are boolean, True where a
key may be attended: ``(B, 1, T2)`` for padding only, ``(B, T1, T2)`` for
causal decoding. Masked keys get zero weight, so padding never leaks.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MultiHeadedAttention(nn.Module):
    """``(B, T1, d), (B, T2, d), (B, T2, d), mask -> (B, T1, d)``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, H, T, d_k)``."""
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_k).transpose(1, 2)

    def scores(self, q: torch.Tensor, k: torch.Tensor, pos_emb: torch.Tensor | None) -> torch.Tensor:
        """``QKᵀ / √d_k``: ``(B, H, T1, d_k), (B, H, T2, d_k) -> (B, H, T1, T2)``."""
        return q @ k.transpose(-2, -1) / math.sqrt(self.d_k)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q, k, v = (
            self.heads(self.linear_q(query)),
            self.heads(self.linear_k(key)),
            self.heads(self.linear_v(value)),
        )
        keep = mask[:, None]  # (B, 1, T1 or 1, T2)
        scores = self.scores(q, k, pos_emb).masked_fill(~keep, torch.finfo(q.dtype).min)
        weights = torch.softmax(scores, dim=-1).masked_fill(~keep, 0.0)  # (B, H, T1, T2)
        context = self.dropout(weights) @ v  # (B, H, T1, d_k)
        return self.linear_out(context.transpose(1, 2).flatten(2))


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """Self-attention with relative positions; ``pos_emb`` is ``(1, 2T−1, d)`` for distances ``T−1 …
    −(T−1)``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__(d_model, n_heads, dropout)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(n_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(n_heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def scores(self, q: torch.Tensor, k: torch.Tensor, pos_emb: torch.Tensor | None) -> torch.Tensor:
        p = self.heads(self.linear_pos(pos_emb))  # (1, H, 2T-1, d_k)
        content = (q + self.pos_bias_u[:, None]) @ k.transpose(-2, -1)  # (B, H, T, T)
        position = relative_to_absolute((q + self.pos_bias_v[:, None]) @ p.transpose(-2, -1))  # (B, H, T, T)
        return (content + position) / math.sqrt(self.d_k)


def relative_to_absolute(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, 2T−1) -> (B, H, T, T)``: entry ``(i, j)`` is column ``T−1−(i−j)``, distance ``i − j``."""
    t = x.shape[2]
    i = torch.arange(t, device=x.device)
    index = (t - 1 - i[:, None] + i[None, :]).expand(*x.shape[:2], t, t)
    return x.gather(-1, index)
