"""Extraction of the bundled checkpoints: checkpoint -> model -> manifest batches -> store.

The encoder stream holds ``encoder.embed`` and ``encoder.layers.*`` with the
model's own ``enc_lens`` as valid lengths (a structured DO variant adds its
task streams ``encoder/<kind>/<task>``, named by ``model.stream_of``, with
the same lengths); each task gets one teacher-forced
decoder pass (``<sos>`` + the reference transcript), stored as
``decoder/<task>`` with ``ys_in_lens`` as valid lengths. Provenance comes from
the checkpoint and the manifest (sha256 of both files).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.distributed import rank_device, run_sharded, world
from cka_probe.extract.extract import extract
from cka_probe.extract.hooks import select_modules

ENCODER_LAYERS = ("encoder.embed", "encoder.layers.*")
METADATA_FIELDS = ("surface", "meaning", "language", "speaker")


def default_layers(tasks: Sequence[str], model: nn.Module | None = None) -> list[str]:
    """Subsampling, every encoder block (and a variant's task branches: ``model.default_layers``),
    and every decoder layer of ``tasks``."""
    if model is not None:
        return model.default_layers(tasks)
    return [*ENCODER_LAYERS, *(f"decoders.{task}.layers.*" for task in tasks)]


def layer_streams(model: nn.Module, patterns: Sequence[str], tasks: Sequence[str]) -> dict[str, list[str]]:
    """Module names matching ``patterns``, grouped by ``model.stream_of`` (encoder streams first, then tasks' decoders)."""
    streams: dict[str, list[str]] = {s: [] for s in (*model.encoder_streams(), *(f"decoder/{t}" for t in tasks))}
    for name in select_modules(model, patterns):
        stream = model.stream_of(name)
        if stream not in streams:
            raise CKAProbeError(f"layer {name} belongs to a decoder whose task is not extracted (--tasks)")
        streams[stream].append(name)
    return {stream: names for stream, names in streams.items() if names}


def teacher_forced(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    """Encode, then one teacher-forced pass per task of ``batch["tasks"]``; returns valid lengths per stream."""
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    lengths = dict.fromkeys(model.encoder_streams(), enc_lens)
    for task in batch["tasks"]:
        model.decode_teacher_forced(task, enc, enc_lens, batch["ys_in"][task], batch["ys_in_lens"][task])
        lengths[f"decoder/{task}"] = batch["ys_in_lens"][task]
    return lengths


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _with_metadata(batches, rows: list[dict], tasks: Sequence[str]) -> Iterator[dict]:
    """Each batch plus ``metadata`` from its manifest rows and the tasks to decode."""
    by_id = {row["id"]: row for row in rows}
    for batch in batches:
        meta = {f: [str(by_id[i].get(f) or "") for i in batch["ids"]] for f in METADATA_FIELDS}
        meta["n_frames"] = batch["feat_lens"].tolist()
        yield {**batch, "metadata": meta, "tasks": list(tasks)}


def extract_checkpoint(ckpt_path: str | Path, manifest: str | Path, out: str | Path, *,
                       layers: Sequence[str] | None = None, tasks: Sequence[str] | None = None,
                       device: str = "cpu", batch_size: int = 16, dtype: str = "float32",
                       limit: int | None = None, overwrite: bool = False,
                       compression: str | None = None, word_spans: bool = False) -> Path:
    """Extract a bundled checkpoint's layers over ``manifest`` into the store ``out``.

    Under ``torchrun`` each rank extracts its block of the manifest and rank 0
    merges the shards (see :mod:`cka_probe.extract.distributed`). ``word_spans``
    also writes the surface words' CTC spans to ``<out>.words.jsonl``
    (:mod:`cka_probe.asr.word_spans`).
    """
    from cka_probe.asr import load_checkpoint
    from cka_probe.asr.data import ManifestBatches
    from cka_probe.data.manifest import read_manifest, write_manifest

    device = rank_device(device)
    model, ckpt = load_checkpoint(ckpt_path, device)
    tasks = list(tasks or model.tasks)
    unknown = [t for t in tasks if t not in model.tasks]
    if unknown:
        raise CKAProbeError(f"{ckpt_path}: the model has no {unknown[0]} decoder (tasks: {', '.join(model.tasks)})")
    streams = layer_streams(model, layers or default_layers(tasks, model), tasks)
    tasks = [t for t in tasks if f"decoder/{t}" in streams]
    rows = read_manifest(manifest)[:limit]
    attrs = {"checkpoint": str(Path(ckpt_path).resolve()), "checkpoint_sha256": file_sha256(ckpt_path),
             "config": ckpt["config"], "arch": model.arch, "variant": model.variant.name,
             "tasks": list(model.tasks), "extracted_tasks": tasks,
             "language": rows[0]["language"], "manifest": str(Path(manifest).resolve()),
             "manifest_sha256": file_sha256(manifest), "limit": limit or 0, "batch_size": batch_size,
             "checkpoint_epoch": int(ckpt.get("epoch", -1))}

    def extract_shard(start: int, stop: int, path: Path, progress: bool) -> Path:
        with tempfile.TemporaryDirectory() as tmp:
            part = write_manifest(Path(tmp) / "shard.jsonl", rows[start:stop])
            batches = ManifestBatches(part, ckpt, batch_size)
            return extract(model, _with_metadata(batches, rows, tasks), layers=streams, out=path,
                           forward=teacher_forced, attrs=attrs, dtype=dtype, compression=compression,
                           device=device, total=stop - start, overwrite=overwrite, progress=progress)

    stored = run_sharded(len(rows), out, extract_shard, overwrite=overwrite)
    if word_spans and world()[0] == 0:
        from cka_probe.asr.word_spans import sidecar_path, write_word_spans

        write_word_spans(model, ckpt, manifest, sidecar_path(stored), batch_size=batch_size, limit=limit, device=device)
    return stored


def hookable_layers(ckpt_path: str | Path) -> list[tuple[str, str, bool]]:
    """``(name, module class, selected by default)`` for every module of a checkpoint's model."""
    from cka_probe.asr import load_checkpoint

    model, _ = load_checkpoint(ckpt_path)
    chosen = set(select_modules(model, default_layers(model.tasks, model)))
    return [(name, type(m).__name__, name in chosen) for name, m in model.named_modules() if name]
