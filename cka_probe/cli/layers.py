"""``cka-probe layers``: the hookable module names of a model."""

from __future__ import annotations

import argparse

HELP = "List the module names of a model that extract --layers can select (* = default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint .pt, Hugging Face model folder or FILE.py:FUNCTION")


def run(args: argparse.Namespace) -> int:
    from cka_probe.extract.models import hookable_layers

    for name, kind, default in hookable_layers(args.model):
        print(f"{'*' if default else ' '} {name:<50} {kind}")
    return 0
