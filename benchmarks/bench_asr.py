"""What a few CPU minutes of training buy: tiny SO and DO models on the synthetic corpus.

    python benchmarks/bench_asr.py [--n 600] [--minutes 3] [--threads 1] [--config tiny] [--langs en ko]
    [--out DIR]

For each language: synthesise ``n`` utterances (80/10/10 split), train the
SO-surface, SO-meaning and DO models with a wall-time budget each,
evaluate the best checkpoints on the test split (attention greedy for every
task, CTC greedy for the CTC head's task), and print test CER per task next
to two baselines scored on the same test set:

- trivial: always output the most common transcript of that task in train;
- oracle: output the *other* transcript (the surface for the meaning task and
  vice versa), i.e. the CER that the task's divergence alone produces.

A model is useful where it beats both. Wall times are for this machine and
its load at the time; figures vary from run to run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from cka_probe.asr.evaluate import evaluate, summary_path_for
from cka_probe.asr.train import train
from cka_probe.data.manifest import read_manifest
from cka_probe.data.synth import synthesize
from cka_probe.text.cer import corpus_cer

MODELS = (("SSO", "so", "surface"), ("MSO", "so", "meaning"), ("DO", "do", None))
OTHER = {"surface": "meaning", "meaning": "surface"}
DECODINGS = ("attention", "ctc")


def baselines(train_rows: list[dict], test_rows: list[dict], task: str) -> tuple[float, float]:
    """(trivial, oracle) corpus CER in percent on the test rows for ``task``."""
    most_common = Counter(r[task] for r in train_rows).most_common(1)[0][0]
    trivial = corpus_cer((r[task], most_common) for r in test_rows)
    oracle = corpus_cer((r[task], r[OTHER[task]]) for r in test_rows)
    return trivial, oracle


def run_language(lang: str, n: int, minutes: float, config: str, out: Path) -> list[dict]:
    """Synthesise, train the three models, evaluate; one result row per (model, task)."""
    start = time.perf_counter()
    manifests = synthesize(lang=lang, n=n, out_dir=out / f"corpus_{lang}", seed=0)
    synth_s = time.perf_counter() - start
    train_rows, test_rows = read_manifest(manifests["train"]), read_manifest(manifests["test"])
    results = []
    for name, arch, task in MODELS:
        start = time.perf_counter()
        best = train(
            arch=arch,
            task=task,
            train_manifest=manifests["train"],
            valid_manifest=manifests["valid"],
            config=config,
            out_dir=out / f"{lang}_{name}",
            max_minutes=minutes,
        )
        train_s = time.perf_counter() - start
        summary, ctc = (
            test_summary(best, manifests["test"], out / f"{lang}_{name}_{d}.csv", d) for d in DECODINGS
        )
        epoch = torch.load(best, weights_only=True)["epoch"]
        for t, entry in summary["tasks"].items():
            trivial, oracle = baselines(train_rows, test_rows, t)
            results.append(
                {
                    "lang": lang,
                    "model": name,
                    "task": t,
                    "cer": entry["cer"],
                    "jamo_cer": entry.get("jamo_cer"),
                    "ctc_cer": ctc["tasks"].get(t, {}).get("cer"),
                    "trivial": trivial,
                    "oracle": oracle,
                    "best_epoch": epoch,
                    "train_s": train_s,
                }
            )
    print(f"{lang}: {len(train_rows)} train / {len(test_rows)} test utterances, synthesis {synth_s:.1f} s")
    return results


def test_summary(best: Path, manifest: Path, out_csv: Path, decoding: str) -> dict:
    """Evaluate ``best`` on the test manifest; the summary JSON as a dict."""
    evaluate(best, manifest, out_csv, decoding=decoding)
    return json.loads(summary_path_for(out_csv).read_text())


def print_table(results: list[dict]) -> None:
    print(
        f"{'lang':<5}{'model':<6}{'task':<9}{'att CER':>8}{'jamo':>7}{'CTC CER':>8}"
        f"{'trivial':>8}{'oracle':>7}"
        f"{'best ep':>8}{'train s':>8}"
    )
    for r in results:
        jamo, ctc = (f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("jamo_cer", "ctc_cer"))
        print(
            f"{r['lang']:<5}{r['model']:<6}{r['task']:<9}{r['cer']:>8.1f}{jamo:>7}{ctc:>8}{r['trivial']:>8.1f}"
            f"{r['oracle']:>7.1f}{r['best_epoch']:>8}{r['train_s']:>8.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="utterances per language")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--config", default="tiny", help="named config or JSON file")
    parser.add_argument("--langs", nargs="+", default=["en", "ko"])
    parser.add_argument("--out", default=None, help="keep corpora, checkpoints and CSVs here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        results = [
            r for lang in args.langs for r in run_language(lang, args.n, args.minutes, args.config, out)
        ]
    print_table(results)
    print(
        f"total wall time {time.perf_counter() - start:.0f} s "
        f"(config {args.config}, {args.threads} thread(s), budget {args.minutes} min per model)"
    )


if __name__ == "__main__":
    main()
