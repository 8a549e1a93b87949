"""Linear CKA of a bootstrap resample given as row multiplicities, with copy pairs left out (feature space).

A resample that draws original row r ``w_r`` times (Σ w_r = n positions) is
the data set of n rows in which row r appears w_r times. As in
:mod:`cka_probe.cka.resample`, pairs of *distinct positions holding the same
original row* ("copy pairs") are left out of every HSIC sum, so that copies do
not count as the "self" pairs that bias the estimators (the tie correction);
with all w_r = 1 the result is the usual estimator. Written in feature space,
so an (n, n) Gram matrix is never formed (frames of many utterances):

* biased, with x̄ = Σ w_r x_r / n and centred rows x_r − x̄ (likewise y):
  Σ_ij keep_ij K_ij L_ij = ‖X_cᵀ W Y_c‖²_F − Σ_r (w_r² − w_r) ‖x_r − x̄‖² ‖y_r − ȳ‖²
* debiased (Song et al. 2012, Eq. 5, over the pairs of different original rows), with m = Σ w_r x_r:
  tr(K̃L̃) = ‖Xᵀ W Y‖²_F − Σ_r w_r² ‖x_r‖² ‖y_r‖²,  1ᵀK̃1 = ‖m‖² − Σ_r w_r² ‖x_r‖²,
  1ᵀK̃L̃1 = Σ_r w_r (x_rᵀm − w_r‖x_r‖²)(y_rᵀm_y − w_r‖y_r‖²)

Everything is float64; ``x (N, dx)``, ``y (N, dy)``, ``weights (N,)`` non-negative integers.
"""

from __future__ import annotations

import numpy as np

from cka_probe.cka.resample import masked_gram_hsic


def _biased_terms(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Σ_ij keep_ij (HKH)_ij (HLH)_ij of the resample (positions i, j)."""
    n = w.sum()
    xc, yc = x - w @ x / n, y - w @ y / n
    cross = np.sum((xc.T @ (w[:, None] * yc)) ** 2)
    return float(cross - np.sum((w**2 - w) * np.sum(xc**2, 1) * np.sum(yc**2, 1)))


def _debiased_terms(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float, float]:
    """tr(K̃L̃), 1ᵀK̃L̃1, 1ᵀK̃1, 1ᵀL̃1 over the pairs of positions holding different original rows."""
    sq_x, sq_y = np.sum(x**2, 1), np.sum(y**2, 1)
    m_x, m_y = w @ x, w @ y
    inner = np.sum((x.T @ (w[:, None] * y)) ** 2) - np.sum(w**2 * sq_x * sq_y)
    rows = np.sum(w * (x @ m_x - w * sq_x) * (y @ m_y - w * sq_y))
    return float(inner), float(rows), float(m_x @ m_x - np.sum(w**2 * sq_x)), float(m_y @ m_y - np.sum(w**2 * sq_y))


def weighted_hsic(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, debiased: bool) -> float:
    """HSIC of the resample with multiplicities ``w``, copy pairs left out."""
    n = int(w.sum())
    if not debiased:
        return float(masked_gram_hsic(_biased_terms(x, y, w), 0.0, 0.0, 0.0, n, False))
    inner, rows, sum_k, sum_l = _debiased_terms(x, y, w)
    return float(masked_gram_hsic(inner, rows, sum_k, sum_l, n, True))


def weighted_linear_cka(x, y, weights, *, debiased: bool = False) -> float:
    """Linear CKA of the resample in which row r of ``x`` and ``y`` appears ``weights[r]`` times (tie-corrected).

    NaN where a side has no variance in the resample.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    norm = np.sqrt(max(weighted_hsic(x, x, w, debiased=debiased), 0.0) * max(weighted_hsic(y, y, w, debiased=debiased), 0.0))
    return weighted_hsic(x, y, w, debiased=debiased) / norm if norm > 0 else float("nan")
