"""The ``--cross-task`` / ``--cross-lang`` options of ``cka-probe compare`` (the paper's comparison set)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cka_probe.cli._options import integer, nonnegative_int
from cka_probe.cli._warnings import warnings_on_stderr

MAX_RESAMPLES = 100_000
"""The most bootstrap or permutation resamples a command takes (their draws are held in memory)."""


def add_cross_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the paper's comparison set (instead of A B)")
    group.add_argument(
        "--cross-task",
        nargs="+",
        type=Path,
        metavar="STORE",
        help="stores (.h5) or run folders: SSO, MSO and DO per language, read from their provenance",
    )
    group.add_argument(
        "--cross-lang",
        action="store_true",
        help="also the per-layer differences between languages (needs two or more)",
    )
    group.add_argument(
        "--cer",
        nargs="*",
        type=Path,
        default=[],
        metavar="CSV",
        help="evaluate CSVs: adds SO vs DO CER and the gap per edit-distance bin",
    )
    group.add_argument(
        "--tables", type=Path, default=Path("tables"), help="folder for the tables (default: tables)"
    )
    group.add_argument(
        "--n-boot",
        type=integer(1, MAX_RESAMPLES),
        default=200,
        help="bootstrap resamples of utterances (default 200)",
    )
    group.add_argument(
        "--n-perm",
        type=integer(0, MAX_RESAMPLES),
        default=200,
        help="permutations for the p-values (default 200; 0 leaves the p-values out)",
    )
    group.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the resampling (default 0)")
    group.add_argument(
        "--biased",
        action="store_true",
        help="biased CKA instead of the default debiased one (its intervals are not calibrated "
        "where the width is not small against the number of utterances)",
    )


def run_cross(args: argparse.Namespace) -> int:
    """The tables; under ``torchrun`` every rank computes its block of the resamples and rank 0 alone writes
    and reports."""
    from cka_probe.ranks import process_group, world
    from cka_probe.study.tables import write_tables

    with process_group(), warnings_on_stderr("compare"):
        written = write_tables(
            args.cross_task,
            args.cer,
            args.tables,
            n_boot=args.n_boot,
            n_perm=args.n_perm,
            debiased=not args.biased,
            seed=args.seed,
            cross_lang=args.cross_lang or None,
            measure=args.measure,
            allow_different_manifests=args.allow_different_manifests,
            progress=world()[0] == 0,
        )
    for path in written.values():
        print(f"wrote {path}")
    return 0
