"""Argument types that validate an option when it is parsed: a bad value is argparse's one-line error, exit 2.

Use as ``parser.add_argument("--batch-size", type=positive_int, ...)``, or
``type=integer(1, 1000)`` for a bounded count. Each
type raises :class:`argparse.ArgumentTypeError`, which argparse prints as
``cka-probe CMD: error: argument --batch-size: ...`` before anything runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from cka_probe.errors import CKAProbeError

INT_MAX = 2**31 - 1
"""The largest count any option takes unless it says less (beyond it, numbers overflow native integers)."""


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def integer(minimum: int, maximum: int = INT_MAX) -> Callable[[str], int]:
    """The type of an integer option in ``[minimum, maximum]``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text} must be from {minimum} to {maximum}")
        return value

    return parse


def number(minimum: float, maximum: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """The type of a finite number option: at least ``minimum`` (greater than it if ``above``), at most
    ``maximum``."""

    def parse(text: str) -> float:
        value = _number(text, float)
        if value < minimum or (above and value == minimum):
            bound = "greater than" if above else "at least"
            raise argparse.ArgumentTypeError(f"{text} must be {bound} {minimum:g}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{text} must be at most {maximum:g}")
        return value

    return parse


positive_int = integer(1)
"""An integer from 1 to :data:`INT_MAX` (batch sizes, limits, counts)."""
nonnegative_int = integer(0)
"""An integer from 0 to :data:`INT_MAX` (seeds, counts that may be 0)."""
positive_float = number(0, above=True)
"""A finite number > 0 (learning rates, time limits)."""
nonnegative_float = number(0)
"""A finite number >= 0 (ridges, weights)."""


def torch_device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``, refused where this machine lacks it (``usable_device``)."""
    from cka_probe.asr.checkpoint import usable_device

    try:
        usable_device(text)
    except CKAProbeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--jobs``, ``--epochs``, ``--train-minutes``: how many trainings run at once, how long each runs."""
    parser.add_argument(
        "--jobs", type=integer(1, 256), default=2, help="trainings side by side, one thread each (default 2)"
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="E",
        help="epochs of every training, replacing the config's (tiny: 10, paper: 50)",
    )
    parser.add_argument(
        "--train-minutes",
        type=positive_float,
        default=None,
        metavar="M",
        help="cap on each training's wall time (default: none; results then depend on the machine)",
    )
