"""Checkpoints (docs/design.md, "Checkpoints"), loadable with ``torch.load(weights_only=True)``.

One dict of plain types and tensors:

- ``format_version`` (:data:`FORMAT_VERSION`), ``arch``, ``variant``, ``tasks``, ``config``;
- ``model_state`` (the ``state_dict``);
- ``tokenizers``: ``{task: CharTokenizer.to_dict()}`` (the vocabularies);
- ``cmvn``: ``{"mean": (80,), "istd": (80,)}`` float64;
- ``epoch``, ``metrics``; optionally ``optimizer`` (its ``state_dict``) and ``extra``.

Version 2 added ``variant`` (:mod:`cka_probe.asr.variants.spec`); a version-1 file
has none and loads as ``shared``, the only model version 1 could hold.

Writing is atomic: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.model import ASRModel, build_model
from cka_probe.asr.tokenizer import CharTokenizer
from cka_probe.atomic import atomic_output
from cka_probe.errors import CKAProbeError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED = ("arch", "tasks", "config", "model_state", "tokenizers", "cmvn", "epoch", "metrics")


def save_checkpoint(
    path: str | Path,
    *,
    model: ASRModel,
    config: dict[str, Any],
    tokenizers: dict[str, CharTokenizer],
    cmvn: GlobalCMVN,
    epoch: int,
    metrics: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint dict to ``path`` atomically; returns ``path``."""
    ckpt = {
        "format_version": FORMAT_VERSION,
        "arch": model.arch,
        "variant": model.variant.name,
        "tasks": list(model.tasks),
        "config": config,
        "model_state": model.state_dict(),
        "tokenizers": {task: tokenizers[task].to_dict() for task in model.tasks},
        "cmvn": cmvn.to_dict(),
        "epoch": int(epoch),
        "metrics": dict(metrics),
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if extra is not None:
        ckpt["extra"] = extra
    return atomic_save(ckpt, Path(path))


def atomic_save(obj: dict[str, Any], path: Path) -> Path:
    """``torch.save`` to a hidden partial file beside ``path``, then rename it over ``path``."""
    with atomic_output(path, point=f"checkpoint:{path.name}") as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return path


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded with ``weights_only=True`` and checked."""
    path = Path(path)
    if not path.is_file():
        raise CKAProbeError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0]
        raise CKAProbeError(f"{path}: refused, it needs arbitrary code to load ({first})") from None
    except (RuntimeError, EOFError) as err:
        raise CKAProbeError(
            f"{path}: not a readable checkpoint ({str(err).strip().splitlines()[0]})"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CKAProbeError(f"{path}: not a cka-probe checkpoint (no format_version)")
    if ckpt["format_version"] not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise CKAProbeError(
            f"{path}: checkpoint format_version {ckpt['format_version']}, this version reads {readable}"
        )
    missing = [key for key in REQUIRED if key not in ckpt]
    if missing:
        raise CKAProbeError(f"{path}: checkpoint lacks {', '.join(missing)}")
    ckpt.setdefault("variant", "shared")
    return ckpt


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ASRModel, dict[str, Any]]:
    """Rebuild the model from the file alone; returns ``(model.eval(), ckpt)``.

    ``ckpt["tokenizers"]`` becomes ``{task: CharTokenizer}`` and ``ckpt["cmvn"]`` a :class:`GlobalCMVN`.
    """
    ckpt = read_checkpoint(path, device)
    ckpt["tokenizers"] = {task: CharTokenizer.from_dict(state) for task, state in ckpt["tokenizers"].items()}
    ckpt["cmvn"] = GlobalCMVN.from_dict(ckpt["cmvn"])
    vocab_sizes = {task: tok.vocab_size for task, tok in ckpt["tokenizers"].items()}
    model = build_model(ckpt["config"], ckpt["arch"], tuple(ckpt["tasks"]), vocab_sizes, ckpt["variant"])
    load_state(model, ckpt["model_state"], path)
    return model.to(device).eval(), ckpt


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` whose mismatch error names the file."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CKAProbeError(
            f"{path}: weights do not fit the configured model ({str(err).splitlines()[0]})"
        ) from None
