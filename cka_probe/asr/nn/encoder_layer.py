"""One Conformer block (Gulati et al. 2020, §2, eq. 1), pre-norm with macaron FFNs:

x = x + ½·FFN₁(LN(x))
x = x + MHSA(LN(x))
x = x + Conv(LN(x))
x = x + ½·FFN₂(LN(x))
y = LN(x)
"""

from __future__ import annotations

import torch
from torch import nn

from cka_probe.asr.nn.attention import MultiHeadedAttention
from cka_probe.asr.nn.convolution import ConvolutionModule
from cka_probe.asr.nn.feed_forward import PositionwiseFeedForward


class ConformerEncoderLayer(nn.Module):
    """``(B, T, d), valid (B, T), pos_emb -> (B, T, d)``: the output is a plain tensor, hook-friendly."""

    def __init__(
        self,
        d_model: int,
        self_attn: MultiHeadedAttention,
        ffn_dim: int,
        conv_kernel: int,
        conv_norm: str,
        dropout: float,
    ) -> None:
        super().__init__()
        self.ffn_macaron = PositionwiseFeedForward(d_model, ffn_dim, dropout, nn.SiLU())
        self.self_attn = self_attn
        self.conv = ConvolutionModule(d_model, conv_kernel, conv_norm, dropout)
        self.ffn = PositionwiseFeedForward(d_model, ffn_dim, dropout, nn.SiLU())
        self.norm_ffn_macaron = nn.LayerNorm(d_model)
        self.norm_mha = nn.LayerNorm(d_model)
        self.norm_conv = nn.LayerNorm(d_model)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.norm_final = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, pos_emb: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self.dropout(self.ffn_macaron(self.norm_ffn_macaron(x)))
        h = self.norm_mha(x)
        x = x + self.dropout(self.self_attn(h, h, h, valid[:, None, :], pos_emb))
        x = x + self.dropout(self.conv(self.norm_conv(x), valid))
        x = x + 0.5 * self.dropout(self.ffn(self.norm_ffn(x)))
        return self.norm_final(x)
