"""Conformer encoder: Conv2d subsampling (4×), positional encoding, N Conformer blocks.

Hookable names (stable, used by extraction): ``encoder.embed`` (the front end,
output ``((B, T', d), pos_emb)``) and ``encoder.layers.{i}`` (block ``i``, output
``(B, T', d)``). Valid lengths after the front end are
``((T − 1) // 2 − 1) // 2`` (:func:`subsampled_lengths`).

``task_memories`` is what the models read: the memory each task's decoder (and
the CTC head) attends to. Here every task reads the same output; the
structured multi-task encoders (``split_encoder``, ``shared_private_encoder``,
``sparse_shared_encoder``) subclass this one and give each task its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.attention import MultiHeadedAttention, RelPositionMultiHeadedAttention
from cka_probe.asr.nn.embedding import PositionalEncoding, RelPositionalEncoding
from cka_probe.asr.nn.encoder_layer import ConformerEncoderLayer
from cka_probe.asr.nn.mask import valid_mask
from cka_probe.asr.nn.subsampling import Conv2dSubsampling4, subsampled_lengths


class ConformerEncoder(nn.Module):
    """``feats (B, T, F), feat_lens (B,) -> (enc (B, T', d), enc_lens (B,))``.

    ``SHARED``: patterns (below ``encoder.``) of the modules every task reads, the ``encoder``
    stream; ``TASK_PARTS``: ``{attribute: (stream kind, patterns below attribute.task)}`` of the
    modules of one task, the ``encoder/<kind>/<task>`` streams (none here).
    """

    SHARED: tuple[str, ...] = ("embed", "layers.*")
    TASK_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {}

    def __init__(self, n_mels: int, cfg: dict[str, Any]) -> None:
        super().__init__()
        d, relative = cfg["d_model"], cfg["pos_enc"] == "rel_pos"
        pos_enc = (RelPositionalEncoding if relative else PositionalEncoding)(d, cfg["dropout"])
        self.embed = Conv2dSubsampling4(n_mels, cfg["subsampling_channels"], d, pos_enc)
        self.layers = conformer_blocks(cfg, cfg["n_layers"])

    def front(
        self, feats: torch.Tensor, feat_lens: torch.Tensor
    ) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
        """``feats (B, T, F) -> (x (B, T', d), pos_emb, valid (B, T'), enc_lens (B,))``."""
        x, pos_emb = self.embed(feats)
        enc_lens = subsampled_lengths(feat_lens)
        return x, pos_emb, valid_mask(enc_lens, x.shape[1]), enc_lens

    def forward(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, pos_emb, valid, enc_lens = self.front(feats, feat_lens)
        return run_blocks(self.layers, x, valid, pos_emb), enc_lens

    def task_memories(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tasks: tuple[str, ...],
        diverges: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """``({task: (B, T', d)}, enc_lens (B,), auxiliary losses {})``: one output read by every task."""
        enc, enc_lens = self(feats, feat_lens)
        return {task: enc for task in tasks}, enc_lens, {}


def conformer_blocks(cfg: dict[str, Any], n: int) -> nn.ModuleList:
    """``n`` Conformer blocks of the encoder config ``cfg``."""
    d = cfg["d_model"]
    attention = RelPositionMultiHeadedAttention if cfg["pos_enc"] == "rel_pos" else MultiHeadedAttention
    return nn.ModuleList(
        ConformerEncoderLayer(
            d,
            attention(d, cfg["n_heads"], cfg["attention_dropout"]),
            cfg["ffn_dim"],
            cfg["conv_kernel"],
            cfg["conv_norm"],
            cfg["dropout"],
        )
        for _ in range(n)
    )


def run_blocks(
    blocks: Iterable[nn.Module], x: torch.Tensor, valid: torch.Tensor, pos_emb: Any
) -> torch.Tensor:
    """``x (B, T', d)`` through ``blocks`` in order."""
    for block in blocks:
        x = block(x, valid, pos_emb)
    return x
