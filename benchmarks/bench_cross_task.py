"""Cost of the cross-task statistics: Gram-space resampling vs recomputing CKA per resample.

The paper's set for one language (9 comparisons, 12 encoder and 6 decoder
layers, d = 256) with per-utterance means; both paths give the same numbers
(checked here), the baseline rebuilds centred features and feature-space CKA
for every resample and layer pair. Prints seconds and the ratio (same run).
Usage: python benchmarks/bench_cross_task.py [--n 300] [--resamples 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cka_probe.measures import gram_resample
from cka_probe.study.cross_task import COMPARISONS


def feature_space_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019, Eq. 5, on centred columns (no tie correction: permutations only)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.sum((y.T @ x) ** 2) / np.sqrt(np.sum((x.T @ x) ** 2) * np.sum((y.T @ y) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--resamples", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    depth = {"encoder": 12, "decoder/surface": 6, "decoder/meaning": 6}
    reps = {
        (role, stream): {f"{stream}.{i}": rng.standard_normal((args.n, 256)) for i in range(depth[stream])}
        for role, stream in {(c.role_a, c.stream_a) for c in COMPARISONS}
        | {(c.role_b, c.stream_b) for c in COMPARISONS}
    }
    perms = [rng.permutation(args.n) for _ in range(args.resamples)]

    start = time.perf_counter()
    sets = {key: gram_resample.GramSet(layers) for key, layers in reps.items()}
    fast = [
        gram_resample.permuted(sets[c.role_a, c.stream_a], sets[c.role_b, c.stream_b], perms)
        for c in COMPARISONS
    ]
    gram_s = time.perf_counter() - start

    start = time.perf_counter()
    slow = [
        np.array(
            [
                [
                    [feature_space_cka(x, y[p]) for y in reps[c.role_b, c.stream_b].values()]
                    for x in reps[c.role_a, c.stream_a].values()
                ]
                for p in perms
            ]
        )
        for c in COMPARISONS
    ]
    feature_s = time.perf_counter() - start

    error = max(float(np.abs(f - s).max()) for f, s in zip(fast, slow))
    print(f"n={args.n} utterances, 9 comparisons, {args.resamples} permutations, d=256, 12/6 layers")
    print(f"gram-space resampling : {gram_s:7.2f} s")
    print(f"feature-space baseline: {feature_s:7.2f} s")
    print(f"speed-up              : {feature_s / gram_s:7.1f}x   (max |difference| {error:.1e})")


if __name__ == "__main__":
    main()
