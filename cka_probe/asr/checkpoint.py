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

import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.config import TEXT, check_config, check_value, is_int, is_string_list, shown
from cka_probe.asr.model import ASRModel, build_model
from cka_probe.asr.tokenizer import CharTokenizer
from cka_probe.atomic import atomic_output
from cka_probe.errors import CKAProbeError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REQUIRED = ("arch", "tasks", "config", "model_state", "tokenizers", "cmvn", "epoch", "metrics")
TRUNCATED = "the file is empty or ends too early"
SAFE_LOAD_REFUSED = (
    "holds Python objects that a safe load refuses; cka-probe checkpoints hold plain types and tensors"
)


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
    """The raw checkpoint dict, loaded with ``weights_only=True`` and checked against the format.

    Every key, its type, the config's values, the tokenizers, the CMVN shapes and
    the finiteness of every weight are checked before any tensor is used; a
    mistake is a :class:`CKAProbeError` naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise CKAProbeError(f"{path}: no such checkpoint file")
    ckpt = _load_safely(path, device)
    check_format(ckpt, path)
    ckpt.setdefault("variant", "shared")
    return ckpt


def _load_safely(path: Path, device: str | torch.device) -> object:
    """``torch.load(weights_only=True)``; any failure is one line that never advises an unsafe load."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except OSError as err:
        if err.errno != errno.EINVAL:  # a failed read of the disk, not of the bytes
            raise
        # torch's zip reader seeks before the start of a file cut short inside its zip directory
        raise CKAProbeError(f"{path}: not a cka-probe checkpoint ({TRUNCATED})") from None
    except Exception as err:  # untrusted bytes: the unpickler may fail in any way
        raise CKAProbeError(f"{path}: not a cka-probe checkpoint ({_load_failure(err)})") from None


def _load_failure(err: Exception) -> str:
    """A short reason for a failed safe load, without torch's advice to load with ``weights_only=False``."""
    text = str(err)
    if "Unsupported global" in text:
        return SAFE_LOAD_REFUSED
    if isinstance(err, EOFError) or "failed finding central directory" in text:
        return TRUNCATED
    lines = [line.strip() for line in text.split("WeightsUnpickler error:")[-1].splitlines() if line.strip()]
    if lines and "weights_only" not in lines[0]:
        return lines[0][:160]
    return f"unreadable data, {type(err).__name__}"


def check_format(ckpt: object, path: Path) -> None:
    """Raise :class:`CKAProbeError` naming ``path`` and the key where ``ckpt`` departs from the format."""
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CKAProbeError(f"{path}: not a cka-probe checkpoint (no format_version)")
    version = ckpt["format_version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise CKAProbeError(f"{path}: checkpoint format_version {version!r}, this version reads {readable}")
    missing = [key for key in REQUIRED if key not in ckpt]
    if missing:
        raise CKAProbeError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for key, (test, wanted) in FIELDS.items():
        if key in ckpt and not test(ckpt[key]):
            raise CKAProbeError(f"{path}: checkpoint key {key!r} must be {wanted}, not {shown(ckpt[key])}")
    check_config(ckpt["config"], f"{path}: config")
    _check_tokenizers(ckpt["tokenizers"], ckpt["tasks"], path)
    _check_cmvn(ckpt["cmvn"], ckpt["config"]["features"]["n_mels"], path)
    _check_finite(ckpt["model_state"], path)


FIELDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "arch": (lambda v: v in ("so", "do"), "'so' or 'do'"),
    "variant": (lambda v: isinstance(v, str), "a variant name (a string)"),
    "tasks": (lambda v: is_string_list(v) and len(v) > 0, "a non-empty list of task names"),
    "config": (lambda v: isinstance(v, dict), "a dict (the JSON config)"),
    "model_state": (
        lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
        "a dict of tensors",
    ),
    "tokenizers": (lambda v: isinstance(v, dict), "a dict {task: tokenizer}"),
    "cmvn": (lambda v: isinstance(v, dict), "a dict with 'mean' and 'istd'"),
    "epoch": (is_int, "an integer"),
    "metrics": (lambda v: isinstance(v, dict), "a dict"),
}


