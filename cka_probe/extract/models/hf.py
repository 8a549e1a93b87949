"""What every Hugging Face adapter shares: the lazy ``transformers`` import, the folder's files, provenance.

``transformers`` is an optional extra (``pip install 'cka-probe[hf]'``) and is
imported only here, when an HF folder is read. Provenance of a folder: its
path, the sha256 of ``config.json`` and of each weights file, the config's
``_name_or_path``, and the transformers version.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import ModuleType

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")


def require_transformers(folder: str | Path) -> ModuleType:
    """The ``transformers`` module, or a one-line error saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise CKAProbeError(
            f"{folder}: a Hugging Face model folder needs transformers; pip install 'cka-probe[hf]'"
        ) from None
    return transformers


def read_config(folder: str | Path) -> dict:
    """The folder's ``config.json`` as a dict (model_type, architectures, ...)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CKAProbeError(f"{path}: not a readable config.json ({err})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise CKAProbeError(f"{path}: no model_type; not a Hugging Face transformers config")
    return config


def architecture(config: dict) -> str:
    """The first of ``architectures`` (``WhisperForConditionalGeneration``, ``Wav2Vec2ForCTC``, ...), or
    ''."""
    return str((config.get("architectures") or [""])[0])


def provenance(folder: str | Path, config: dict) -> dict:
    """Folder, config and weights sha256, ``_name_or_path`` and the transformers version."""
    folder = Path(folder)
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise CKAProbeError(f"{folder}: no weights file (model.safetensors or pytorch_model.bin)")
    return {
        "hf_folder": str(folder.resolve()),
        "config_sha256": file_sha256(folder / "config.json"),
        "weights_sha256": {p.name: file_sha256(p) for p in weights},
        "name_or_path": str(config.get("_name_or_path", "")),
        "model_type": config["model_type"],
        "architecture": architecture(config),
        "transformers_version": require_transformers(folder).__version__,
    }


def feature_extractor(folder: str | Path, cls: type, **defaults):
    """The folder's ``preprocessor_config.json`` as ``cls``, or ``cls(**defaults)`` with one warning."""
    folder = Path(folder)
    if (folder / "preprocessor_config.json").is_file():
        return cls.from_pretrained(str(folder))
    warnings.warn(
        f"{folder}: no preprocessor_config.json; using the {cls.__name__} defaults {defaults}", stacklevel=3
    )
    return cls(**defaults)


def base_prefix(model) -> str:
    """``"wav2vec2."`` for ``Wav2Vec2ForCTC``, ``"model."`` for Whisper's generation head, ``""`` for a bare
    model."""
    for name, module in model.named_modules():
        if module is model.base_model:
            return f"{name}." if name else ""
    return ""


def plain_settings(features) -> dict:
    """A feature extractor's scalar settings (its arrays, e.g. Whisper's mel filters, left out)."""
    return {
        k: v for k, v in features.to_dict().items() if isinstance(v, (str, int, float, bool)) or v is None
    }
