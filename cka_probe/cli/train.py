"""``cka-probe train``: train a bundled single-output or dual-output CTC-attention model."""

from __future__ import annotations

import argparse

from cka_probe.cli._options import (
    integer,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    torch_device,
)

HELP = "Train a bundled SO (one task) or DO (surface + meaning) Conformer CTC-attention model from manifests."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch", choices=("so", "do"), required=True, help="single-output or dual-output model"
    )
    parser.add_argument(
        "--variant",
        default="shared",
        metavar="NAME",
        help="DO encoder structure: shared (default), split-K, shared-private, sparse-shared "
        "(see docs/models.md)",
    )
    parser.add_argument(
        "--task",
        choices=("surface", "meaning"),
        default=None,
        help="the transcript an SO model learns (required with --arch so)",
    )
    parser.add_argument("--data", required=True, help="training manifest (JSON Lines)")
    parser.add_argument("--valid", required=True, help="validation manifest (JSON Lines)")
    parser.add_argument(
        "--config", default="tiny", help="named config (tiny, paper) or a JSON file (default tiny)"
    )
    parser.add_argument("--out", required=True, help="output folder: best.pt, last.pt, log.csv")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt, also with another number of epochs (a rerun with the "
        "same settings resumes without it)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again, deleting OUT's checkpoints and log"
    )
    parser.add_argument("--seed", type=nonnegative_int, default=None, help="override the config's seed")
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="override the config's number of epochs"
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="override the config's peak learning rate (e.g. 1e-4, 1e-5)",
    )
    parser.add_argument(
        "--meaning-weight",
        type=nonnegative_float,
        default=None,
        metavar="W",
        help="DO loss weight of the meaning decoder; the surface weight becomes 1 - ctc - W",
    )
    parser.add_argument(
        "--max-minutes",
        type=positive_float,
        default=None,
        help="wall-time budget: the epochs are cut to what fits after the first one",
    )
    parser.add_argument(
        "--save-every",
        type=positive_int,
        default=None,
        metavar="E",
        help="also keep OUT/epoch-0000.pt (the initial weights) and OUT/epoch-EEEE.pt after every E-th epoch",
    )
    parser.add_argument("--device", type=torch_device, default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--threads", type=integer(1, 1024), default=None, help="torch CPU threads (default: torch's choice)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from cka_probe.asr.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    best = train(
        arch=args.arch,
        task=args.task,
        variant=args.variant,
        train_manifest=args.data,
        valid_manifest=args.valid,
        config=args.config,
        out_dir=args.out,
        resume=args.resume,
        seed=args.seed,
        epochs=args.epochs,
        lr=args.lr,
        meaning_weight=args.meaning_weight,
        max_minutes=args.max_minutes,
        device=args.device,
        overwrite=args.overwrite,
        save_every=args.save_every,
    )
    print(f"best checkpoint: {best}")
    return 0
