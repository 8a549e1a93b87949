"""``cka-probe info``: summary of an activation store."""

from __future__ import annotations

import argparse

HELP = "Summarise an activation store: streams, layers, shapes, dtype, utterances, provenance, completeness"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="store .h5 (an interrupted <store>.partial is described too)")


def run(args: argparse.Namespace) -> int:
    from cka_probe.store import describe

    print(describe(args.store))
    return 0
