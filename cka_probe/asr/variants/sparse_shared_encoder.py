"""Sparse-shared encoder (``--variant sparse-shared``): one encoder, a gated subnetwork per task.

Sparse sharing (Sun et al. 2020, AAAI) gives every task its own subnetwork of
one shared network. Here the subnetworks are learned with hard-concrete gates
(Louizos et al. 2018; :mod:`cka_probe.asr.variants.hard_concrete`) on the ``d`` output
units of every Conformer block, one set of gates per task:

    h_t^0 = front(x),   h_t^{i+1} = Block_i(h_t^i) ⊙ z_t^i,   m_t = h_t^N

The blocks' weights are shared; only the gates differ. The auxiliary loss
``l0`` is the expected fraction of open gates over tasks and blocks, weighted
by ``variants.sparse-shared.l0``; at test time the gates take their
deterministic value, so a closed unit stays closed.

Hookable names: ``encoder.embed`` (stream ``encoder``) and
``encoder.gates.{task}.{i}`` (``h_t^{i+1}``, stream ``encoder/gated/{task}``).
The blocks ``encoder.layers.{i}`` run once per task, so they are no stream of
their own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.encoder import ConformerEncoder
from cka_probe.asr.variants.hard_concrete import HardConcreteGate


class SparseSharedEncoder(ConformerEncoder):
    """The Conformer encoder with per-task hard-concrete gates after every block."""

    SHARED = ("embed",)
    TASK_PARTS = {"gates": ("gated", ("*",))}

    def __init__(
        self, n_mels: int, cfg: dict[str, Any], tasks: tuple[str, ...], settings: dict[str, Any]
    ) -> None:
        super().__init__(n_mels, cfg)
        gate = {key: settings[key] for key in ("beta", "gamma", "zeta", "init_open")}
        self.gates = nn.ModuleDict(
            {t: nn.ModuleList(HardConcreteGate(cfg["d_model"], **gate) for _ in self.layers) for t in tasks}
        )

    def task_memories(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        tasks: tuple[str, ...],
        diverges: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """``({task: m_t (B, T', d)}, enc_lens (B,), {"l0": expected fraction of open gates})``."""
        x, pos_emb, valid, enc_lens = self.front(feats, feat_lens)
        memories = {}
        for task in tasks:
            h = x
            for block, gate in zip(self.layers, self.gates[task]):
                h = gate(block(h, valid, pos_emb))
            memories[task] = h
        opened = [gate.expected_open() for task in tasks for gate in self.gates[task]]
        return memories, enc_lens, {"l0": torch.stack(opened).mean()}
