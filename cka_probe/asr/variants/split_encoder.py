"""Split encoder (``--variant split-K``): the lower blocks shared, the top ``K`` copied per task.

    h = Block_{N−K−1} ∘ … ∘ Block_0 (front(x))          shared
    m_t = Block^t_{N−1} ∘ … ∘ Block^t_{N−K} (h)          one branch per task

Each decoder attends to its own branch ``m_t``; the CTC head reads the branch
of its task. Hookable names: ``encoder.embed``, ``encoder.layers.{i}`` for
``i < N − K`` (stream ``encoder``) and ``encoder.branches.{task}.layers.{i}``
for ``N − K ≤ i < N`` (stream ``encoder/branch/{task}``), numbered like the
blocks of an unsplit encoder so that layer ``i`` of a branch lines up with
layer ``i`` of a single-task model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.encoder import ConformerEncoder, conformer_blocks, run_blocks


class SplitEncoder(ConformerEncoder):
    """``N − K`` shared Conformer blocks and, per task, ``K`` own blocks."""

    TASK_PARTS = {"branches": ("branch", ("layers.*",))}

    def __init__(self, n_mels: int, cfg: dict[str, Any], tasks: tuple[str, ...], k: int) -> None:
        n = cfg["n_layers"]
        super().__init__(n_mels, cfg | {"n_layers": n - k})
        self.branches = nn.ModuleDict({task: numbered(conformer_blocks(cfg, k), n - k) for task in tasks})

    def task_memories(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tasks: tuple[str, ...],
        diverges: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """``({task: m_t (B, T', d)}, enc_lens (B,), {})``."""
        x, pos_emb, valid, enc_lens = self.front(feats, feat_lens)
        shared = run_blocks(self.layers, x, valid, pos_emb)
        memories = {t: run_blocks(self.branches[t]["layers"].values(), shared, valid, pos_emb) for t in tasks}
        return memories, enc_lens, {}


def numbered(blocks: nn.ModuleList, first: int) -> nn.ModuleDict:
    """``{"layers": {str(first + j): block_j}}``: blocks named by their depth in the whole encoder."""
    return nn.ModuleDict({"layers": nn.ModuleDict({str(first + j): block for j, block in enumerate(blocks)})})
