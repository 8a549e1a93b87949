"""``cka-probe extract``: per-layer activations of a bundled checkpoint into an HDF5 store."""

from __future__ import annotations

import argparse

HELP = "Extract per-layer activations of a checkpoint over a manifest into an HDF5 store"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint .pt written by cka-probe train")
    parser.add_argument("--data", required=True, help="manifest .jsonl of the utterances")
    parser.add_argument("--out", required=True, help="store to write (.h5); an interrupted run resumes")
    parser.add_argument("--layers", nargs="+", metavar="GLOB",
                        help="module name globs (* = one dotted component, ** = any); "
                             "default: encoder.embed encoder.layers.* decoders.<task>.layers.*")
    parser.add_argument("--tasks", nargs="+", choices=("surface", "meaning"),
                        help="decoders to run teacher-forced (default: all of the model's)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="storage dtype of rows")
    parser.add_argument("--compression", choices=("gzip", "lzf"), help="HDF5 compression of rows")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N utterances")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument("--word-spans", action="store_true",
                        help="also write OUT.words.jsonl: each surface word's encoder frames from the model's "
                             "CTC forced alignment, and its meaning counterpart (SSO and DO models)")


def run(args: argparse.Namespace) -> int:
    from cka_probe.extract.asr import extract_checkpoint

    out = extract_checkpoint(args.checkpoint, args.data, args.out, layers=args.layers, tasks=args.tasks,
                             device=args.device, batch_size=args.batch_size, dtype=args.dtype,
                             limit=args.limit, overwrite=args.overwrite, compression=args.compression,
                             word_spans=args.word_spans)
    print(out)
    return 0
