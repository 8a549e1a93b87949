"""The ``cka-probe`` command.

Each subcommand lives in its own module of this package and exposes three
names: ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are discovered, so adding a subcommand means adding a file. The CLI
holds no logic of its own: ``run`` parses nothing further and calls one
function of the Python API. Expected errors (:class:`CKAProbeError`, and
``OSError`` for files) become one line on stderr and exit status 2; set
``CKA_PROBE_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from cka_probe import __version__
from cka_probe.errors import CKAProbeError


def _subcommands() -> dict[str, object]:
    """Map subcommand name (``foo_bar`` module -> ``foo-bar``) to its module."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            found[info.name.replace("_", "-")] = importlib.import_module(f"{__name__}.{info.name}")
    return found


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported as one line (``prog: error: ...; see prog --help``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cka-probe",
        description="Representation analysis (CKA) of single- and dual-output speech recognisers.",
    )
    parser.add_argument("--version", action="version", version=f"cka-probe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _subcommands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _describe(err: Exception) -> str:
    """An error's one line: an ``OSError`` as ``FILE: reason`` (``FILE -> OTHER: reason`` for a rename)."""
    if isinstance(err, OSError) and err.strerror:
        names = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return f"{names}: {err.strerror}" if names else err.strerror
    return str(err)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CKAProbeError, OSError) as err:
        if os.environ.get("CKA_PROBE_DEBUG"):
            raise
        message = " ".join(_describe(err).split()) or type(err).__name__
        print(f"cka-probe {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cka-probe {args.command}: interrupted", file=sys.stderr)
        return 130
