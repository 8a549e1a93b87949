"""Adversarial shared–private encoder (``--variant shared-private``; Liu, Qiu & Huang 2017, ACL).

    s = SharedEncoder(x)                       the Conformer encoder, read by every task
    p_t = Private_t(front(x))                  a small private branch per task (``private_layers`` blocks)
    m_t = W_t [s; p_t]                         what task t's decoder and (for surface) the CTC head read

Two auxiliary losses, weighted in the config's ``variants.shared-private``:

- ``adversarial``: a discriminator (:mod:`cka_probe.asr.variants.discriminator`) reads the
  mean-pooled shared features through a gradient-reversal layer (Ganin &
  Lempitsky 2015) and predicts whether the utterance's two transcripts differ.
  Liu et al. predict the task a sentence comes from; here both tasks read the
  same utterance, so the shared features of the two tasks are identical and a
  task label cannot be predicted from them at all. What tells the tasks apart
  is where their transcripts diverge, so that is what the shared space is
  trained to hide, and the private branches are left to carry it.
- ``orthogonality``: ‖sᵀp_t‖²_F / (‖sᵀs‖_F‖p_tᵀp_t‖_F) summed over tasks (Bousmalis et al. 2016;
  :mod:`cka_probe.asr.variants.orthogonality`), pushing private features away from the
  shared ones.

Hookable names: ``encoder.embed``, ``encoder.layers.{i}`` (stream ``encoder``:
the shared features), ``encoder.private.{task}.layers.{j}`` and
``encoder.fuse.{task}`` (``m_t``) (stream ``encoder/private/{task}``), and
``encoder.discriminator`` (not extracted by default).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.encoder import ConformerEncoder, conformer_blocks, run_blocks
from cka_probe.asr.variants.discriminator import Discriminator
from cka_probe.asr.variants.orthogonality import orthogonality_penalty


class SharedPrivateEncoder(ConformerEncoder):
    """The shared Conformer encoder, per-task private branches and fusions, and the discriminator."""

    TASK_PARTS = {"private": ("private", ("layers.*",)), "fuse": ("private", ("",))}

    def __init__(
        self, n_mels: int, cfg: dict[str, Any], tasks: tuple[str, ...], settings: dict[str, Any]
    ) -> None:
        super().__init__(n_mels, cfg)
        d = cfg["d_model"]
        n_private = int(settings["private_layers"])
        self.private = nn.ModuleDict(
            {t: nn.ModuleDict({"layers": conformer_blocks(cfg, n_private)}) for t in tasks}
        )
        self.fuse = nn.ModuleDict({t: nn.Linear(2 * d, d) for t in tasks})
        self.discriminator = Discriminator(d, int(settings["discriminator_dim"]), 2, settings["reversal"])

    def task_memories(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tasks: tuple[str, ...],
        diverges: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """``({task: m_t (B, T', d)}, enc_lens (B,), losses)``; ``diverges (B,)`` bool adds the adversarial
        loss."""
        x, pos_emb, valid, enc_lens = self.front(feats, feat_lens)
        shared = run_blocks(self.layers, x, valid, pos_emb)
        private = {t: run_blocks(self.private[t]["layers"], x, valid, pos_emb) for t in tasks}
        memories = {t: self.fuse[t](torch.cat([shared, private[t]], dim=-1)) for t in tasks}
        losses = {"orthogonality": sum(orthogonality_penalty(shared, private[t], valid) for t in tasks)}
        if diverges is not None:
            losses["adversarial"] = self.discriminator.loss(shared, valid, diverges.long())
        return memories, enc_lens, losses
