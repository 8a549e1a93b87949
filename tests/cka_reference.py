"""An independent float64 numpy implementation of CKA, written from the formulas.

In Gram space: centre the Gram (H K H, Gretton et al. 2005) or U-centre it
(Song et al. 2012; the form in Kornblith et al.'s reference code), then
CKA = <K', L'> / (||K'|| ||L'||) (Kornblith et al. 2019, Eq. 4). Linear CKA
also in feature space (:func:`feature_space_cka`, Eq. 5).
"""

import numpy as np


def linear_gram(x):
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T


def rbf_gram(x, frac):
    x = np.asarray(x, dtype=np.float64)
    sq = np.sum(x * x, 1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    return np.exp(-dist / (2 * frac**2 * np.median(dist)))


def centre(gram, unbiased):
    n = gram.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return h @ gram @ h
    k = gram.copy()
    np.fill_diagonal(k, 0)
    row = k.sum(0) / (n - 2)
    row -= row.sum() / (2 * (n - 1))
    k = k - row[:, None] - row[None, :]
    np.fill_diagonal(k, 0)
    return k


def hsic(k, l, unbiased):
    """Biased: tr(KHLH)/(n-1)^2; unbiased: Song et al. 2012 Eq. 5, written out term by term."""
    n = k.shape[0]
    if not unbiased:
        return np.sum(centre(k, False) * centre(l, False)) / (n - 1) ** 2
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2 / (n - 2) * (one @ kt @ lt @ one)
    )
    return value / (n * (n - 3))


def cka(k, l, unbiased=False):
    kc, lc = centre(k, unbiased), centre(l, unbiased)
    return np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc))


def feature_space_cka(x, y):
    """Linear CKA in feature space (Kornblith et al. 2019, Eq. 5): ||YᵀX||²_F / (||XᵀX||_F ||YᵀY||_F) with
    centred columns."""
    x, y = x - x.mean(0), y - y.mean(0)
    return np.sum((y.T @ x) ** 2) / np.sqrt(np.sum((x.T @ x) ** 2) * np.sum((y.T @ y) ** 2))
