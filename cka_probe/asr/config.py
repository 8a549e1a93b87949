"""Model and training configurations: plain JSON files a user can copy and edit.

``load_config("tiny")`` and ``load_config("paper")`` read the named files in
``cka_probe/asr/configs/``; any other argument is a path to a JSON file with
the same sections (see ``docs/models.md``):

- ``features``  : ``sample_rate`` 16000, ``n_mels`` 80, ``frame_length_ms`` 25, ``frame_shift_ms`` 10
- ``tokenizer`` : ``korean_unit`` (``syllable`` | ``jamo``)
- ``encoder``   : Conformer sizes, ``pos_enc`` (``rel_pos`` | ``abs_pos``), ``conv_norm``
- ``decoder``   : Transformer decoder sizes (its width is the encoder's ``d_model``)
- ``loss``      : ``so`` {ctc, att}, ``do`` {ctc, surface, meaning}, ``label_smoothing``
- ``train``     : lr, warm-up, epochs, batch size, clip, weight decay, betas, seed, SpecAugment
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cka_probe.errors import CKAProbeError

CONFIG_DIR = Path(__file__).with_name("configs")
NAMED = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


def config_path(name_or_path: str | Path) -> Path:
    """The file behind a config name (``tiny``, ``paper``) or path."""
    if str(name_or_path) in NAMED:
        return CONFIG_DIR / f"{name_or_path}.json"
    path = Path(name_or_path)
    if not path.is_file():
        raise CKAProbeError(f"{path}: no such config file (named configs: {', '.join(NAMED)})")
    return path


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read and check a config; returns a plain dict (JSON types only)."""
    path = config_path(name_or_path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CKAProbeError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    check_config(config, str(path))
    return config


def check_config(config: dict[str, Any], source: str = "config") -> None:
    """Raise :class:`CKAProbeError` naming ``source`` and the key for a bad config.

    The type of every value is checked first (:func:`check_config_values`), then the choices and the
    relations between values.
    """
    check_config_values(config, source)
    encoder = config["encoder"]
    if encoder.get("pos_enc") not in ("rel_pos", "abs_pos"):
        raise CKAProbeError(f"{source}: encoder.pos_enc must be 'rel_pos' or 'abs_pos'")
    if encoder.get("conv_norm") not in ("batch_norm", "layer_norm"):
        raise CKAProbeError(f"{source}: encoder.conv_norm must be 'batch_norm' or 'layer_norm'")
    if encoder["d_model"] % encoder["n_heads"] or encoder["d_model"] % config["decoder"]["n_heads"]:
        raise CKAProbeError(f"{source}: encoder.d_model must be divisible by the numbers of heads")
    if config["tokenizer"].get("korean_unit") not in ("syllable", "jamo"):
        raise CKAProbeError(f"{source}: tokenizer.korean_unit must be 'syllable' or 'jamo'")
    if config["features"].get("n_mels") != 80 or config["features"].get("sample_rate") != 16000:
        raise CKAProbeError(f"{source}: features must be 80 mel bins at 16000 Hz")
    loss = config["loss"]
    for arch, keys in (("so", ("ctc", "att")), ("do", ("ctc", "surface", "meaning"))):
        if set(loss.get(arch, {})) != set(keys):
            raise CKAProbeError(f"{source}: loss.{arch} must have exactly the weights {', '.join(keys)}")


def shown(value: object) -> str:
    """A value as an error shows it: its repr, cut short, and its type."""
    text = repr(value)
    return (
        f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else f"{text} ({type(value).__name__})"
    )


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (``bool`` excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_string_list(value: object) -> bool:
    """Whether ``value`` is a list or tuple of strings."""
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


POSITIVE_INT = (lambda v: is_int(v) and v > 0, "a positive integer")
NONNEGATIVE_INT = (lambda v: is_int(v) and v >= 0, "an integer >= 0")
ODD_INT = (lambda v: is_int(v) and v > 0 and v % 2 == 1, "a positive odd integer")
POSITIVE = (lambda v: is_number(v) and v > 0, "a finite number > 0")
NONNEGATIVE = (lambda v: is_number(v) and v >= 0, "a finite number >= 0")
FRACTION = (lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
NUMBER = (is_number, "a finite number")
TEXT = (lambda v: isinstance(v, str), "a string")
BETAS = (
    lambda v: isinstance(v, list) and len(v) == 2 and all(FRACTION[0](b) for b in v),
    "two numbers in [0, 1)",
)
OPTIONAL_DICT = (lambda v: v is None or isinstance(v, dict), "null or an object")
OPTIONAL_COUNT = (lambda v: v is None or (is_int(v) and v >= 0), "null or an integer >= 0")

CONFIG_VALUES: dict[str, dict[str, tuple[Callable[[object], bool], str]]] = {
    "features": {
        "sample_rate": POSITIVE_INT,
        "n_mels": POSITIVE_INT,
        "frame_length_ms": POSITIVE,
        "frame_shift_ms": POSITIVE,
    },
    "tokenizer": {"korean_unit": TEXT},
    "encoder": {
        "subsampling_channels": POSITIVE_INT,
        "d_model": POSITIVE_INT,
        "n_heads": POSITIVE_INT,
        "n_layers": POSITIVE_INT,
        "ffn_dim": POSITIVE_INT,
        "conv_kernel": ODD_INT,
        "conv_norm": TEXT,
        "pos_enc": TEXT,
        "dropout": FRACTION,
        "attention_dropout": FRACTION,
    },
    "decoder": {
        "n_layers": POSITIVE_INT,
        "n_heads": POSITIVE_INT,
        "ffn_dim": POSITIVE_INT,
        "dropout": FRACTION,
        "attention_dropout": FRACTION,
    },
    "loss": {"label_smoothing": FRACTION},
    "train": {
        "lr": POSITIVE,
        "warmup_steps": NONNEGATIVE_INT,
        "epochs": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "clip": POSITIVE,
        "weight_decay": NONNEGATIVE,
        "betas": BETAS,
        "seed": NONNEGATIVE_INT,
        "spec_augment": OPTIONAL_DICT,
        "valid_decode": OPTIONAL_COUNT,
    },
}
"""The type of every value of a config that the model and the trainer read, by section."""

VARIANT_VALUES = {"private_layers": POSITIVE_INT, "discriminator_dim": POSITIVE_INT}
"""Variant settings that count something; every other variant setting is a finite number."""


def check_config_values(config: object, source: str) -> None:
    """Raise :class:`CKAProbeError` naming ``source`` and the key for a config value of a wrong type."""
    if not isinstance(config, dict):
        raise CKAProbeError(f"{source}: a config is a JSON object")
    for section, values in CONFIG_VALUES.items():
        given = config.get(section)
        if not isinstance(given, dict):
            raise CKAProbeError(f"{source}: missing section '{section}'")
        for key, (test, wanted) in values.items():
            if key in given or not test(None):  # a key that may be null may also be left out
                check_value(given, key, test, wanted, f"{section}.{key}", source)
    for arch in ("so", "do"):
        weights = config["loss"].get(arch)
        if not isinstance(weights, dict):
            raise CKAProbeError(f"{source}: loss.{arch} must be an object of loss weights")
        for key in weights:
            check_value(weights, key, *NONNEGATIVE, f"loss.{arch}.{key}", source)
    for kind, settings in _variant_sections(config, source).items():
        for key in settings:
            check_value(settings, key, *VARIANT_VALUES.get(key, NUMBER), f"variants.{kind}.{key}", source)


def check_value(
    section: dict, key: str, test: Callable[[object], bool], wanted: str, name: str, source: str
) -> None:
    """Raise :class:`CKAProbeError` naming ``source`` and ``name`` unless ``section[key]`` passes ``test``."""
    if key not in section:
        raise CKAProbeError(f"{source}: missing key {name}")
    if not test(section[key]):
        raise CKAProbeError(f"{source}: {name} must be {wanted}, not {shown(section[key])}")


def _variant_sections(config: dict, source: str) -> dict[str, dict]:
    """The optional ``variants`` section: an object of objects."""
    variants = config.get("variants", {})
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise CKAProbeError(f"{source}: variants must be an object of objects, one per variant")
    return variants
