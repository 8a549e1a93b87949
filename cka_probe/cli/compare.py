"""``cka-probe compare A B``: the layer-by-layer CKA (or ``--measure``) table of two sets of representations.

A and B are ``.npz`` files, one array per layer (rows = samples, the same n
rows in both files, in the same order; :mod:`cka_probe.compare.npz`),
or two activation stores aligned by utterance id
(:mod:`cka_probe.compare.stores`). The table is printed and written as
CSV, with a JSON sidecar ``<out>.json`` recording how it was computed.
Under ``torchrun`` the ranks split linear CKA of two stores and rank 0 alone
prints and writes the table (:mod:`cka_probe.compare.stores`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cka_probe.cli._cross import add_cross_arguments, run_cross
from cka_probe.cli._options import nonnegative_float, number, torch_device
from cka_probe.cli._warnings import warnings_on_stderr
from cka_probe.measures import registry

HELP = (
    "layer-by-layer CKA of two .npz files of representations (one array per layer) "
    "or two activation stores (.h5)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, nargs="?", help="first file (.npz): one array (n, d) per layer")
    parser.add_argument("b", type=Path, nargs="?", help="second file (.npz), the same n rows")
    parser.add_argument(
        "--measure",
        choices=registry.names(),
        default="cka",
        help="similarity measure (default cka; see docs/engine.md); with --cross-task, its tables' measure",
    )
    parser.add_argument("--kernel", choices=["linear", "rbf"], default="linear")
    parser.add_argument(
        "--sigma",
        type=number(0, 1e3, above=True),
        default=0.8,
        help="RBF bandwidth as a fraction of the median distance",
    )
    parser.add_argument("--debiased", action="store_true", help="unbiased HSIC (debiased CKA)")
    parser.add_argument(
        "--ridge",
        type=nonnegative_float,
        default=0.0,
        help="cca/pwcca: ridge (fraction of the mean variance)",
    )
    parser.add_argument("--rdm", choices=["correlation", "euclidean"], default="correlation", help="rsa: RDM")
    parser.add_argument(
        "--rsa-compare",
        choices=["spearman", "pearson"],
        default="spearman",
        help="rsa: correlation of the RDMs",
    )
    parser.add_argument(
        "--device", type=torch_device, default=None, help="torch device, e.g. cuda (default: cpu)"
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64", "tf32"],
        help="cka, rsa: working dtype of the products (default: float32 for float32 inputs such as "
        "stores, float64 for float64 ones; float64 for the last digits)",
    )
    parser.add_argument("--out", type=Path, default=Path("cka.csv"), help="CSV to write (default: cka.csv)")
    parser.add_argument("--stream", default="encoder", help=".h5: stream of A, encoder or decoder/<task>")
    parser.add_argument("--stream-b", help=".h5: stream of B (default: --stream)")
    parser.add_argument(
        "--pool",
        choices=["mean", "frames", "words"],
        default="mean",
        help=".h5: per-utterance means, every row (equal rows per utterance needed), "
        "or word means of an encoder stream (word spans from extract --word-spans, or --spans)",
    )
    parser.add_argument(
        "--words",
        choices=["divergent", "identical", "all"],
        default="all",
        help=".h5 with --pool words: surface words that differ from their meaning word, "
        "those that do not, or all (default)",
    )
    parser.add_argument(
        "--spans",
        "--word-spans",
        dest="word_spans",
        type=Path,
        metavar="FILE",
        help=".h5 with --pool words: the word spans, a TextGrid folder (a 'words' tier, e.g. from Montreal "
        "Forced Aligner), a .ctm file or a word-span .jsonl, mapped to each store's frames "
        "(default: A.h5.words.jsonl, else B's; docs/word-spans.md)",
    )
    parser.add_argument(
        "--allow-different-manifests",
        action="store_true",
        help=".h5 and --cross-task: compare stores by utterance id although their provenance does not show "
        "that the ids name the same audio (recorded in the output)",
    )
    add_cross_arguments(parser)


STORE_OPTIONS = ("stream", "stream_b", "pool", "words", "word_spans", "allow_different_manifests")


def takers(*options: str) -> list[str]:
    """The registered measures that take every one of ``options``."""
    return [name for name in registry.names() if set(options) <= set(registry.lookup(name).options)]


def measure_arguments(args: argparse.Namespace) -> dict:
    """The options of ``args.measure`` among the command-line arguments."""
    from cka_probe.errors import CKAProbeError
    from cka_probe.measures.similarity import options_of

    kernel_flags, kernel_measures = args.debiased or args.kernel != "linear", takers("debiased", "kernel")
    if kernel_flags and args.measure not in kernel_measures:
        raise CKAProbeError(
            f"--debiased and --kernel apply to --measure {' or '.join(kernel_measures)}, not {args.measure}"
        )
    if args.dtype and args.measure not in (dtype_measures := takers("dtype")):
        raise CKAProbeError(f"--dtype applies to --measure {' or '.join(dtype_measures)}, not {args.measure}")
    available = {
        "kernel": args.kernel,
        "sigma": args.sigma,
        "debiased": args.debiased,
        "device": args.device,
        "ridge": args.ridge,
        "rdm": args.rdm,
        "compare": args.rsa_compare,
    } | ({"dtype": args.dtype} if args.dtype else {})  # given only when asked: the measure's default stays
    return options_of(args.measure, available)


def refuse_inputs_as_out(args: argparse.Namespace) -> None:
    """Raise if ``--out`` or its ``.json`` sidecar is one of the inputs (A, B or the word-span file)."""
    from cka_probe.paths import refuse_input_as_output

    inputs = (args.a, args.b, args.word_spans)
    refuse_input_as_output(args.out, inputs)
    refuse_input_as_output(Path(f"{args.out}.json"), inputs, option="--out's sidecar")


def run(args: argparse.Namespace) -> int:
    import warnings

    from cka_probe.compare.npz import compare_npz, name_files, write_table
    from cka_probe.compare.stores import compare_stores
    from cka_probe.errors import CKAProbeError
    from cka_probe.ranks import world

    comparers = {".npz": compare_npz, ".h5": compare_stores}

    if args.cross_task:
        return run_cross(args)
    if args.a is None or args.b is None:
        raise CKAProbeError("give two inputs A B, or --cross-task STORE ...")
    if args.a.suffix not in comparers or args.b.suffix != args.a.suffix:
        raise CKAProbeError(f"{args.a}, {args.b}: both inputs must be one of {', '.join(comparers)}")
    refuse_inputs_as_out(args)
    compare = comparers[args.a.suffix]
    store_options = {k: getattr(args, k) for k in STORE_OPTIONS} if args.a.suffix == ".h5" else {}
    first = world()[0] == 0  # under torchrun, rank 0 alone reports and writes
    report = warnings_on_stderr("compare", lambda message: name_files(message, args.a, args.b))
    with report if first else warnings.catch_warnings(record=True):
        table = compare(args.a, args.b, measure=args.measure, **measure_arguments(args), **store_options)
    if not first:
        return 0
    attrs = table.attrs
    if "estimator" in attrs:  # the CKA engine's account of how it computed
        print(
            f"{attrs['estimator']} {attrs['kernel']} CKA, n={attrs['n']} "
            f"({attrs['space']} space, {attrs['dtype']})"
        )
    else:
        print(f"{args.measure} ({attrs['kind']}), n={attrs['n']}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    write_table(table, args.out)
    print(f"wrote {args.out}")
    return 0
