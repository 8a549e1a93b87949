"""Cost of the cross-task tables' resampled CKA: today's per-resample gather vs the batched formulation.

A Whisper-small-sized language (n = 1,000 utterances, 12 layers per side, d = 768, float32 inputs; the
paper's 9 comparisons over the sides encoder SSO, MSO, DO and decoder SSO/surface, MSO/meaning,
DO/surface, DO/meaning), debiased linear CKA. The reference is the per-resample gather of each side's
n × n Grams (``GramSet.terms`` and ``cka_grid``, the formulation the tables used before), run at a few
resamples and extrapolated per resample; the batched one is ``bootstrap_grids`` and ``permuted_grids``
over all 9 pairs. The floor is dense float32 (1,000 × 1,000)·(1,000 × 1,000) torch GEMMs with as many
multiply-adds as the full-square formulation's GEMMs (per bootstrap resample: K c and (K∘K) c per layer of
every side, (K_a∘L_b) c per layer pair; per permutation: ⟨K_a, P L_b Pᵀ⟩ per layer pair, n² each); the
batched one sums the symmetric products over their upper triangle, about half of those.
Peak memory is the growth of the resident set over each phase (sampled every 10 ms).
Usage: python benchmarks/bench_tables.py [--resamples 100] [--reference 5] [--large]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from cka_probe.measures import gram_resample
from cka_probe.study.cross_task import COMPARISONS


def resident() -> int:
    """Resident set size of this process, bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(run: Callable[[], object]) -> tuple[float, int]:
    """Seconds and peak growth of the resident set (bytes) of ``run()``."""
    base, peak, done = resident(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], resident() - base)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, max(peak[0], resident() - base)


def reference(pairs: list, indices: list, perms: list) -> None:
    """Today's formulation: every resample gathers both sides' Grams, once per comparison."""
    for a, b in pairs:
        for i in indices:
            gram_resample.cka_grid(a.terms(i, debiased=True), b.terms(i, debiased=True), a.n, debiased=True)
        fixed = a.terms(np.arange(a.n), debiased=True)
        for p in perms:
            gram_resample.cka_grid(fixed, b.terms(p, debiased=True), a.n, debiased=True)


def batched(pairs: list, indices: list, perms: list) -> None:
    gram_resample.bootstrap_grids(pairs, indices, debiased=True)
    gram_resample.permuted_grids(pairs, perms, debiased=True)


def gemm_macs(pairs: list, n: int, boots: int, perms: int) -> int:
    """Multiply-adds of the full-square formulation's GEMMs (module docstring)."""
    layers = sum(len(s.names) for s in gram_resample.sides(pairs))
    pair_layers = sum(len(a.names) * len(b.names) for a, b in pairs)
    return n * n * (boots * (2 * layers + pair_layers) + perms * pair_layers)


def floor_seconds(macs: int) -> float:
    """Seconds of dense float32 (1000 × 1000)·(1000 × 1000) GEMMs totalling ``macs`` multiply-adds."""
    x, y = torch.randn(1000, 1000), torch.randn(1000, 1000)
    x @ y
    start = time.perf_counter()
    for _ in range(max(1, round(macs / 1e9))):
        x @ y
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples = permutations")
    parser.add_argument("--reference", type=int, default=5, help="resamples of each kind for the reference")
    parser.add_argument("--large", action="store_true", help="n = 2,000, 32 layers, d = 1,280")
    args = parser.parse_args()
    n, depth, d = (2000, 32, 1280) if args.large else (1000, 12, 768)
    rng = np.random.default_rng(0)
    keys = {(c.role_a, c.stream_a) for c in COMPARISONS} | {(c.role_b, c.stream_b) for c in COMPARISONS}
    sets = {
        key: gram_resample.GramSet(
            {f"{i}": rng.standard_normal((n, d), dtype=np.float32) for i in range(depth)}
        )
        for key in sorted(keys)
    }
    pairs = [(sets[c.role_a, c.stream_a], sets[c.role_b, c.stream_b]) for c in COMPARISONS]
    draws = lambda r: (list(rng.integers(0, n, (r, n))), [rng.permutation(n) for _ in range(r)])

    cpu = next(
        line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
    )
    print(f"CPU {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"n={n}, {len(sets)} sides of {depth} layers, d={d}, {len(pairs)} comparisons, debiased, float64")
    ref_s, ref_mem = measured(lambda: reference(pairs, *draws(args.reference)))
    new_s, new_mem = measured(lambda: batched(pairs, *draws(args.resamples)))
    macs = gemm_macs(pairs, n, args.resamples, args.resamples)
    floor_s = floor_seconds(macs)
    per_ref, per_new = ref_s / args.reference, new_s / args.resamples
    print(
        f"reference (per-resample gather, {args.reference}+{args.reference} resamples, extrapolated): "
        f"{ref_s:.1f} s, peak +{ref_mem / 2**20:.0f} MiB, {1000 * per_ref:.0f} s per 1,000+1,000"
    )
    print(
        f"batched ({args.resamples}+{args.resamples} resamples): {new_s:.1f} s, "
        f"peak +{new_mem / 2**20:.0f} MiB, {1000 * per_new:.0f} s per 1,000+1,000"
    )
    print(
        f"floor: {macs / 1e9:.0f} G multiply-adds as float32 1000^3 GEMMs: {floor_s:.1f} s; "
        f"batched / floor {new_s / floor_s:.1f}x, reference / batched {per_ref / per_new:.0f}x"
    )


if __name__ == "__main__":
    main()
