"""The bundled checkpoints (``cka-probe train``'s ``.pt``): Conformer/Transformer encoder, one decoder per task.

The encoder stream holds ``encoder.embed`` and ``encoder.layers.*`` with the
model's own ``enc_lens`` as valid lengths; each task gets one teacher-forced
decoder pass (``<sos>`` + the reference transcript), stored as
``decoder/<task>`` with ``ys_in_lens`` as valid lengths and the input token
ids. Provenance: the checkpoint's path and sha256, config, arch and tasks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter, Batch, file_sha256, in_order

ENCODER_LAYERS = ("encoder.embed", "encoder.layers.*")


def default_layers(tasks: Sequence[str]) -> list[str]:
    """Subsampling, every encoder block, and every decoder layer of ``tasks``."""
    return [*ENCODER_LAYERS, *(f"decoders.{task}.layers.*" for task in tasks)]


def stream_of(name: str, tasks: Sequence[str]) -> str:
    """``decoders.<task>.…`` -> ``decoder/<task>``; anything else -> ``encoder``."""
    for task in tasks:
        if name.startswith(f"decoders.{task}."):
            return f"decoder/{task}"
    return "encoder"


def streams_of(name: str, tasks: Sequence[str]) -> list[str]:
    """The one stream of a bundled model's layer; a decoder of a task not extracted is an error."""
    if name.startswith("decoders.") and stream_of(name, tasks) == "encoder":
        raise CKAProbeError(f"layer {name} belongs to a decoder whose task is not extracted (--tasks)")
    return [stream_of(name, tasks)]


def teacher_forced(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Encode, then one teacher-forced pass per task of ``batch["tasks"]``; returns valid lengths per stream."""
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    lengths = {"encoder": enc_lens}
    for task in batch["tasks"]:
        model.decode_teacher_forced(task, enc, enc_lens, batch["ys_in"][task], batch["ys_in_lens"][task])
        lengths[f"decoder/{task}"] = batch["ys_in_lens"][task]
    return lengths


class BundledAdapter(Adapter):
    """A checkpoint written by ``cka-probe train``."""

    def __init__(self, path: str | Path):
        from cka_probe.asr import load_checkpoint

        self.path = Path(path)
        self.name = str(path)
        self.model, self.ckpt = load_checkpoint(path)
        self.tasks = tuple(self.model.tasks)

    def build(self, device: str) -> nn.Module:
        return self.model.to(device).eval()

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        return default_layers(tasks)

    def streams_of(self, name: str, tasks: Sequence[str]) -> list[str]:
        return streams_of(name, tasks)

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        from cka_probe.asr.data import ManifestBatches

        loader = ManifestBatches(rows, self.ckpt, batch_size, tasks=tasks)
        for block in in_order(rows, batch_size):
            batch = loader.collate(block)
            yield {**batch, "tasks": list(tasks), "metadata": {"n_frames": batch["feat_lens"].tolist()},
                   "tokens": {f"decoder/{t}": batch["ys_in"][t] for t in tasks}}

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return teacher_forced(model, batch)

    def attrs(self) -> dict:
        tokenizers = self.ckpt["tokenizers"]
        return {"adapter": "bundled", "checkpoint": str(self.path.resolve()),
                "checkpoint_sha256": file_sha256(self.path), "config": self.ckpt["config"],
                "arch": self.model.arch, "tasks": list(self.model.tasks),
                "checkpoint_epoch": int(self.ckpt.get("epoch", -1)),
                "decoder_prompt": {t: [tokenizers[t].sos_eos] for t in self.tasks},
                "tokenizer": {t: {"kind": "CharTokenizer", "unit": tokenizers[t].unit, "symbols": tokenizers[t].symbols}
                              for t in self.tasks}}
