"""``cka-probe figures TABLES --out DIR``: every figure of a run from its tables."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Draw the heatmaps, diagonal plots and CER-gap figure (PNG and PDF) from a tables folder."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tables", type=Path, help="folder written by `compare --cross-task` (cross_task.csv, ...)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("figures"), help="folder for the figures (default: figures)"
    )


def run(args: argparse.Namespace) -> int:
    from cka_probe.cli._warnings import warnings_on_stderr
    from cka_probe.figures.write import write_figures

    with warnings_on_stderr("figures"):
        written = write_figures(args.tables, args.out)
    for path in written:
        print(f"wrote {path}")
    return 0