def _check_tokenizers(tokenizers: dict, tasks: list[str], path: Path) -> None:
    """One tokenizer per task: ``symbols`` a list of strings, ``language`` and ``unit`` strings."""
    for task in tasks:
        state = tokenizers.get(task)
        if not isinstance(state, dict):
            raise CKAProbeError(f"{path}: checkpoint key 'tokenizers' has no tokenizer for task {task!r}")
        for key, (test, wanted) in (
            ("symbols", (is_string_list, "a list of strings")),
            ("language", TEXT),
            ("unit", TEXT),
        ):
            check_value(state, key, test, wanted, f"tokenizers.{task}.{key}", f"{path}: checkpoint")


def _check_cmvn(cmvn: dict, n_mels: int, path: Path) -> None:
    """``mean`` and ``istd``: finite tensors of shape ``(n_mels,)``."""
    for key in ("mean", "istd"):
        value = cmvn.get(key)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n_mels,):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else shown(value)
            raise CKAProbeError(
                f"{path}: checkpoint key 'cmvn.{key}' must be a tensor of shape ({n_mels},) "
                f"(config features.n_mels), not {shape}"
            )
        if not torch.isfinite(value).all():
            raise CKAProbeError(f"{path}: checkpoint key 'cmvn.{key}' has non-finite values")


def _check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Every floating-point weight is finite (no NaN, no Inf)."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CKAProbeError(f"{path}: weight {key} has non-finite values")


DEVICE = re.compile(r"^(cpu|cuda|mps)(:\d+)?$")
"""The devices cka-probe runs on."""


def usable_device(device: str | torch.device) -> torch.device:
    """``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``) as a :class:`torch.device` that this machine has;
    otherwise a one-line error naming it."""
    if not DEVICE.match(str(device)):
        raise CKAProbeError(f"device {str(device)!r} is not a torch device (cpu, cuda, cuda:N or mps)")
    parsed = torch.device(device)
    if parsed.type == "cuda" and (parsed.index or 0) >= (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    ):
        raise CKAProbeError(f"device {device}: no such CUDA device on this machine")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CKAProbeError(f"device {device}: no MPS device on this machine")
    return parsed


def check_count(value: object, name: str, *, optional: bool = False, minimum: int = 1) -> None:
    """Raise :class:`CKAProbeError` unless ``value`` is an integer >= ``minimum`` (None if ``optional``)."""
    if optional and value is None:
        return
    if not is_int(value) or value < minimum:
        raise CKAProbeError(f"{name} must be an integer >= {minimum}, not {value!r}")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ASRModel, dict[str, Any]]:
    """Rebuild the model from the file alone; returns ``(model.eval(), ckpt)``.

    ``ckpt["tokenizers"]`` becomes ``{task: CharTokenizer}`` and ``ckpt["cmvn"]`` a :class:`GlobalCMVN`.
    """
    device = usable_device(device)
    ckpt = read_checkpoint(path, device)
    try:
        ckpt["tokenizers"] = {
            task: CharTokenizer.from_dict(ckpt["tokenizers"][task]) for task in ckpt["tasks"]
        }
        ckpt["cmvn"] = GlobalCMVN.from_dict(ckpt["cmvn"])
        vocab_sizes = {task: tok.vocab_size for task, tok in ckpt["tokenizers"].items()}
        model = build_model(ckpt["config"], ckpt["arch"], tuple(ckpt["tasks"]), vocab_sizes, ckpt["variant"])
    except CKAProbeError as err:
        raise CKAProbeError(f"{path}: {err}") from None
    load_state(model, ckpt["model_state"], path)
    return model.to(device).eval(), ckpt


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` (strict); a mismatch is one line naming the file and the first differing keys."""
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise CKAProbeError(f"{path}: weights do not fit the configured model ({mismatch})")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CKAProbeError(f"{path}: weights do not fit the configured model ({_first_line(err)})") from None


def state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], shown: int = 3) -> str:
    """The missing, unexpected and reshaped keys of ``given`` (the first ``shown`` of each), or ""."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    reshaped = [
        f"{key} {tuple(given[key].shape)} instead of {tuple(value.shape)}"
        for key, value in expected.items()
        if key in given and given[key].shape != value.shape
    ]
    parts = [
        f"{label} {', '.join(keys[:shown])}{f' and {len(keys) - shown} more' if len(keys) > shown else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape of", reshaped))
        if keys
    ]
    return "; ".join(parts)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
