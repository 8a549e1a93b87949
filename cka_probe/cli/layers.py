"""``cka-probe layers``: the hookable module names of a checkpoint's model."""

from __future__ import annotations

import argparse

HELP = "List the module names of a checkpoint that extract --layers can select (* = default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt")


def run(args: argparse.Namespace) -> int:
    from cka_probe.extract.asr import hookable_layers

    for name, kind, default in hookable_layers(args.checkpoint):
        print(f"{'*' if default else ' '} {name:<50} {kind}")
    return 0
