"""``cka-probe sweep``: the study over divergence levels × meaning weights, and each effect's slope over the
levels; resumable like ``reproduce``."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cka_probe.cli._options import (
    add_training_options,
    integer,
    nonnegative_int,
    number,
    positive_int,
)

HELP = (
    "Run the study over a grid of divergence levels x meaning weights into a run directory and write the "
    "dose-response tables and figures; rerun to resume."
)


def number_list(parse: Callable[[str], float]) -> Callable[[str], tuple[float, ...]]:
    """The type of a comma-separated list option (``0,1,2``), each item parsed by ``parse``."""

    def parse_list(text: str) -> tuple[float, ...]:
        return tuple(parse(item) for item in text.split(","))

    return parse_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", nargs="+", default=["en"], help="languages (default: en)")
    parser.add_argument(
        "--divergence",
        type=number_list(number(0)),
        default=(0.0, 1.0, 2.0),
        metavar="D,D,...",
        help="divergence levels of the synthetic corpus, 0 to 2 (default 0,1,2; 1 is the default corpus)",
    )
    parser.add_argument(
        "--meaning-weight",
        type=number_list(number(0, above=True)),
        default=(0.3,),
        metavar="W,W,...",
        help="meaning-loss weights of the DO model, each below 1 - ctc (default 0.3, the paper's)",
    )
    parser.add_argument(
        "--seeds",
        type=integer(1, 100),
        default=1,
        metavar="K",
        help="seed replicates of every model (default 1); every cell pools them",
    )
    parser.add_argument(
        "--scale",
        choices=("tiny", "paper"),
        default="tiny",
        help="tiny: a 2-core CPU; paper: the paper's Conformer and 20,000 utterances per level, on a GPU",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="run directory (created; an existing one is resumed, each output made from other options "
        "redone with everything after it)",
    )
    parser.add_argument(
        "--n", type=positive_int, default=None, help="synthetic utterances per language and level"
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of data, training and resampling"
    )
    add_training_options(parser)
    parser.add_argument(
        "--dynamics",
        type=positive_int,
        default=None,
        metavar="E",
        help="keep replicate 0's weights every E epochs, extract them and write the encoder lean per epoch",
    )


def run(args: argparse.Namespace) -> int:
    from cka_probe.pipeline.sweep import sweep

    tables = sweep(
        args.lang,
        args.divergence,
        args.meaning_weight,
        args.scale,
        args.out,
        seeds=args.seeds,
        n=args.n,
        seed=args.seed,
        jobs=args.jobs,
        epochs=args.epochs,
        train_minutes=args.train_minutes,
        dynamics=args.dynamics,
    )
    print(f"tables: {tables}")
    print(f"figures: {tables.parent / 'figures'}")
    return 0
