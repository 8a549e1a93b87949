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

A DO model has a ``variant`` (:mod:`cka_probe.asr.variants.spec`): ``shared`` (the
above), or a structured encoder that gives each task its own memory
(``split-K``, ``shared-private``, ``sparse-shared``) and may add auxiliary
losses to the sum with their config weights. :meth:`ASRModel.encode` then
returns the task memories concatenated over the feature axis,
``(B, T', n_tasks·d)`` in ``tasks`` order, and :meth:`ASRModel.task_memory`
cuts out one task's; the decoders and the CTC head do that themselves, so
decoding code treats every variant alike. Module names and their streams
(``encoder``, ``encoder/<kind>/<task>``, ``decoder/<task>``) come from
:meth:`ASRModel.stream_of` and :meth:`ASRModel.default_layers`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cka_probe.asr.nn.ctc import CTC
from cka_probe.asr.nn.decoder import TransformerDecoder
from cka_probe.asr.nn.encoder import ConformerEncoder
from cka_probe.asr.nn.label_smoothing import LabelSmoothingLoss
from cka_probe.asr.variants.shared_private_encoder import SharedPrivateEncoder
from cka_probe.asr.variants.sparse_shared_encoder import SparseSharedEncoder
from cka_probe.asr.variants.spec import Variant, parse_variant, variant_settings
from cka_probe.asr.variants.split_encoder import SplitEncoder
from cka_probe.errors import CKAProbeError

IGNORE_ID = -1
ARCH_TASKS = {"so": (("surface",), ("meaning",)), "do": (("surface", "meaning"),)}
AUX_WEIGHTS = {"shared-private": ("adversarial", "orthogonality"), "sparse-shared": ("l0",)}


def add_sos_eos(
    targets: torch.Tensor, target_lens: torch.Tensor, sos_eos: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L)`` padded with −1 -> ``ys_in = <sos> y`` (padded with ``<eos>``) and ``ys_out = y <eos>``
    (padded with −1)."""
    b = targets.shape[0]
    ys = torch.cat([targets, targets.new_full((b, 1), IGNORE_ID)], dim=1)  # (B, L+1)
    ys_out = ys.scatter(1, target_lens[:, None], sos_eos)
    ys_in = torch.cat(
        [targets.new_full((b, 1), sos_eos), targets.masked_fill(targets == IGNORE_ID, sos_eos)], dim=1
    )
    return ys_in, ys_out


class ASRModel(nn.Module):
    """A CTC-attention model with one decoder per task in ``tasks`` and an encoder of ``variant``."""

    def __init__(
        self,
        config: dict[str, Any],
        arch: str,
        tasks: tuple[str, ...],
        vocab_sizes: dict[str, int],
        variant: str = "shared",
    ) -> None:
        super().__init__()
        self.arch, self.tasks = arch, tuple(tasks)
        self.variant = parse_variant(variant, config["encoder"]["n_layers"])
        self.ctc_task = "surface" if "surface" in self.tasks else self.tasks[0]
        self.weights = task_weights(config["loss"][arch], arch, self.tasks) | aux_weights(
            config, self.variant
        )
        self.sos_eos = {task: vocab_sizes[task] - 1 for task in self.tasks}
        d = config["encoder"]["d_model"]
        self.encoder = build_encoder(config, self.variant, self.tasks)
        self.ctc = CTC(d, vocab_sizes[self.ctc_task])
        self.decoders = nn.ModuleDict(
            {t: TransformerDecoder(vocab_sizes[t], d, config["decoder"]) for t in self.tasks}
        )
        self.att_loss = LabelSmoothingLoss(config["loss"]["label_smoothing"], IGNORE_ID)

    def encode(self, feats: torch.Tensor, feat_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 80), (B,) -> (enc, enc_lens (B,))``; ``enc`` is ``(B, T', d)``, or ``(B, T', n_tasks·d)``
        for a structured variant."""
        memories, enc_lens, _ = self.encoder.task_memories(feats, feat_lens, self.tasks)
        if self.variant.kind == "shared":
            return memories[self.tasks[0]], enc_lens
        return torch.cat([memories[t] for t in self.tasks], dim=-1), enc_lens

    def task_memory(self, task: str, enc: torch.Tensor) -> torch.Tensor:
        """Task ``task``'s part ``(B, T', d)`` of :meth:`encode`'s output."""
        if self.variant.kind == "shared":
            return enc
        d = enc.shape[-1] // len(self.tasks)
        i = self.tasks.index(task)
        return enc[..., i * d : (i + 1) * d]

    def decode_teacher_forced(
        self,
        task: str,
        enc: torch.Tensor,
        enc_lens: torch.Tensor,
        ys_in: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Decoder logits ``(B, U, V)`` for ``ys_in = <sos> y`` ``(B, U)``."""
        return self.decoders[task](self.task_memory(task, enc), enc_lens, ys_in, ys_in_lens)

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T', ·) -> (B, T', V_ctc)`` log-probabilities of the CTC head."""
        return self.ctc.log_probs(self.task_memory(self.ctc_task, enc))

    def decoder_log_probs(
        self, task: str, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities ``(B, U, V)`` of the next token after each prefix of unpadded
        ``ys_in (B, U)``."""
        ys_in_lens = torch.full((ys_in.shape[0],), ys_in.shape[1], dtype=torch.long, device=ys_in.device)
        return torch.log_softmax(self.decode_teacher_forced(task, enc, enc_lens, ys_in, ys_in_lens), dim=-1)

    def forward(
        self,
        feats: torch.Tensor,
        feat_lens: torch.Tensor,
        targets: dict[str, torch.Tensor],
        target_lens: dict[str, torch.Tensor],
        diverges: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses: ``ctc``, ``att_<task>`` for each task, the variant's auxiliary ones, their weighted sum
        ``loss``.

        ``diverges (B,)`` bool (surface ≠ meaning) is needed by the ``shared-private`` discriminator.
        """
        memories, enc_lens, aux = self.encoder.task_memories(feats, feat_lens, self.tasks, diverges)
        losses = {
            "ctc": self.ctc(
                memories[self.ctc_task], enc_lens, targets[self.ctc_task], target_lens[self.ctc_task]
            )
        }
        for task in self.tasks:
            ys_in, ys_out = add_sos_eos(targets[task], target_lens[task], self.sos_eos[task])
            logits = self.decoders[task](memories[task], enc_lens, ys_in, target_lens[task] + 1)
            losses[f"att_{task}"] = self.att_loss(logits, ys_out)
        losses |= aux
        missing = [name for name in self.weights if name not in losses]
        if missing:
            raise CKAProbeError(
                f"the {self.variant.name} model's loss needs {', '.join(missing)}: "
                "pass diverges (surface ≠ meaning per utterance)"
            )
        losses["loss"] = sum(w * losses[name] for name, w in self.weights.items())
        return losses

    @property
    def loss_names(self) -> list[str]:
        """The components of ``loss``, in the order :meth:`forward` returns them."""
        return list(self.weights)

    def stream_of(self, name: str) -> str:
        """The stream of module ``name``: ``decoder/<task>``, ``encoder/<kind>/<task>`` or ``encoder``."""
        for task in self.tasks:
            if name.startswith(f"decoders.{task}."):
                return f"decoder/{task}"
            for part, (kind, _) in self.encoder.TASK_PARTS.items():
                if name == f"encoder.{part}.{task}" or name.startswith(f"encoder.{part}.{task}."):
                    return f"encoder/{kind}/{task}"
        return "encoder"

    def encoder_streams(self) -> list[str]:
        """``encoder`` and the task streams of the encoder, in model order."""
        kinds = dict.fromkeys(kind for kind, _ in self.encoder.TASK_PARTS.values())
        return ["encoder", *(f"encoder/{kind}/{task}" for kind in kinds for task in self.tasks)]

    def default_layers(self, tasks: tuple[str, ...] | list[str]) -> list[str]:
        """Patterns of the layers extracted by default: the encoder's shared and task parts, ``tasks``'
        decoders."""
        shared = [f"encoder.{p}" for p in self.encoder.SHARED]
        parts = [
            f"encoder.{part}.{task}" + (f".{p}" if p else "")
            for part, (_, patterns) in self.encoder.TASK_PARTS.items()
            for task in self.tasks
            for p in patterns
        ]
        return [*shared, *parts, *(f"decoders.{task}.layers.*" for task in tasks)]


def build_encoder(config: dict[str, Any], variant: Variant, tasks: tuple[str, ...]) -> ConformerEncoder:
    """The encoder of ``variant`` (:mod:`cka_probe.asr.variants.spec`)."""
    n_mels, cfg = config["features"]["n_mels"], config["encoder"]
    if variant.kind == "split":
        return SplitEncoder(n_mels, cfg, tasks, variant.k)
    if variant.kind == "shared-private":
        return SharedPrivateEncoder(n_mels, cfg, tasks, variant_settings(config, variant.kind))
    if variant.kind == "sparse-shared":
        return SparseSharedEncoder(n_mels, cfg, tasks, variant_settings(config, variant.kind))
    return ConformerEncoder(n_mels, cfg)


def aux_weights(config: dict[str, Any], variant: Variant) -> dict[str, float]:
    """The weights of ``variant``'s auxiliary losses, from ``config["variants"]`` (or the defaults)."""
    names = AUX_WEIGHTS.get(variant.kind, ())
    settings = variant_settings(config, variant.kind) if names else {}
    return {name: float(settings[name]) for name in names}


def task_weights(weights: dict[str, float], arch: str, tasks: tuple[str, ...]) -> dict[str, float]:
    """Loss weights keyed by component: ``{"ctc": w, "att_<task>": w, ...}``."""
    if arch == "so":
        return {"ctc": weights["ctc"], f"att_{tasks[0]}": weights["att"]}
    return {"ctc": weights["ctc"], **{f"att_{t}": weights[t] for t in tasks}}


def build_model(
    config: dict[str, Any],
    arch: str,
    tasks: tuple[str, ...] | list[str],
    vocab_sizes: dict[str, int],
    variant: str = "shared",
) -> ASRModel:
    """An untrained :class:`ASRModel`; ``tasks`` must suit ``arch`` (SO: one task; DO: surface, meaning).

    ``variant`` (DO only) names the encoder's structure (:mod:`cka_probe.asr.variants.spec`).
    """
    tasks = tuple(tasks)
    check_variant(arch, variant, config["encoder"]["n_layers"])
    if tasks not in ARCH_TASKS.get(arch, ()):
        raise CKAProbeError(
            f"arch '{arch}' with tasks {tasks}: use so with (surface,) or (meaning,), or do with "
            "(surface, meaning)"
        )
    missing = [t for t in tasks if t not in vocab_sizes]
    if missing:
        raise CKAProbeError(f"no vocabulary size for task(s) {', '.join(missing)}")
    return ASRModel(config, arch, tasks, vocab_sizes, variant)


def check_variant(arch: str, variant: str, n_layers: int) -> Variant:
    """The parsed ``variant``; a one-line error for an unknown one or a structured variant of an SO model."""
    parsed = parse_variant(variant, n_layers)
    if arch == "so" and parsed.kind != "shared":
        raise CKAProbeError(
            f"variant '{variant}' is a dual-output structure; a single-output model is 'shared'"
        )
    return parsed
