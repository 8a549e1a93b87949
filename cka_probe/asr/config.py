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
from pathlib import Path
from typing import Any

from cka_probe.errors import CKAProbeError

CONFIG_DIR = Path(__file__).with_name("configs")
SECTIONS = ("features", "tokenizer", "encoder", "decoder", "loss", "train")
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
    """Raise :class:`CKAProbeError` naming ``source`` and the key for a bad config."""
    if not isinstance(config, dict):
        raise CKAProbeError(f"{source}: a config is a JSON object")
    for section in SECTIONS:
        if not isinstance(config.get(section), dict):
            raise CKAProbeError(f"{source}: missing section '{section}'")
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
