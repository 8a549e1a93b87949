"""Joint CTC-attention speech recognisers (Kim, Hori & Watanabe 2017): single- and dual-output.

- Single-output (``so``): one Conformer encoder, one attention decoder, a CTC head;
  ``L = w_ctc·L_ctc + w_att·L_att`` (paper: 0.2, 0.8).
- Dual-output (``do``): one shared encoder, a ``surface`` and a ``meaning`` decoder,
  CTC on the surface targets; ``L = w_ctc·L_ctc + w_s·L_surface + w_m·L_meaning``
  (paper: 0.2, 0.5, 0.3).

The CTC head is on the surface targets when the model has that task, else on
its own task's (an SO meaning model). ``decoders`` is an ``nn.ModuleDict`` keyed
by task, so decoder layers are named ``decoders.{task}.layers.{j}``.
Targets are padded with ``ignore_id = -1``; ``<sos/eos>`` is the last id of
each task's vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.ctc import CTC
from cka_probe.asr.decoder import TransformerDecoder
from cka_probe.asr.encoder import ConformerEncoder
from cka_probe.asr.label_smoothing import LabelSmoothingLoss
from cka_probe.errors import CKAProbeError

IGNORE_ID = -1
ARCH_TASKS = {"so": (("surface",), ("meaning",)), "do": (("surface", "meaning"),)}


def add_sos_eos(targets: torch.Tensor, target_lens: torch.Tensor, sos_eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L)`` padded with −1 -> ``ys_in = <sos> y`` (padded with ``<eos>``) and ``ys_out = y <eos>`` (padded with −1)."""
    b = targets.shape[0]
    ys = torch.cat([targets, targets.new_full((b, 1), IGNORE_ID)], dim=1)  # (B, L+1)
    ys_out = ys.scatter(1, target_lens[:, None], sos_eos)
    ys_in = torch.cat([targets.new_full((b, 1), sos_eos), targets.masked_fill(targets == IGNORE_ID, sos_eos)], dim=1)
    return ys_in, ys_out


class ASRModel(nn.Module):
    """A CTC-attention model with one decoder per task in ``tasks``."""

    def __init__(self, config: dict[str, Any], arch: str, tasks: tuple[str, ...], vocab_sizes: dict[str, int]) -> None:
        super().__init__()
        self.arch, self.tasks = arch, tuple(tasks)
        self.ctc_task = "surface" if "surface" in self.tasks else self.tasks[0]
        self.weights = task_weights(config["loss"][arch], arch, self.tasks)
        self.sos_eos = {task: vocab_sizes[task] - 1 for task in self.tasks}
        d = config["encoder"]["d_model"]
        self.encoder = ConformerEncoder(config["features"]["n_mels"], config["encoder"])
        self.ctc = CTC(d, vocab_sizes[self.ctc_task])
        self.decoders = nn.ModuleDict({t: TransformerDecoder(vocab_sizes[t], d, config["decoder"]) for t in self.tasks})
        self.att_loss = LabelSmoothingLoss(config["loss"]["label_smoothing"], IGNORE_ID)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 80), (B,) -> (enc (B, T', d), enc_lens (B,))``."""
        return self.encoder(feats, feat_lens)

    def decode_teacher_forced(
        self, task: str, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor, ys_in_lens: torch.Tensor
    ) -> torch.Tensor:
        """Decoder logits ``(B, U, V)`` for ``ys_in = <sos> y`` ``(B, U)``."""
        return self.decoders[task](enc, enc_lens, ys_in, ys_in_lens)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T', d) -> (B, T', V_ctc)`` log-probabilities of the CTC head."""
        return self.ctc.log_probs(enc)

    def decoder_log_probs(self, task: str, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, U, V)`` of the next token after each prefix of unpadded ``ys_in (B, U)``."""
        ys_in_lens = torch.full((ys_in.shape[0],), ys_in.shape[1], dtype=torch.long, device=ys_in.device)
        return torch.log_softmax(self.decode_teacher_forced(task, enc, enc_lens, ys_in, ys_in_lens), dim=-1)

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        targets: dict[str, torch.Tensor],
        target_lens: dict[str, torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Losses: ``ctc``, ``att_<task>`` for each task, and their weighted sum ``loss``."""
        enc, enc_lens = self.encode(feats, feat_lens)
        losses = {"ctc": self.ctc(enc, enc_lens, targets[self.ctc_task], target_lens[self.ctc_task])}
        for task in self.tasks:
            ys_in, ys_out = add_sos_eos(targets[task], target_lens[task], self.sos_eos[task])
            logits = self.decode_teacher_forced(task, enc, enc_lens, ys_in, target_lens[task] + 1)
            losses[f"att_{task}"] = self.att_loss(logits, ys_out)
        losses["loss"] = sum(w * losses[name] for name, w in self.weights.items())
        return losses


def task_weights(weights: dict[str, float], arch: str, tasks: tuple[str, ...]) -> dict[str, float]:
    """Loss weights keyed by component: ``{"ctc": w, "att_<task>": w, ...}``."""
    if arch == "so":
        return {"ctc": weights["ctc"], f"att_{tasks[0]}": weights["att"]}
    return {"ctc": weights["ctc"], **{f"att_{t}": weights[t] for t in tasks}}


def build_model(config: dict[str, Any], arch: str, tasks: tuple[str, ...] | list[str], vocab_sizes: dict[str, int]) -> ASRModel:
    """An untrained :class:`ASRModel`; ``tasks`` must suit ``arch`` (SO: one task; DO: surface, meaning)."""
    tasks = tuple(tasks)
    if tasks not in ARCH_TASKS.get(arch, ()):
        raise CKAProbeError(f"arch '{arch}' with tasks {tasks}: use so with (surface,) or (meaning,), or do with (surface, meaning)")
    missing = [t for t in tasks if t not in vocab_sizes]
    if missing:
        raise CKAProbeError(f"no vocabulary size for task(s) {', '.join(missing)}")
    return ASRModel(config, arch, tasks, vocab_sizes)
