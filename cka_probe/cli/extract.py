"""``cka-probe extract``: per-layer activations of a model over a manifest into an HDF5 store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cka_probe.cli._options import positive_int, torch_device
from cka_probe.errors import CKAProbeError

HELP = (
    "Extract per-layer activations of a model (.pt, Hugging Face folder or FILE.py:FUNCTION) "
    "into an HDF5 store"
)


def task_prompt(text: str) -> tuple[str, str]:
    """``TASK=PROMPT`` -> ``(task, prompt)``."""
    task, sep, prompt = text.partition("=")
    if not sep or not task:
        raise argparse.ArgumentTypeError(f"{text!r} is not TASK=PROMPT (e.g. surface='<|surface|>')")
    return task, prompt


def prompts_of(pairs: list[tuple[str, str]] | None, path: str | None) -> dict[str, str] | None:
    """The task prompts of ``--prompt`` pairs (each task once) or of the ``--prompts`` JSON file."""
    if path is not None:
        return read_prompts(Path(path))
    if not pairs:
        return None
    prompts: dict[str, str] = {}
    for task, prompt in pairs:
        if task in prompts:
            raise CKAProbeError(f"--prompt: task {task} is given twice")
        prompts[task] = prompt
    return prompts


def read_prompts(path: Path) -> dict[str, str]:
    """A ``--prompts`` file: one JSON object of task -> prompt string."""
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CKAProbeError(f"{path}: cannot read the prompts ({err})") from None
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise CKAProbeError(f'{path}: not a JSON object of task -> prompt ({{"surface": "<|surface|>"}})')
    return prompts


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
        choices=("sso", "mso", "do"),
        help="the model's role in compare --cross-task, recorded in the store "
        "(needed for models other than the bundled ones)",
    )
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--prompt",
        action="append",
        type=task_prompt,
        metavar="TASK=PROMPT",
        help="teacher-force TASK after PROMPT (a task token such as '<|surface|>' or a text), for a "
        "Whisper whose one decoder selects its output by a prompt; once per extracted task",
    )
    given.add_argument(
        "--prompts", metavar="FILE.json", help='task prompts in JSON: {"surface": "...", "meaning": "..."}'
    )
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
        word_spans=args.word_spans,
        prompts=prompts_of(args.prompt, args.prompts),
    )
    print(out)
    return 0
