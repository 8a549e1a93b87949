"""Pooling training seeds: intervals for the mean over seeds of an effect.

A model trained with K seeds gives K estimates of each effect θ_k and, per
seed, R bootstrap draws over the same utterances (the same resample r of
utterances for every seed, as the seeds share the corpus). The pooled effect
is the mean over seeds θ̄ = (1/K) Σ θ_k. Seeds and utterances are crossed:
θ_k = μ + a_k + u + w_k, with the seed's effect a_k (variance τ²), the
utterance sample's u, shared by every seed, and the seed's own sampling
noise w_k (σ²_w), so Var θ̄ = τ²/K + Var u + σ²_w/K.

:func:`pooled_draws` (the CKA tables): the seed mean of draw r, which holds
Var u + σ²_w/K, plus a seed part (s/√K)·T_r with T_r ~ t_{K−1} and s the
seeds' standard deviation, whose square estimates τ² + σ²_w (Student's t for
a mean of K values). σ²_w/K is counted twice, so it errs wide when seeds
agree. The hierarchical bootstrap (resample K seeds, then utterances;
Davison & Hinkley 1997, §3.8; :func:`cka_probe.inference.baselines.hierarchical_draws`)
reads τ² off K values with a normal quantile: over three seeds it covered
84.8 % where training variance dominates (``benchmarks/bench_coverage.py``).

:func:`crossed_parts` (the CER gaps, near normal): the two parts of the
variance with their degrees of freedom, σ²_w counted once.
"""

from __future__ import annotations

import numpy as np

from cka_probe.errors import CKAProbeError
from cka_probe.inference.intervals import student_se
from cka_probe.inference.resampling import keyed_rng


def pooled_draws(draws: np.ndarray, estimates: np.ndarray, *, seed: int = 0, key: str = "") -> np.ndarray:
    """Draws (R, ...) of the mean over seeds from per-seed draws (K, R, ...) on shared utterance resamples
    and the seeds' estimates (K, ...): mean_k θ*_{k,r} + (s/√K)·T_r, T_r ~ t_{K−1}; the seed's draws for K =
    1."""
    draws, estimates = np.asarray(draws, dtype=np.float64), np.asarray(estimates, dtype=np.float64)
    if draws.ndim < 2 or len(draws) == 0:
        raise CKAProbeError(f"expected per-seed draws of shape (K, R, ...), got {draws.shape}")
    k, r = draws.shape[:2]
    if k == 1:
        return draws[0]
    spread = estimates.std(axis=0, ddof=1) / np.sqrt(k)
    t = keyed_rng(seed, key).standard_t(k - 1, r)
    return draws.mean(axis=0) + spread * t.reshape((r,) + (1,) * (draws.ndim - 2))


def crossed_parts(estimates: np.ndarray, draws: np.ndarray, n: int) -> list[tuple[np.ndarray, float]]:
    """The variance of the mean over seeds θ̄ (...) in independent parts (variance, df), from per-seed
    estimates (K, ...) and draws (K, R, ...) on shared resamples of n utterances.

    θ_k = μ + a_k + u + w_k: the seed's effect a_k (variance τ²), the utterance
    sample's u, shared by every seed (σ²_u), and the seed's own sampling noise
    w_k (σ²_w), so Var θ̄ = τ²/K + σ²_u + σ²_w/K. The seeds' sample variance s²
    estimates τ² + σ²_w (K − 1 df) and the bootstrap covariance of two seeds'
    draws σ²_u (n − 1 df):

        Var θ̄ ≈ s²/K + c̄ · n/(n−1),   c̄ = mean over seed pairs j ≠ k of Cov*(θ*_j, θ*_k) (clipped at 0).

    The hierarchical bootstrap counted σ²_w twice and read τ² off K values
    with a normal quantile: in the coverage test 2.1× the variance when seeds
    agree, 0.70× when training variance dominates (K = 3). For K = 1: the seed's
    :func:`~cka_probe.inference.intervals.student_se`², n − 1 df.
    """
    estimates, draws = np.asarray(estimates, dtype=np.float64), np.asarray(draws, dtype=np.float64)
    k = len(estimates)
    if n < 2:
        return [(np.full(estimates.shape[1:], np.nan), 1.0)]
    if k == 1:
        return [(student_se(draws[0], n) ** 2, n - 1.0)]
    between = estimates.var(axis=0, ddof=1) / k
    pairs = (draws.sum(axis=0).var(axis=0) - draws.var(axis=1).sum(axis=0)) / (k * (k - 1))
    return [(between, k - 1.0), (np.maximum(pairs, 0.0) * n / (n - 1), n - 1.0)]
