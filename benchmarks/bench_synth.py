"""Synthesis speed, corpus statistics and audio faithfulness of ``cka-probe synth``.

    python benchmarks/bench_synth.py [--n 1000] [--workers 2] [--faithful 200]
                                     [--levels 0,0.5,1,1.5,2] [--dial-only]

For each language: wall time of ``synthesize`` against a baseline measured in
the same run (one plain ``espeak-ng`` call per meaning sentence, sequential,
no resampling or files), the edit-distance bins, the oracle CER, durations
and encoder frames per character. For English, audio faithfulness: the
phonemes espeak-ng derives from the *surface* spelling, and from the *meaning*
spelling, are compared with the phonemes actually spoken (phoneme error rate,
stress marks removed); the spoken phonemes should sit much closer to the
surface spelling. For Korean, spoken from the surface Hangul itself, it
checks that the errors are audible: espeak-ng's readings of the surface and
the meaning transcripts should differ.

The divergence dial: for each level of ``--levels``, the transcripts of the
same ``--n`` utterances (seed 0, no audio: ``synth.transcripts``), their
surface–meaning edit-distance distribution (share per bin, mean, quartiles,
maximum) and the oracle CER, the CER of the meaning transcript scored against
the surface one (what a model that outputs exactly the meaning scores on the
surface task). ``--dial-only`` prints only this table.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from cka_probe.data import espeak, synth
from cka_probe.data.manifest import read_manifest
from cka_probe.data.synth import synthesize
from cka_probe.text.cer import ED_BINS, char_errors, corpus_cer, ed_bin


def phonemes_of(texts: list[str], voice: str) -> list[list[str]]:
    """espeak-ng's phoneme tokens (stress removed) for each text, one call per text."""
    out = []
    for text in texts:
        line = subprocess.run(
            ["espeak-ng", "-q", "-x", "--sep=_", "-v", voice, text],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out.append([t.lstrip("',") for t in line.replace(" ", "_").split("_") if t.strip("',")])
    return out


def phoneme_error_rate(refs: list[list[str]], hyps: list[list[str]]) -> float:
    errors = sum(Levenshtein.distance(r, h) for r, h in zip(refs, hyps))
    return 100.0 * errors / sum(len(r) for r in refs)


def faithfulness(rows: list[dict], k: int) -> None:
    """English: phoneme error rate of the spoken phonemes against espeak-ng's reading of each transcript."""
    sample = [r for r in rows if r["surface"] != r["meaning"]][:k]
    spoken = phonemes_of([r["phonemes"] for r in sample], "en-us")
    for field in ("surface", "meaning"):
        per = phoneme_error_rate(spoken, phonemes_of([r[field] for r in sample], "en-us"))
        print(
            f"  spoken phonemes vs espeak-ng reading of the {field:7s} text: PER {per:5.1f}% "
            f"({len(sample)} utterances with errors)"
        )


def audibility(rows: list[dict], k: int) -> None:
    """Korean (spoken from the surface Hangul): how far the surface and meaning readings differ."""
    sample = [r for r in rows if r["surface"] != r["meaning"]][:k]
    surface, meaning = (phonemes_of([r[f] for r in sample], "ko") for f in ("surface", "meaning"))
    silent = sum(s == m for s, m in zip(surface, meaning))
    print(
        "  espeak-ng reading of surface vs meaning Hangul: "
        f"PER {phoneme_error_rate(meaning, surface):5.1f}%, "
        f"identical for {silent} of {len(sample)} utterances with errors"
    )


def baseline_seconds(texts: list[str], voice: str) -> float:
    start = time.perf_counter()
    for text in texts:
        subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True)
    return time.perf_counter() - start


def dial(lang: str, n: int, levels: list[float]) -> None:
    """Edit-distance distribution and oracle CER of the same ``n`` utterances at each level of the dial."""
    spec = synth.language(lang)
    print(f"{lang}: divergence dial, {n} utterances, seed 0")
    print(
        f"{'level':>6} " + " ".join(f"{b:>6}" for b in ED_BINS) + "   mean ED  q25 q50 q75  max  oracle CER"
    )
    for level in levels:
        rows = synth.transcripts(spec, n, 0, level)
        distances = np.array([char_errors(r["meaning"], r["surface"]) for r in rows])
        shares = [100 * np.mean([ed_bin(d) == b for d in distances]) for b in ED_BINS]
        q25, q50, q75 = np.percentile(distances, [25, 50, 75])
        oracle = corpus_cer((r["surface"], r["meaning"]) for r in rows)
        print(
            f"{level:>6g} "
            + " ".join(f"{s:>5.1f}%" for s in shares)
            + f" {distances.mean():>9.2f} {q25:>4.0f} {q50:>3.0f} {q75:>3.0f} {distances.max():>4d}"
            + f" {oracle:>10.1f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--faithful", type=int, default=200, help="utterances with errors checked for faithfulness"
    )
    parser.add_argument(
        "--levels", default="0,0.5,1,1.5,2", help="levels of the divergence dial, comma-separated"
    )
    parser.add_argument("--dial-only", action="store_true", help="only the divergence-dial table")
    args = parser.parse_args()
    espeak.espeak_binary()
    for lang in ("en", "ko"):
        dial(lang, args.n, [float(level) for level in args.levels.split(",")])
    if args.dial_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for lang, voice in (("en", "en-us"), ("ko", "ko")):
            start = time.perf_counter()
            paths = synthesize(lang=lang, n=args.n, out_dir=Path(tmp) / lang, seed=0, workers=args.workers)
            seconds = time.perf_counter() - start
            rows = [r for p in paths.values() for r in read_manifest(p)]
            base = baseline_seconds([r["meaning"] for r in rows], voice)
            print(
                f"{lang}: synthesize {args.n} utterances with {args.workers} workers: {seconds:.1f} s; "
                f"baseline (sequential espeak-ng, no files): {base:.1f} s; ratio {seconds / base:.2f}"
            )
            (faithfulness if lang == "en" else audibility)(rows, args.faithful)


if __name__ == "__main__":
    main()
