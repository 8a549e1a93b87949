"""Independent float64 numpy/scipy implementations of CCA, SVCCA, PWCCA, Procrustes and RSA, from the papers.

Written from the formulas, not from the engine: CCA through QR bases of the
centred data (Björck & Golub 1973), ridge CCA through scipy's matrix power,
SVCCA through the projection onto the top right singular vectors, PWCCA with
explicit canonical variates, Procrustes through scipy's orthogonal_procrustes,
RSA through scipy's pdist and spearmanr / pearsonr.
"""

import numpy as np
from scipy.linalg import fractional_matrix_power, orthogonal_procrustes
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr


def _centred(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(0)


def canonical(x, y):
    """(rho, variates of x (n, k), variates of y (n, k)), k = min(dx, dy): SVD of Q_x^T Q_y."""
    qx, _ = np.linalg.qr(_centred(x))
    qy, _ = np.linalg.qr(_centred(y))
    u, rho, vt = np.linalg.svd(qx.T @ qy, full_matrices=False)
    return rho, qx @ u, qy @ vt.T


def mean_cca(x, y, ridge=0.0):
    if ridge == 0:
        return canonical(x, y)[0].mean()
    x, y = _centred(x), _centred(y)

    def inv_root(a):
        c = a.T @ a
        return fractional_matrix_power(c + ridge * np.diag(np.diag(c)), -0.5)

    return np.linalg.svd(inv_root(x) @ x.T @ y @ inv_root(y), compute_uv=False).mean()


def svcca(x, y, keep=0.99):
    def reduce(a):
        a = _centred(a)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        k = np.searchsorted(np.cumsum(s**2) / np.sum(s**2), keep) + 1
        return a @ vt[:k].T

    return mean_cca(reduce(x), reduce(y))


def pwcca(x, y):
    """Morcos et al. 2018: alpha_i ~ sum_j |<h_i, z_j>|, from the side with fewer neurons."""
    rho, hx, hy = canonical(x, y)
    side, h = (x, hx) if x.shape[1] <= y.shape[1] else (y, hy)
    z = _centred(side)
    weights = np.array(
        [
            sum(abs(h[:, i] @ z[:, j]) for j in range(z.shape[1])) / np.linalg.norm(h[:, i])
            for i in range(h.shape[1])
        ]
    )
    return np.sum(weights / weights.sum() * rho)


def _shape(a, width):
    a = _centred(a)
    a = a / np.linalg.norm(a)
    return np.hstack([a, np.zeros((len(a), width - a.shape[1]))])


def procrustes(x, y):
    """(squared Procrustes distance, angle) of centred unit-norm shapes, zero-padded to one width."""
    width = max(x.shape[1], y.shape[1])
    a, b = _shape(x, width), _shape(y, width)
    rotation, _ = orthogonal_procrustes(b, a)  # argmin ||b R - a||
    aligned = b @ rotation
    return np.sum((a - aligned) ** 2), np.arccos(min(1.0, np.sum(a * aligned)))


def rsa(x, y, rdm="correlation", compare="spearman"):
    dx, dy = pdist(np.asarray(x, np.float64), rdm), pdist(np.asarray(y, np.float64), rdm)
    return (spearmanr if compare == "spearman" else pearsonr)(dx, dy)[0]
