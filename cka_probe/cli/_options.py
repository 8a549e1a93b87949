"""Argument types that validate an option when it is parsed: a bad value is argparse's one-line error, exit 2.

Use as ``parser.add_argument("--batch-size", type=positive_int, ...)``. Each
type raises :class:`argparse.ArgumentTypeError`, which argparse prints as
``cka-probe CMD: error: argument --batch-size: ...`` before anything runs.
"""

from __future__ import annotations

import argparse
import math
import re


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, limits, counts)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (bandwidths, learning rates)."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (ridges, weights)."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0")
    return value


_DEVICE = re.compile(r"^(cpu|cuda|mps)(:\d+)?$")


def torch_device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, refused when this machine lacks it (``"no CUDA here"``)."""
    import torch

    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:N or mps)")
    kind, _, index = text.partition(":")
    if kind == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no CUDA device on this machine")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no MPS device on this machine")
    return text
