"""Pooling training seeds: the hierarchical bootstrap over seeds, then utterances.

A model trained with K seeds gives K estimates of each effect θ_k and, per
seed, R bootstrap draws over the same utterances (the same resample r of
utterances for every seed, as the seeds share the corpus). The pooled effect
is the mean over seeds θ̄ = (1/K) Σ θ_k; its draw r resamples K seeds with
replacement and averages their utterance draws r, so the spread covers both
training variance (between seeds) and sampling variance (between utterance
sets) (Davison & Hinkley 1997, §3.8, two-stage sampling; Saravanan et al.
2020 for neural networks). With K = 1 the pooled draws are the seed's own.
"""

from __future__ import annotations

import zlib

import numpy as np

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
