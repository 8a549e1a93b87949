"""``cka-probe probe STORE``: said-versus-meant probes of every layer's word representations.

Per layer of an encoder stream: the forced-choice surface preference, the
decodability of the surface and of the meaning word with their control tasks
and selectivity, each with its grouped bootstrap interval
(:func:`cka_probe.probe.probe_store`, ``docs/probes.md``). The table is
printed and written as CSV with a JSON sidecar ``<out>.json`` (the options,
folds' regularisers, word counts and library versions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cka_probe.cli._cross import MAX_RESAMPLES
from cka_probe.cli._options import integer, nonnegative_int

HELP = "said-versus-meant probes (forced choice, decodability with control tasks) of a store's word means"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", type=Path, help="activation store (.h5) with an encoder stream")
    parser.add_argument(
        "--spans",
        type=Path,
        help="word spans: a TextGrid folder or file (a 'words' tier), a .ctm or a .jsonl word-span file, "
        "matched to the manifest by id (default: STORE.words.jsonl, from extract --word-spans; "
        "docs/word-spans.md)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="MANIFEST",
        help="manifest with the meaning transcripts (default: the store's)",
    )
    parser.add_argument("--stream", default="encoder", help="stream whose layers to probe (default encoder)")
    parser.add_argument("--layers", nargs="+", metavar="GLOB", help="layer names or globs (default: all)")
    parser.add_argument(
        "--words",
        choices=["divergent", "identical", "all"],
        default="divergent",
        help="words the surface and meaning words are decoded on (default divergent); the forced choice is "
        "always fitted on identical and scored on substituted words",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("probe.csv"), help="CSV to write (default probe.csv)"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of folds, controls, bootstrap")
    parser.add_argument(
        "--n-boot", type=integer(1, MAX_RESAMPLES), default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument(
        "--folds", type=integer(2, 100), default=5, help="outer cross-validation folds (default 5)"
    )
    parser.add_argument(
        "--min-groups",
        type=integer(2, 1000),
        default=3,
        help="decode only word types seen in this many utterance/sentence groups (default 3)",
    )


def run(args: argparse.Namespace) -> int:
    from cka_probe.compare.npz import write_table
    from cka_probe.paths import refuse_input_as_output
    from cka_probe.probe import probe_store

    inputs = (args.store, args.spans, args.data)
    refuse_input_as_output(args.out, inputs)
    refuse_input_as_output(Path(f"{args.out}.json"), inputs, option="--out's sidecar")
    table = probe_store(
        args.store,
        args.spans,
        args.data,
        stream=args.stream,
        layers=args.layers,
        words=args.words,
        seed=args.seed,
        n_boot=args.n_boot,
        n_splits=args.folds,
        min_groups=args.min_groups,
    )
    shown = ["layer", "surface_preference", "surface_preference_lo", "surface_preference_hi"]
    shown += ["surface_selectivity", "meaning_selectivity"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    write_table(table.set_index("layer"), args.out)
    print(f"wrote {args.out}")
    return 0
