"""The bundled checkpoints' extraction, by its original names (see
:mod:`cka_probe.extract.models.bundled`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from torch import nn

from cka_probe.extract.models import extract_model, hookable_layers
from cka_probe.extract.models import layer_streams as _layer_streams
from cka_probe.extract.models.bundled import (
    ENCODER_LAYERS,
    default_layers,
    stream_order,
    streams_of,
    teacher_forced,
)
from cka_probe.paths import file_sha256

__all__ = [
    "ENCODER_LAYERS",
    "default_layers",
    "extract_checkpoint",
    "file_sha256",
    "hookable_layers",
    "layer_streams",
    "teacher_forced",
]


def layer_streams(model: nn.Module, patterns: Sequence[str], tasks: Sequence[str]) -> dict[str, list[str]]:
    """Module names of a bundled model matching ``patterns``, grouped by ``model.stream_of``
    (encoder streams first, then the tasks' decoders)."""
    return _layer_streams(partial(streams_of, model), model, patterns, tasks, stream_order(model, tasks))


def extract_checkpoint(ckpt_path: str | Path, manifest: str | Path, out: str | Path, **options) -> Path:
    """Extract a bundled checkpoint's layers over ``manifest`` into the store ``out`` (see
    ``extract_model``)."""
    return extract_model(ckpt_path, manifest, out, **options)
