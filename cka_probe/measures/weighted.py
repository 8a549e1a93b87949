"""Linear CKA of a bootstrap resample given as row multiplicities, with copy pairs left out (feature space).

A resample that draws original row r ``w_r`` times (Σ w_r = n positions) is
the data set of n rows in which row r appears w_r times. As in
:mod:`cka_probe.measures.gram_resample`, pairs of *distinct positions holding the same
original row* ("copy pairs") are left out of every HSIC sum, so that copies do
not count as the "self" pairs that bias the estimators (the tie correction);
with all w_r = 1 the result is the usual estimator. Written in feature space,
so an (n, n) Gram matrix is never formed (frames of many utterances):

* biased, with x̄ = Σ w_r x_r / n and centred rows x_r − x̄ (likewise y):
  Σ_ij keep_ij K_ij L_ij = ‖X_cᵀ W Y_c‖²_F − Σ_r (w_r² − w_r) ‖x_r − x̄‖² ‖y_r − ȳ‖²
* debiased (Song et al. 2012, Eq. 5, over the pairs of different original rows), with m = Σ w_r x_r:
  tr(K̃L̃) = ‖Xᵀ W Y‖²_F − Σ_r w_r² ‖x_r‖² ‖y_r‖²,  1ᵀK̃1 = ‖m‖² − Σ_r w_r² ‖x_r‖²,
  1ᵀK̃L̃1 = Σ_r w_r (x_rᵀm − w_r‖x_r‖²)(y_rᵀm_y − w_r‖y_r‖²)

Everything is float64; ``x (N, dx)``, ``y (N, dy)``, ``weights (N,)`` non-negative integers. The
rows are first centred on the mean of the original rows: CKA is translation invariant, but a sum that
leaves copy pairs out of uncentred products is not, and a large mean offset would otherwise pull every
resample's debiased value far from the estimate.
"""

from __future__ import annotations

import numpy as np

from cka_probe.measures.gram_resample import masked_gram_hsic


def _weighted_cross(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Xᵀ diag(w_b) Y for each resample b: (B, d_x, d_y), as one batched matrix product."""
    return np.swapaxes(w[:, :, None] * x, 1, 2) @ y


def _biased_terms(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_ij keep_ij (HKH)_ij (HLH)_ij of each resample (positions i, j); ``w (B, N)`` -> (B,).

    Uses Σ_r w_r (x_r − x̄)(y_r − ȳ)ᵀ = Xᵀ W Y − n x̄ ȳᵀ and ‖x_r − x̄‖² = ‖x_r‖² − 2 x_rᵀx̄ + ‖x̄‖².
    """
    n = w.sum(axis=1)
    mean_x, mean_y = w @ x / n[:, None], w @ y / n[:, None]  # (B, d)
    cov = _weighted_cross(x, y, w) - n[:, None, None] * mean_x[:, :, None] * mean_y[:, None, :]
    sq_x = np.sum(x**2, 1) - 2 * mean_x @ x.T + np.sum(mean_x**2, 1)[:, None]  # (B, N)
    sq_y = np.sum(y**2, 1) - 2 * mean_y @ y.T + np.sum(mean_y**2, 1)[:, None]
    return np.sum(cov**2, axis=(1, 2)) - np.sum((w**2 - w) * sq_x * sq_y, axis=1)


def _debiased_terms(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """tr(K̃L̃), 1ᵀK̃L̃1, 1ᵀK̃1, 1ᵀL̃1 over the pairs of positions holding different original rows, each
    (B,)."""
    sq_x, sq_y = np.sum(x**2, 1), np.sum(y**2, 1)
    m_x, m_y = w @ x, w @ y  # (B, d)
    inner = np.sum(_weighted_cross(x, y, w) ** 2, axis=(1, 2)) - (w**2) @ (sq_x * sq_y)
    rows = np.sum(w * (m_x @ x.T - w * sq_x) * (m_y @ y.T - w * sq_y), axis=1)
    return inner, rows, np.sum(m_x**2, 1) - (w**2) @ sq_x, np.sum(m_y**2, 1) - (w**2) @ sq_y


def weighted_hsic(x: np.ndarray, y: np.ndarray, w: np.ndarray, *, debiased: bool) -> np.ndarray:
    """HSIC of each resample with multiplicities ``w (B, N)``, copy pairs left out; (B,)."""
    n = w.sum(axis=1)
    if not debiased:
        return masked_gram_hsic(_biased_terms(x, y, w), 0.0, 0.0, 0.0, n, False)
    inner, rows, sum_k, sum_l = _debiased_terms(x, y, w)
    return masked_gram_hsic(inner, rows, sum_k, sum_l, n, True)


def weighted_linear_cka(x, y, weights, *, debiased: bool = False):
    """Linear CKA of the resample in which row r of ``x`` and ``y`` appears ``weights[r]`` times
    (tie-corrected).

    ``weights (N,)`` gives a float, ``weights (B, N)`` the (B,) values of B resamples at once
    (memory B·(d_x·d_y + 2N) floats); NaN where a side has no variance in the resample.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    # centred on the original rows: CKA is unchanged, and the debiased terms, which leave copy pairs out
    # of sums of uncentred products, then do not move with the data's mean offset
    x, y = x - x.mean(0), y - y.mean(0)
    w = np.asarray(weights, dtype=np.float64)
    batch = np.atleast_2d(w)
    norm = np.sqrt(
        np.clip(weighted_hsic(x, x, batch, debiased=debiased), 0, None)
        * np.clip(weighted_hsic(y, y, batch, debiased=debiased), 0, None)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        cka = np.where(norm > 0, weighted_hsic(x, y, batch, debiased=debiased) / norm, np.nan)
    return float(cka[0]) if w.ndim == 1 else cka
