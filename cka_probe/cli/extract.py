"""``cka-probe extract``: per-layer activations of a model over a manifest into an HDF5 store."""

from __future__ import annotations

import argparse

from cka_probe.cli._options import nonnegative_int, positive_int, torch_device
from cka_probe.cli._prompts import add_prompt_arguments, prompts_of

HELP = (
    "Extract per-layer activations of a model (.pt, Hugging Face folder or FILE.py:FUNCTION) "
    "into an HDF5 store"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="checkpoint .pt written by cka-probe train, a local Hugging Face model folder "
        "(Whisper, wav2vec2, HuBERT, WavLM, data2vec-audio) or FILE.py:FUNCTION",
    )
    parser.add_argument("--data", required=True, help="manifest .jsonl of the utterances")
    parser.add_argument("--out", required=True, help="store to write (.h5); an interrupted run resumes")
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="GLOB",
        help="module name globs (* = one dotted component, ** = any), as cka-probe layers "
        "prints them; default: every encoder layer and every decoder layer of --tasks",
    )
    parser.add_argument(
        "--tasks",
        nargs="*",
        choices=("surface", "meaning"),
        help="decoders to run teacher-forced (default: all of the model's; none: encoder only)",
    )
    parser.add_argument(
        "--role",
        choices=("sso", "mso", "do", "rand"),
        help="the model's role in compare --cross-task, recorded in the store "
        "(needed for models other than the bundled ones; rand: the random-initialisation floor)",
    )
    parser.add_argument(
        "--replicate",
        type=nonnegative_int,
        metavar="K",
        help="the model's seed replicate of its role, recorded in the store (orders the replicates)",
    )
    parser.add_argument(
        "--random-init",
        type=nonnegative_int,
        metavar="SEED",
        help="extract the model's architecture with fresh weights drawn with SEED instead of its own "
        "(the random-initialisation floor; bundled checkpoints, HF folders, adapters with build_random)",
    )
    add_prompt_arguments(parser, "teacher-force TASK after PROMPT")
    parser.add_argument(
        "--no-padding-check",
        action="store_true",
        help="skip comparing the first batch with its utterances run alone",
    )
    parser.add_argument(
        "--device", type=torch_device, default="cpu", help="torch device, e.g. cpu, cuda, cuda:1"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="utterances per batch (default 16)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float16"), default="float32", help="storage dtype of rows"
    )
    parser.add_argument("--compression", choices=("gzip", "lzf"), help="HDF5 compression of rows")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="only the first N utterances")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    parser.add_argument(
        "--word-spans",
        action="store_true",
        help="also write OUT.words.jsonl: each surface word's encoder frames from the model's "
        "CTC forced alignment, and its meaning counterpart (SSO and DO models)",
    )


def run(args: argparse.Namespace) -> int:
    from cka_probe.extract.models import extract_model

    out = extract_model(
        args.model,
        args.data,
        args.out,
        layers=args.layers,
        tasks=args.tasks,
        device=args.device,
        batch_size=args.batch_size,
        dtype=args.dtype,
        limit=args.limit,
        overwrite=args.overwrite,
        compression=args.compression,
        padding_check=not args.no_padding_check,
        role=args.role,
        replicate=args.replicate,
        random_init=args.random_init,
        word_spans=args.word_spans,
        prompts=prompts_of(args.prompt, args.prompts),
    )
    print(out)
    return 0
