"""Cost of the cross-task tables' resampled CKA: time against a float32 GEMM floor, and peak memory.

Default: a Whisper-small-sized language (n = 1,000 utterances, 12 layers per side, d = 768, float32 inputs;
the paper's 9 comparisons over the sides encoder SSO, MSO, DO and decoder SSO/surface, MSO/meaning,
DO/surface, DO/meaning, one seed), debiased linear CKA through the tables' path: the Grams computed once
(``held_grams``), then ``bootstrap_grids`` and ``permuted_grids`` over the 9 pairs, products in ``--dtype``
(float32: the tables' default). ``--reference K`` also runs the per-resample gather of each side's n × n
Grams (``GramSet.terms`` and ``cka_grid``, the formulation the tables used first) at K resamples.

``--large``: a Whisper-large-sized study (n = 2,000, 32 layers, d = 1,280; every role SSO, MSO, DO holds
an encoder and two decoder streams, three seed replicates per role: 27 × 32 float32 input layers, 8.2 GiB,
each read when used, as from a store, not held) through ``cross_task._batched``, the tables' own loop
over batches (one seed replicate of one part at a time), every comparison the tables make (the 9 per
seed and the seed-to-seed ceilings).

Each size runs at ``--resamples`` R and at R/4 bootstrap resamples and permutations; the time per 1,000 +
1,000 is the fixed part plus 1,000 times the per-resample slope between the two runs (the Grams and
Hadamard products are formed once per run, whatever R). The floor: dense float32 (1000 × 1000)·(1000 ×
1000) torch GEMMs (``x @ y``) totalling the multiply-adds of the full-square formulation's GEMMs (per
bootstrap resample: K c and (K∘K) c per layer of every side, (K_a∘L_b) c per layer pair; per permutation:
⟨K_a, P L_b Pᵀ⟩ per layer pair; n² each), timed in the same run and scaled to 1,000 + 1,000; the batched
code does about half of them (upper triangle). Memory: the peak growth of the resident set over each run
(sampled every 10 ms) and the process's peak resident set (``ru_maxrss``, inputs included).
Usage: python benchmarks/bench_tables.py [--resamples 100] [--dtype float32] [--reference 0] [--large]
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from cka_probe.inference.resample_measures import ResampledMeasure
from cka_probe.measures import gram_resample
from cka_probe.study.cross_task import COMPARISONS, REFERENCES, _batched, _layer_sets, _pairs
from cka_probe.study.roles import ROLES


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
    """The first formulation: every resample gathers both sides' Grams, once per comparison."""
    for a, b in pairs:
        for i in indices:
            gram_resample.cka_grid(a.terms(i, debiased=True), b.terms(i, debiased=True), a.n, debiased=True)
        fixed = a.terms(np.arange(a.n), debiased=True)
        for p in perms:
            gram_resample.cka_grid(fixed, b.terms(p, debiased=True), a.n, debiased=True)


def batched(pairs: list, indices: list, perms: list, dtype: torch.dtype) -> None:
    """The tables' path for one batch of pairs: Grams once, then both resampled grids."""
    held = gram_resample.held_grams(pairs, dtype)
    gram_resample.bootstrap_grids(pairs, indices, debiased=True, dtype=dtype, held=held)
    gram_resample.permuted_grids(pairs, perms, debiased=True, dtype=dtype, held=held)


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


def layers(rng: np.random.Generator, n: int, depth: int, d: int) -> dict[str, np.ndarray]:
    return {f"{i}": rng.standard_normal((n, d), dtype=np.float32) for i in range(depth)}


class Stored:
    """A float32 (n, d) layer read when used, as a store's dataset is: regenerated from its seed by each
    ``np.asarray`` (the study holds no input layer between uses)."""

    def __init__(self, seed: int, n: int, d: int) -> None:
        self.seed, self.shape = seed, (n, d)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = np.random.default_rng(self.seed).standard_normal(self.shape, dtype=np.float32)
        return x if dtype is None else x.astype(dtype)


