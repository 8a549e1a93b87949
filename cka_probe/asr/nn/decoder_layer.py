"""One Transformer decoder layer (Vaswani et al. 2017, §3.1), pre-norm:

y = y + SelfAttn(LN(y), causal mask)
y = y + SrcAttn(LN(y), enc, encoder padding mask)
y = y + FFN(LN(y))
"""

from __future__ import annotations

import torch
from torch import nn

from cka_probe.asr.nn.attention import MultiHeadedAttention
from cka_probe.asr.nn.feed_forward import PositionwiseFeedForward


class TransformerDecoderLayer(nn.Module):
    """``(B, U, d), self_mask (B, U, U), enc (B, T, d), enc_mask (B, 1, T) -> (B, U, d)``."""

    def __init__(
        self, d_model: int, n_heads: int, ffn_dim: int, dropout: float, attention_dropout: float
    ) -> None:
        super().__init__()
        self.self_attn = MultiHeadedAttention(d_model, n_heads, attention_dropout)
        self.src_attn = MultiHeadedAttention(d_model, n_heads, attention_dropout)
        self.ffn = PositionwiseFeedForward(d_model, ffn_dim, dropout, nn.ReLU())
        self.norm_self = nn.LayerNorm(d_model)
        self.norm_src = nn.LayerNorm(d_model)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, y: torch.Tensor, self_mask: torch.Tensor, enc: torch.Tensor, enc_mask: torch.Tensor
    ) -> torch.Tensor:
        h = self.norm_self(y)
        y = y + self.dropout(self.self_attn(h, h, h, self_mask))
        h = self.norm_src(y)
        y = y + self.dropout(self.src_attn(h, enc, enc, enc_mask))
        return y + self.dropout(self.ffn(self.norm_ffn(y)))
