"""MODEL -> its adapter: a bundled ``.pt``, a Hugging Face folder (by ``model_type``), or
``FILE.py:FUNCTION``."""

from __future__ import annotations

from pathlib import Path

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter
from cka_probe.extract.models.python_adapter import (
    is_python_adapter,
    load_python_adapter,
)


def resolve(model: str | Path) -> Adapter:
    """The adapter for ``model``; a one-line error for anything it cannot read."""
    spec = str(model)
    if is_python_adapter(spec):
        return load_python_adapter(spec)
    path = Path(spec)
    if path.is_dir():
        return hf_adapter(path)
    if path.suffix == ".pt" and path.is_file():
        from cka_probe.extract.models.bundled import BundledAdapter

        return BundledAdapter(path)
    raise CKAProbeError(
        f"{spec}: not a checkpoint .pt, a Hugging Face model folder (with config.json) or FILE.py:FUNCTION"
    )


def hf_adapter(folder: Path) -> Adapter:
    """The adapter for a local HF folder, chosen from ``config.json``'s ``model_type``."""
    from cka_probe.extract.models.hf import read_config
    from cka_probe.extract.models.wav2vec2 import MODEL_TYPES

    if not (folder / "config.json").is_file():
        raise CKAProbeError(f"{folder}: a model folder needs config.json (a Hugging Face transformers model)")
    config = read_config(folder)
    if config["model_type"] == "whisper":
        from cka_probe.extract.models.whisper import WhisperAdapter

        return WhisperAdapter(folder, config)
    if config["model_type"] in MODEL_TYPES:
        from cka_probe.extract.models.wav2vec2 import Wav2Vec2Adapter

        return Wav2Vec2Adapter(folder, config)
    raise CKAProbeError(
        f"{folder}: model_type {config['model_type']!r} has no adapter (supported: whisper, "
        f"{', '.join(MODEL_TYPES)}); write a FILE.py:FUNCTION adapter"
    )
