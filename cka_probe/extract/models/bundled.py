"""The bundled checkpoints (``cka-probe train``'s ``.pt``): Conformer/Transformer encoder, one decoder per
task.

The encoder stream holds ``encoder.embed`` and ``encoder.layers.*`` with the
model's own ``enc_lens`` as valid lengths (a structured DO variant adds its
task streams ``encoder/<kind>/<task>``, named by ``model.stream_of``, with the
same lengths); each task gets one teacher-forced decoder pass (``<sos>`` + the
reference transcript), stored as ``decoder/<task>`` with ``ys_in_lens`` as
valid lengths and the input token ids. Provenance: the checkpoint's path and
sha256, config, arch, variant and tasks, and each task's tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter, Batch, in_order
from cka_probe.paths import file_sha256

ENCODER_LAYERS = ("encoder.embed", "encoder.layers.*")


def default_layers(tasks: Sequence[str], model: nn.Module | None = None) -> list[str]:
    """Subsampling, every encoder block (and a variant's task branches: ``model.default_layers``),
    and every decoder layer of ``tasks``."""
    if model is not None:
        return model.default_layers(tasks)
    return [*ENCODER_LAYERS, *(f"decoders.{task}.layers.*" for task in tasks)]


def stream_order(model: nn.Module, tasks: Sequence[str]) -> list[str]:
    """The encoder streams (``encoder``, then a variant's task streams), then the tasks' decoders."""
    return [*model.encoder_streams(), *(f"decoder/{t}" for t in tasks)]


def streams_of(model: nn.Module, name: str, tasks: Sequence[str]) -> list[str]:
    """The one stream of a layer (``model.stream_of``); a decoder of a task not extracted is an error."""
    stream = model.stream_of(name)
    if stream not in stream_order(model, tasks):
        raise CKAProbeError(f"layer {name} belongs to a decoder whose task is not extracted (--tasks)")
    return [stream]


def teacher_forced(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Encode, then one teacher-forced pass per task of ``batch["tasks"]``; returns valid lengths per
    stream."""
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    lengths = dict.fromkeys(model.encoder_streams(), enc_lens)
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

    def build_random(self, device: str, seed: int) -> nn.Module:
        """The checkpoint's architecture (config, arch, variant, tasks, vocabularies) with fresh weights
        drawn after ``torch.manual_seed(seed)``, in eval mode."""
        from cka_probe.asr.model import build_model

        ckpt = self.ckpt
        vocab_sizes = {task: tok.vocab_size for task, tok in ckpt["tokenizers"].items()}
        torch.manual_seed(seed)
        model = build_model(ckpt["config"], ckpt["arch"], tuple(ckpt["tasks"]), vocab_sizes, ckpt["variant"])
        return model.to(device).eval()

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        return default_layers(tasks, self.model)

    def stream_order(self, tasks: Sequence[str]) -> list[str]:
        return stream_order(self.model, tasks)

    def streams_of(self, name: str, tasks: Sequence[str]) -> list[str]:
        return streams_of(self.model, name, tasks)

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        from cka_probe.asr.data import ManifestBatches

        loader = ManifestBatches(rows, self.ckpt, batch_size, tasks=tasks)
        for block in in_order(rows, batch_size):
            batch = loader.collate(block)
            yield {
                **batch,
                "tasks": list(tasks),
                "metadata": {"n_frames": batch["feat_lens"].tolist()},
                "tokens": {f"decoder/{t}": batch["ys_in"][t] for t in tasks},
            }

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        return teacher_forced(model, batch)

    def word_spans(
        self,
        model: nn.Module,
        manifest: str | Path,
        store: Path,
        *,
        batch_size: int,
        limit: int | None,
        device: str,
    ) -> Path:
        """``<store>.words.jsonl``: each surface word's CTC-aligned encoder frames
        (:mod:`cka_probe.extract.word_spans`)."""
        from cka_probe.extract.word_spans import sidecar_path, write_word_spans

        return write_word_spans(
            model, self.ckpt, manifest, sidecar_path(store), batch_size=batch_size, limit=limit, device=device
        )

    def attrs(self) -> dict:
        tokenizers = self.ckpt["tokenizers"]
        return {
            "adapter": "bundled",
            "checkpoint": str(self.path.resolve()),
            "checkpoint_sha256": file_sha256(self.path),
            "config": self.ckpt["config"],
            "arch": self.model.arch,
            "variant": self.model.variant.name,
            "tasks": list(self.model.tasks),
            "checkpoint_epoch": int(self.ckpt.get("epoch", -1)),
            "decoder_prompt": {t: [tokenizers[t].sos_eos] for t in self.tasks},
            "tokenizer": {
                t: {"kind": "CharTokenizer", "unit": tokenizers[t].unit, "symbols": tokenizers[t].symbols}
                for t in self.tasks
            },
        }
