"""The bundled checkpoints' extraction, by its original names (see :mod:`cka_probe.extract.models.bundled`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from cka_probe.extract.models import extract_model, hookable_layers
from cka_probe.extract.models import layer_streams as _layer_streams
from cka_probe.extract.models.base import file_sha256
from cka_probe.extract.models.bundled import ENCODER_LAYERS, default_layers, stream_of, streams_of, teacher_forced

__all__ = ["ENCODER_LAYERS", "default_layers", "stream_of", "teacher_forced", "layer_streams", "file_sha256",
           "extract_checkpoint", "hookable_layers"]


def layer_streams(model: nn.Module, patterns: Sequence[str], tasks: Sequence[str]) -> dict[str, list[str]]:
    """Module names of a bundled model matching ``patterns``, grouped by stream."""
    return _layer_streams(streams_of, model, patterns, tasks)


def extract_checkpoint(ckpt_path: str | Path, manifest: str | Path, out: str | Path, **options) -> Path:
    """Extract a bundled checkpoint's layers over ``manifest`` into the store ``out`` (see ``extract_model``)."""
    return extract_model(ckpt_path, manifest, out, **options)
