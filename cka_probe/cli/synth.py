"""``cka-probe synth``: write a synthetic L2 corpus (espeak-ng audio, JSON Lines manifests)."""

from __future__ import annotations

import argparse

from cka_probe.cli._options import nonnegative_int, number, positive_int

HELP = "synthesise an L2 corpus: meaning and learner-style surface transcripts with espeak-ng audio"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", required=True, choices=("en", "ko"), help="language of the corpus")
    parser.add_argument(
        "--n", required=True, type=positive_int, help="number of utterances (80/10/10 train/valid/test)"
    )
    parser.add_argument(
        "--out", required=True, help="output folder: wav/, train/valid/test.jsonl, summary.json"
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="random seed; the same seed gives the same corpus"
    )
    parser.add_argument(
        "--divergence",
        type=number(0, 2),  # cka_probe.data.synth.MAX_DIVERGENCE, not imported here: it loads numpy and scipy
        default=1.0,
        metavar="LEVEL",
        help="level of the divergence dial, 0 (surface = meaning) to 2 (every utterance over 10 edits); "
        "1, the default, is the standard corpus (docs/corpus.md)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="processes for audio (default: all CPUs)"
    )


def run(args: argparse.Namespace) -> int:
    from cka_probe.data.synth import synthesize

    paths = synthesize(
        lang=args.lang,
        n=args.n,
        out_dir=args.out,
        seed=args.seed,
        workers=args.workers,
        divergence=args.divergence,
    )
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
