"""``cka-probe evaluate``: per-utterance and corpus CER of a bundled checkpoint."""

from __future__ import annotations

import argparse

from cka_probe.cli._options import integer, positive_int, torch_device

HELP = "Decode a manifest with a bundled checkpoint and write per-utterance CER (CSV) and corpus CER (JSON)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint written by 'cka-probe train' (best.pt or last.pt)")
    parser.add_argument("--data", required=True, help="manifest (JSON Lines) to decode")
    parser.add_argument(
        "--out", required=True, help="per-utterance CSV; the summary goes to OUT.summary.json"
    )
    parser.add_argument(
        "--decoding",
        choices=("attention", "ctc"),
        default="attention",
        help="attention decoder(s) for every task, or the CTC head for its task (default attention)",
    )
    parser.add_argument(
        "--beam",
        type=integer(1, 1000),
        default=1,
        help="beam size of attention decoding; 1 = greedy (default 1)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="utterances per batch (default 16)"
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="decode only the first N utterances")
    parser.add_argument("--device", type=torch_device, default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--threads", type=integer(1, 1024), default=None, help="torch CPU threads (default: torch's choice)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from cka_probe.asr.evaluate import evaluate, format_summary, summarize, summary_path_for

    if args.threads:
        torch.set_num_threads(args.threads)
    table = evaluate(
        args.checkpoint,
        args.data,
        args.out,
        decoding=args.decoding,
        beam=args.beam,
        device=args.device,
        batch_size=args.batch_size,
        limit=args.limit,
    )
    print(format_summary(summarize(table)))
    print(f"wrote {args.out} and {summary_path_for(args.out)}")
    return 0