def small_case(rng: np.random.Generator) -> tuple[int, list, Callable]:
    """n, the 9 pairs of one seed, and the run of R resamples of the Whisper-small-sized case."""
    n, depth, d = 1000, 12, 768
    keys = {(c.role_a, c.stream_a) for c in COMPARISONS} | {(c.role_b, c.stream_b) for c in COMPARISONS}
    sets = {key: gram_resample.GramSet(layers(rng, n, depth, d)) for key in sorted(keys)}
    pairs = [(sets[c.role_a, c.stream_a], sets[c.role_b, c.stream_b]) for c in COMPARISONS]
    print(f"n={n}, {len(sets)} sides of {depth} layers, d={d}, {len(pairs)} comparisons, one seed")
    return n, pairs, lambda boots, perms, dtype: batched(pairs, boots, perms, dtype)


def large_case(rng: np.random.Generator) -> tuple[int, list, Callable]:
    """n, every pair of the study, and the run of R resamples of the Whisper-large-sized study."""
    n, depth, d, seeds = 2000, 32, 1280, 3
    streams = ("encoder", "decoder/surface", "decoder/meaning")
    seed = iter(range(10**6))
    reps = {
        role: [
            {s: {f"{i}": Stored(next(seed), n, d) for i in range(depth)} for s in streams}
            for _ in range(seeds)
        ]
        for role in ROLES
    }
    stats = ResampledMeasure("cka", debiased=True)
    sets = _layer_sets(reps, "xx", stats)
    compared = [(c, p) for c in COMPARISONS + REFERENCES if (p := _pairs(c, sets))]
    pairs = [pair for _, group in compared for pair in group]
    inputs = 4 * n * d * depth * len(streams) * seeds * len(reps)
    batches = {(k, c.part) for c, p in compared for k in range(len(p))}
    print(
        f"n={n}, {depth} layers, d={d}, {seeds} seeds x {len(reps)} roles x {len(streams)} streams "
        f"({inputs / 2**30:.2f} GiB of float32 inputs, read when used), {len(pairs)} pairs in {len(batches)} "
        "batches"
    )
    return n, pairs, lambda boots, perms, dtype: _batched(compared, boots, perms, stats, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples = permutations, R")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="products' dtype")
    parser.add_argument("--reference", type=int, default=0, help="resamples of each kind for the gather")
    parser.add_argument("--large", action="store_true", help="n = 2,000, 32 layers, d = 1,280, 3 seeds")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    rng = np.random.default_rng(0)
    cpu = next(
        line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
    )
    print(f"CPU {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()}")
    n, pairs, run = (large_case if args.large else small_case)(rng)
    print(f"debiased, products in {args.dtype}")
    draws = lambda r: (list(rng.integers(0, n, (r, n))), [rng.permutation(n) for _ in range(r)])
    counts = (max(1, args.resamples // 4), args.resamples)
    (short_s, short_mem), (long_s, long_mem) = (measured(partial(run, *draws(r), dtype)) for r in counts)
    slope = (long_s - short_s) / (counts[1] - counts[0])
    per_1000 = long_s - counts[1] * slope + 1000 * slope
    floor_1000 = floor_seconds(gemm_macs(pairs, n, args.resamples, args.resamples)) * 1000 / args.resamples
    for r, seconds, memory in zip(counts, (short_s, long_s), (short_mem, long_mem)):
        print(f"batched ({r}+{r} resamples): {seconds:.1f} s, peak +{memory / 2**20:.0f} MiB")
    print(
        f"per 1,000+1,000: {per_1000:.0f} s (fixed {long_s - counts[1] * slope:.1f} s + {slope:.3f} s per "
        f"resample pair); floor {gemm_macs(pairs, n, 1000, 1000) / 1e9:.0f} G multiply-adds as float32 "
        f"1000^3 GEMMs: {floor_1000:.0f} s; batched / floor {per_1000 / floor_1000:.2f}x"
    )
    print(f"peak resident set of the process (inputs included): {peak_rss() / 2**30:.2f} GiB")
    if args.reference:
        ref_s, ref_mem = measured(lambda: reference(pairs, *draws(args.reference)))
        print(
            f"reference (per-resample gather, {args.reference}+{args.reference} resamples): {ref_s:.1f} s, "
            f"peak +{ref_mem / 2**20:.0f} MiB, {1000 * ref_s / args.reference:.0f} s per 1,000+1,000"
        )


def peak_rss() -> int:
    """Peak resident set of this process so far, bytes (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
