"""Transformer attention decoder: token embedding, absolute positions, N layers, output layer.

Teacher forcing: ``ys_in = <sos> y₁ … y_U`` predicts ``y₁ … y_U <eos>``.

Token embeddings start as N(0, 1/d) (the initialisation of fairseq's
Transformer, Ott et al. 2019), so that ``embed(y)·√d`` has unit scale like the
sinusoids added to it. With PyTorch's N(0, 1) default the embedding is √d
times larger than the position encoding and than what the sublayers add to the
residual stream, and the decoder learns to attend by position much later.
Hookable names: ``decoders.{task}.layers.{j}`` (output ``(B, U, d)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.decoder_layer import TransformerDecoderLayer
from cka_probe.asr.nn.embedding import PositionalEncoding
from cka_probe.asr.nn.mask import causal_mask, valid_mask


class TransformerDecoder(nn.Module):
    """``enc (B, T, d), enc_lens (B,), ys_in (B, U), ys_in_lens (B,) -> logits (B, U, V)``."""

    def __init__(self, vocab_size: int, d_model: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)  # x·√d then has unit scale, like PE
        self.pos_enc = PositionalEncoding(d_model, cfg["dropout"])
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(
                d_model, cfg["n_heads"], cfg["ffn_dim"], cfg["dropout"], cfg["attention_dropout"]
            )
            for _ in range(cfg["n_layers"])
        )
        self.after_norm = nn.LayerNorm(d_model)
        self.output_layer = nn.Linear(d_model, vocab_size)

    def forward(
        self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor, ys_in_lens: torch.Tensor
    ) -> torch.Tensor:
        y, _ = self.pos_enc(self.embed(ys_in))  # (B, U, d)
        self_mask = causal_mask(ys_in_lens, ys_in.shape[1])  # (B, U, U)
        enc_mask = valid_mask(enc_lens, enc.shape[1])[:, None, :]  # (B, 1, T)
        for layer in self.layers:
            y = layer(y, self_mask, enc, enc_mask)
        return self.output_layer(self.after_norm(y))
