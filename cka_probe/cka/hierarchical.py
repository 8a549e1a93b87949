"""Pooling training seeds: the hierarchical bootstrap over seeds, then utterances.

A model trained with K seeds gives K estimates of each effect θ_k and, per
seed, R bootstrap draws over the same utterances (the same resample r of
utterances for every seed, as the seeds share the corpus). The pooled effect
is the mean over seeds θ̄ = (1/K) Σ θ_k; its draw r resamples K seeds with
replacement and averages their utterance draws r, so the spread covers both
training variance (between seeds) and sampling variance (between utterance
sets) (Davison & Hinkley 1997, §3.8, two-stage sampling; Saravanan et al.
2020 for neural networks). With K = 1 the pooled draws are the seed's own.

:func:`crossed_parts` is the moment alternative for a statistic near normal
(the CER gap): seeds and utterances are crossed factors, and the variance of
θ̄ has a seed part and an utterance part, estimated separately.
"""

from __future__ import annotations

import zlib

import numpy as np

from cka_probe.cka.resample import student_se
from cka_probe.errors import CKAProbeError


def pooled_draws(draws: np.ndarray, *, seed: int = 0, key: str = "") -> np.ndarray:
    """Draws (R, ...) of the mean over seeds from per-seed draws (K, R, ...) on shared utterance resamples."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim < 2 or len(draws) == 0:
        raise CKAProbeError(f"expected per-seed draws of shape (K, R, ...), got {draws.shape}")
    k, r = draws.shape[:2]
    if k == 1:
        return draws[0]
    picks = np.random.default_rng([seed, zlib.crc32(key.encode())]).integers(0, k, (r, k))  # (R, K)
    return draws[picks, np.arange(r)[:, None]].mean(axis=1)


def crossed_parts(estimates: np.ndarray, draws: np.ndarray, n: int) -> list[tuple[np.ndarray, float]]:
    """The variance of the mean over seeds θ̄ (...) in independent parts (variance, df), from per-seed
    estimates (K, ...) and draws (K, R, ...) on shared resamples of n utterances.

    θ_k = μ + a_k + u + w_k: the seed's effect a_k (variance τ²), the utterance
    sample's u, shared by every seed (σ²_u), and the seed's own sampling noise
    w_k (σ²_w), so Var θ̄ = τ²/K + σ²_u + σ²_w/K. The seeds' sample variance s²
    estimates τ² + σ²_w (K − 1 df) and the bootstrap covariance of two seeds'
    draws σ²_u (n − 1 df):

        Var θ̄ ≈ s²/K + c̄ · n/(n−1),   c̄ = mean over seed pairs j ≠ k of Cov*(θ*_j, θ*_k) (clipped at 0).

    :func:`pooled_draws` instead counts σ²_w twice and reads τ² off K values
    with a normal quantile: in ``benchmarks/bench_coverage.py`` 2.1× the
    variance when seeds agree, 0.70× when training variance dominates (K = 3).
    For K = 1: the seed's :func:`~cka_probe.cka.resample.student_se`², n − 1 df.
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
