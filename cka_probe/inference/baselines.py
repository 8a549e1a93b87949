"""Baselines for the coverage comparisons of ``benchmarks/bench_coverage.py`` and the tests.

The analysis does not use them: each is a method whose interval the
benchmark measures next to the one the analysis reports, so that the tables
show what the choice gained.

* :func:`debiased_weighted_cka`: the debiased estimator over *rows* (Song et
  al. 2012, Eq. 5) of a resample given as row multiplicities, copy pairs left
  out (the ``deb-*`` columns). With one row per utterance it is the
  cross-task tables' estimator; with correlated frames of one utterance it
  pairs them as if independent and its percentile interval covers less than
  the estimator over distinct groups (:mod:`cka_probe.measures.grouped`) that
  :func:`~cka_probe.inference.bootstrap.bootstrap_ci` uses.
* :func:`copies_cka`: biased CKA with a resample's copies as rows, no tie
  correction (``pct-plain``).
* :func:`hierarchical_draws`: the hierarchical bootstrap over seeds, then
  utterances (Davison & Hinkley 1997, §3.8), which reads the seeds' variance
  off K values with a normal quantile (84.8 % over three seeds where training
  variance dominates); the tables pool seeds with
  :func:`~cka_probe.inference.seeds.pooled_draws`.
"""

from __future__ import annotations

import numpy as np

from cka_probe.inference.resampling import bootstrap_draws
from cka_probe.measures.gram_resample import masked_gram_hsic
from cka_probe.measures.weighted import weighted_cka, weighted_covariance, weighted_cross


def debiased_weighted_hsic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """HSIC₁ of each resample with multiplicities ``w (B, N)``, over the pairs of positions holding different
    original rows; (B,).

    With m = Σ_r w_r x_r (likewise m_y): tr(K̃L̃) = ‖XᵀWY‖²_F − Σ_r w_r² ‖x_r‖² ‖y_r‖²,
    1ᵀK̃1 = ‖m‖² − Σ_r w_r² ‖x_r‖², 1ᵀK̃L̃1 = Σ_r w_r (x_rᵀm − w_r‖x_r‖²)(y_rᵀm_y − w_r‖y_r‖²).
    """
    sq_x, sq_y = np.sum(x**2, 1), np.sum(y**2, 1)
    m_x, m_y = w @ x, w @ y  # (B, d)
    inner = np.sum(weighted_cross(x, y, w) ** 2, axis=(1, 2)) - (w**2) @ (sq_x * sq_y)
    rows = np.sum(w * (m_x @ x.T - w * sq_x) * (m_y @ y.T - w * sq_y), axis=1)
    sum_k, sum_l = np.sum(m_x**2, 1) - (w**2) @ sq_x, np.sum(m_y**2, 1) - (w**2) @ sq_y
    return masked_gram_hsic(inner, rows, sum_k, sum_l, w.sum(axis=1), True)


def debiased_weighted_cka(x, y, weights):
    """Debiased linear CKA over rows of the resample in which row r appears ``weights[r]`` times
    (tie-corrected); ``weights (N,)`` -> float, ``(B, N)`` -> (B,)."""
    return weighted_cka(debiased_weighted_hsic, x, y, weights)


def copies_cka(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Biased linear CKA (B,) of each resample ``w (B, N)`` with its copies as rows (no tie correction):
    ‖C_xy‖²_F / (‖C_xx‖_F ‖C_yy‖_F), C_xy = Σ_r w_r (x_r − x̄)(y_r − ȳ)ᵀ."""
    cross = lambda a, b: np.sum(weighted_covariance(a, b, w) ** 2, axis=(1, 2))
    return cross(x, y) / np.sqrt(cross(x, x) * cross(y, y))


def hierarchical_draws(draws: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The hierarchical bootstrap's draws (R, ...) from per-seed draws (K, R, ...): draw r averages K seeds
    drawn with replacement, each with its utterance draw r."""
    draws = np.asarray(draws, dtype=np.float64)
    k, r = draws.shape[:2]
    picks = bootstrap_draws(np.random.default_rng(seed), k, r)  # (R, K)
    return draws[picks, np.arange(r)[:, None]].mean(axis=1)
