"""``cka-probe reproduce``: synth -> train -> evaluate -> extract -> compare -> figures -> report,
resumable; a rerun with other options redoes the stages whose recipe changed and everything after them."""

from __future__ import annotations

import argparse
from pathlib import Path

from cka_probe.cli._options import (
    add_training_options,
    integer,
    nonnegative_int,
    positive_int,
)
from cka_probe.cli._prompts import add_prompt_arguments, prompts_of
from cka_probe.errors import CKAProbeError

HELP = (
    "Run the whole study (synthetic corpus or your manifests) into a run directory; rerun to resume "
    "(a stage whose recipe changed is redone, with everything after it)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", nargs="+", default=["en", "ko"], help="languages (default: en ko)")
    parser.add_argument(
        "--scale",
        choices=("tiny", "paper"),
        default="tiny",
        help="tiny: 2-core CPU in about 20 minutes; paper: the paper's configuration on a GPU",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="run directory (created; an existing one is resumed: each output made from other options or "
        "inputs is redone with everything after it, the rest is kept; one reproduce at a time per directory)",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="LANG=DIR",
        help="use your manifests DIR/{train,valid,test}.jsonl for LANG instead of the synthetic corpus",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="LANG:ROLE[#K]=MODEL",
        help="bring a model (HF folder, .pt or FILE.py:FUNCTION) as seed replicate K (default 0) of role "
        "sso, mso or do of LANG instead of training it; needs --data LANG=DIR",
    )
    add_prompt_arguments(
        parser, "evaluate and extract TASK of every brought Whisper folder after PROMPT", scoped=True
    )
    parser.add_argument(
        "--normalise",
        choices=("basic", "none"),
        default="basic",
        help="text normalisation of the brought models' CER: 'basic' lower-cases and drops punctuation in "
        "references and hypotheses (transformers' BasicTextNormalizer), 'none' compares them as written "
        "(default basic; the report states it)",
    )
    parser.add_argument(
        "--n",
        type=positive_int,
        default=None,
        help="synthetic utterances per language (default: the scale's)",
    )
    parser.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed for data, training and resampling (default 0)"
    )
    parser.add_argument(
        "--seeds",
        type=integer(1, 100),
        default=1,
        metavar="K",
        help="seed replicates of every role (default 1); findings pool them and need every seed "
        "to agree in sign",
    )
    parser.add_argument(
        "--resample-corpus",
        action="store_true",
        help="each seed replicate trains on its own synthetic corpus (default: one corpus for all)",
    )
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="with --seeds 1, skip the second SSO training behind the seed-to-seed ceiling",
    )
    add_training_options(parser)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[],
        metavar="VARIANT",
        help="also train and compare these structured DO variants (split-K, shared-private, "
        "sparse-shared); adds the report's Mitigation section and the word-level analysis",
    )
    parser.add_argument(
        "--word-level",
        action="store_true",
        help="word spans for each language's SSO store, the word-level tables and the probes of what each "
        "encoder layer keeps of the said and the meant word (implied by --variants and --spans)",
    )
    parser.add_argument(
        "--spans",
        action="append",
        default=[],
        metavar="LANG=PATH",
        help="word spans of LANG from any aligner: a TextGrid folder (a 'words' tier), a .ctm or a word-span "
        ".jsonl, matched to the test manifest by id (implies --word-level; needed where the SSO is brought)",
    )


def parse_paths(items: list[str], option: str = "--data", what: str = "DIR") -> dict[str, Path]:
    """``["en=DIR", ...]`` -> ``{"en": Path("DIR")}``; ``option`` and ``what`` name them in errors."""
    pairs = {}
    for item in items:
        lang, sep, folder = item.partition("=")
        if not sep or not lang or not folder:
            raise CKAProbeError(f"{option} {item}: expected LANG={what}")
        if lang in pairs:
            raise CKAProbeError(f"{option} {item}: {lang} is given twice")
        pairs[lang] = Path(folder)
    return pairs


def parse_models(items: list[str]) -> dict[tuple[str, str], str]:
    """``["en:sso=DIR", "en:sso#1=DIR2"]`` -> ``{("en", "sso"): "DIR", ("en", "sso#1"): "DIR2"}`` (roles and
    replicates are checked by :func:`cka_probe.pipeline.study_plan.brought_models`)."""
    from cka_probe.pipeline import MODELS

    pairs: dict[tuple[str, str], str] = {}
    for item in items:
        key, sep, model = item.partition("=")
        lang, colon, role = key.partition(":")
        if not sep or not colon or not lang or not model or not role:
            raise CKAProbeError(
                f"--model {item}: expected LANG:ROLE=MODEL or LANG:ROLE#K=MODEL with ROLE one of "
                f"{', '.join(MODELS)}"
            )
        if (lang, role) in pairs:
            raise CKAProbeError(f"--model {item}: {key} is brought twice")
        pairs[(lang, role)] = model
    return pairs


def run(args: argparse.Namespace) -> int:
    from cka_probe.pipeline import reproduce

    report = reproduce(
        args.lang,
        args.scale,
        args.out,
        data=parse_paths(args.data),
        n=args.n,
        seed=args.seed,
        jobs=args.jobs,
        epochs=args.epochs,
        train_minutes=args.train_minutes,
        seeds=args.seeds,
        resample_corpus=args.resample_corpus,
        ceiling=not args.no_ceiling,
        models=parse_models(args.model),
        variants=args.variants,
        word_level=args.word_level,
        spans=parse_paths(args.spans, "--spans", "PATH"),
        prompts=prompts_of(args.prompt, args.prompts, scoped=True),
        normalise=args.normalise,
    )
    print(f"report: {report}")
    return 0
