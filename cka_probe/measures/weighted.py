"""Biased linear CKA of a bootstrap resample given as row multiplicities, copy pairs left out (feature space).

A resample that draws original row r ``w_r`` times (Σ w_r = n positions) is
the data set of n rows in which row r appears w_r times. As in
:mod:`cka_probe.measures.gram_resample`, pairs of *distinct positions holding the same
original row* ("copy pairs") are left out of every HSIC sum, so that copies do
not count as the "self" pairs that bias the estimator (the tie correction);
with all w_r = 1 the result is the usual biased estimator (Kornblith et al.
2019, Eq. 2–4). Written in feature space, so an (n, n) Gram matrix is never
formed (frames of many utterances), with x̄ = Σ w_r x_r / n and centred rows
x_r − x̄ (likewise y):

  Σ_ij keep_ij K_ij L_ij = ‖X_cᵀ W Y_c‖²_F − Σ_r (w_r² − w_r) ‖x_r − x̄‖² ‖y_r − ȳ‖²

:func:`cka_probe.inference.bootstrap.bootstrap_ci` evaluates its ``debiased=False``
resamples with it. Everything is float64; ``x (N, dx)``, ``y (N, dy)``,
``weights (N,)`` non-negative integers. The rows are first centred on the mean
of the original rows (CKA is translation invariant; an estimator that leaves
copy pairs out of sums of uncentred products is not, so :func:`weighted_cka`
centres for any HSIC it is given).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cka_probe.measures._tensor import unit_scaled_array
from cka_probe.measures.gram_resample import masked_gram_hsic

WeightedHSIC = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def weighted_cross(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Xᵀ diag(w_b) Y for each resample b of ``w (B, N)``: (B, d_x, d_y), as one batched matrix product."""
    return np.swapaxes(w[:, :, None] * x, 1, 2) @ y


def weighted_means(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x̄ = Σ_r w_r x_r / Σ_r w_r of each resample of ``w (B, N)``: (B, d)."""
    return w @ x / w.sum(axis=1)[:, None]


def weighted_covariance(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_r w_r (x_r − x̄)(y_r − ȳ)ᵀ = Xᵀ W Y − n x̄ ȳᵀ of each resample of ``w (B, N)``: (B, d_x, d_y)."""
    n = w.sum(axis=1)
    mean_x, mean_y = weighted_means(x, w), weighted_means(y, w)
    return weighted_cross(x, y, w) - n[:, None, None] * mean_x[:, :, None] * mean_y[:, None, :]


def weighted_hsic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Biased HSIC of each resample with multiplicities ``w (B, N)``, copy pairs left out; (B,).

    Σ_ij keep_ij (HKH)_ij (HLH)_ij, with ‖x_r − x̄‖² = ‖x_r‖² − 2 x_rᵀx̄ + ‖x̄‖².
    """
    mean_x, mean_y = weighted_means(x, w), weighted_means(y, w)  # (B, d)
    sq_x = np.sum(x**2, 1) - 2 * mean_x @ x.T + np.sum(mean_x**2, 1)[:, None]  # (B, N)
    sq_y = np.sum(y**2, 1) - 2 * mean_y @ y.T + np.sum(mean_y**2, 1)[:, None]
    kept = np.sum(weighted_covariance(x, y, w) ** 2, axis=(1, 2)) - np.sum((w**2 - w) * sq_x * sq_y, axis=1)
    return masked_gram_hsic(kept, 0.0, 0.0, 0.0, w.sum(axis=1), False)


def weighted_cka(hsic: WeightedHSIC, x, y, weights):
    """CKA = HSIC(x, y) / √(HSIC(x, x) HSIC(y, y)) of resamples given as row multiplicities, for the HSIC
    estimator ``hsic(x, y, w (B, N)) -> (B,)``, on rows unit-scaled (``_tensor.unit_scaled``) and centred on
    the original rows' mean.

    ``weights (N,)`` gives a float, ``weights (B, N)`` the (B,) values of B resamples at once;
    NaN where a side has no variance in the resample.
    """
    x, y = unit_scaled_array(x), unit_scaled_array(y)  # exact; no product overflows at any scale
    x, y = x - x.mean(0), y - y.mean(0)
    w = np.asarray(weights, dtype=np.float64)
    batch = np.atleast_2d(w)
    norm = np.sqrt(np.clip(hsic(x, x, batch), 0, None) * np.clip(hsic(y, y, batch), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        cka = np.where(norm > 0, hsic(x, y, batch) / norm, np.nan)
    return float(cka[0]) if w.ndim == 1 else cka


def weighted_linear_cka(x, y, weights):
    """Biased linear CKA of the resample in which row r of ``x`` and ``y`` appears ``weights[r]`` times
    (tie-corrected); ``weights (N,)`` -> float, ``(B, N)`` -> (B,) (memory B·(d_x·d_y + 2N) floats)."""
    return weighted_cka(weighted_hsic, x, y, weights)
