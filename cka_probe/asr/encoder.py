"""Conformer encoder: Conv2d subsampling (4×), positional encoding, N Conformer blocks.

Hookable names (stable, used by extraction): ``encoder.embed`` (the front end,
output ``((B, T', d), pos_emb)``) and ``encoder.layers.{i}`` (block ``i``, output
``(B, T', d)``). Valid lengths after the front end are
``((T − 1) // 2 − 1) // 2`` (:func:`subsampled_lengths`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from cka_probe.asr.embedding import PositionalEncoding, RelPositionalEncoding
from cka_probe.asr.encoder_layer import ConformerEncoderLayer
from cka_probe.asr.mask import valid_mask
from cka_probe.asr.subsampling import Conv2dSubsampling4, subsampled_lengths


class ConformerEncoder(nn.Module):
    """``feats (B, T, F), feat_lens (B,) -> (enc (B, T', d), enc_lens (B,))``."""

    def __init__(self, n_mels: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        d, relative = cfg["d_model"], cfg["pos_enc"] == "rel_pos"
        pos_enc = (RelPositionalEncoding if relative else PositionalEncoding)(d, cfg["dropout"])
        attention = RelPositionMultiHeadedAttention if relative else MultiHeadedAttention
        self.embed = Conv2dSubsampling4(n_mels, cfg["subsampling_channels"], d, pos_enc)
        self.layers = nn.ModuleList(
            ConformerEncoderLayer(
                d,
                attention(d, cfg["n_heads"], cfg["attention_dropout"]),
                cfg["ffn_dim"],
                cfg["conv_kernel"],
                cfg["conv_norm"],
                cfg["dropout"],
            )
            for _ in range(cfg["n_layers"])
        )

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, pos_emb = self.embed(feats)
        enc_lens = subsampled_lengths(feat_lens)
        valid = valid_mask(enc_lens, x.shape[1])  # (B, T')
        for layer in self.layers:
            x = layer(x, valid, pos_emb)
        return x, enc_lens
