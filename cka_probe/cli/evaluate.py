"""``cka-probe evaluate``: per-utterance and corpus CER of a bundled checkpoint, a Hugging Face folder or a
``FILE.py:FUNCTION`` adapter."""

from __future__ import annotations

import argparse
from pathlib import Path

from cka_probe.cli._options import integer, positive_int, torch_device
from cka_probe.cli._prompts import add_prompt_arguments, prompts_of
from cka_probe.errors import CKAProbeError

HELP = "Transcribe a manifest with a model and write per-utterance CER (CSV) and corpus CER (JSON)."
BUNDLED_ONLY = ("decoding", "beam")
BROUGHT_ONLY = ("normalise", "tasks", "prompt", "prompts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        help="checkpoint written by 'cka-probe train' (best.pt), a Hugging Face folder (Whisper, *ForCTC) "
        "or FILE.py:FUNCTION (an adapter with transcribe)",
    )
    parser.add_argument("--data", required=True, help="manifest (JSON Lines) to decode")
    parser.add_argument(
        "--out", required=True, help="per-utterance CSV; the summary goes to OUT.summary.json"
    )
    parser.add_argument(
        "--decoding",
        choices=("attention", "ctc"),
        default=None,
        help="checkpoints: attention decoder(s) for every task, or the CTC head for its task "
        "(default attention)",
    )
    parser.add_argument(
        "--beam",
        type=integer(1, 1000),
        default=None,
        help="checkpoints: beam size of attention decoding; 1 = greedy (default 1)",
    )
    parser.add_argument(
        "--normalise",
        choices=("basic", "none"),
        default=None,
        help="other models: 'basic' lower-cases and drops punctuation in references and hypotheses "
        "(transformers' BasicTextNormalizer), 'none' compares them as written (default basic)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=("surface", "meaning"),
        default=None,
        help="other models: the references scored (default: both for Whisper and CTC models, what an "
        "adapter's transcribe returns)",
    )
    add_prompt_arguments(parser, "other models: generate TASK's hypotheses after PROMPT")
    parser.add_argument(
        "--batch-size", type=positive_int, default=16, help="utterances per batch (default 16)"
    )
    parser.add_argument("--limit", type=positive_int, default=None, help="decode only the first N utterances")
    parser.add_argument("--device", type=torch_device, default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--threads", type=integer(1, 1024), default=None, help="torch CPU threads (default: torch's choice)"
    )


def refuse_options(args: argparse.Namespace, bundled: bool) -> None:
    """Refuse the options of a bundled checkpoint for another model, and the other way round."""
    names = BROUGHT_ONLY if bundled else BUNDLED_ONLY
    given = [f"--{name}" for name in names if getattr(args, name) is not None]
    if given:
        kind = "a checkpoint .pt" if bundled else "a model that is not a checkpoint .pt"
        raise CKAProbeError(f"{given[0]} does not apply to {kind} ({args.model})")


def run(args: argparse.Namespace) -> int:
    import torch

    from cka_probe.asr.evaluate import evaluate, format_summary, summarize, summary_path_for
    from cka_probe.extract.models.transcribe import evaluate_model

    bundled = Path(args.model).suffix == ".pt"
    refuse_options(args, bundled)
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {"device": args.device, "batch_size": args.batch_size, "limit": args.limit}
    if bundled:
        table = evaluate(
            args.model,
            args.data,
            args.out,
            decoding=args.decoding or "attention",
            beam=args.beam or 1,
            **common,
        )
    else:
        table = evaluate_model(
            args.model,
            args.data,
            args.out,
            tasks=args.tasks,
            normalise=args.normalise or "basic",
            prompts=prompts_of(args.prompt, args.prompts),
            **common,
        )
    print(format_summary(summarize(table)))
    print(f"wrote {args.out} and {summary_path_for(args.out)}")
    return 0
