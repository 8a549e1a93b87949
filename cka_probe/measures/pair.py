"""CKA of one pair of representations: ``linear_cka`` and ``kernel_cka``."""

from __future__ import annotations

from cka_probe.measures._frame import defined_cka
from cka_probe.measures._tensor import as_matrix, checked_layer, matmul_precision, working_dtype
from cka_probe.measures.kernels import CrossGram, resolve_kernel
from cka_probe.measures.matrix import check_rows, hsic_terms


def pair_cka(
    x, y, *, kernel: str | CrossGram, sigma: float, debiased: bool, median_rows: int | None = None
) -> float:
    """CKA of ``x (n, dx)`` and ``y (n, dy)``; raises ``CKAProbeError`` where it is undefined.

    Both are validated and unit-scaled (linear and RBF kernels) as by ``cka_matrix``.
    """
    spec = resolve_kernel(kernel, sigma, median_rows)
    tx = as_matrix(x, "x")
    ty = as_matrix(y, "y", tx.device)
    check_rows({"x": tx, "y": ty})
    tx, ty = (checked_layer(t, label, scale=spec.scale_free) for t, label in ((tx, "x"), (ty, "y")))
    work, tf32 = working_dtype(None, [tx, ty], tx.device)
    with matmul_precision(tx.device, tf32):
        terms = hsic_terms([tx], [ty], spec, unbiased=debiased, dtype=work, labels_x=["x"], labels_y=["y"])
    return float(defined_cka(terms, ["x"], ["y"])[0, 0])


def linear_cka(x, y, *, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019, Eq. 5): ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F).

    ``x (n, dx)``, ``y (n, dy)``: numpy arrays or tensors, rows = the same samples.
    ``debiased=True`` uses unbiased HSIC (Song et al. 2012; Nguyen et al. 2021),
    which may be negative. Raises ``ValueError`` (``CKAProbeError``) for
    mismatched n, fewer than 4 rows, NaN/Inf or a constant representation.
    """
    return pair_cka(x, y, kernel="linear", sigma=0.0, debiased=debiased)


def kernel_cka(
    x,
    y,
    *,
    kernel: str | CrossGram = "rbf",
    sigma: float = 0.8,
    debiased: bool = False,
    median_rows: int | None = None,
) -> float:
    """Kernel CKA (Kornblith et al. 2019, Eq. 4) with an RBF, polynomial, linear or user kernel.

    RBF: k(x, x') = exp(-||x - x'||^2 / (2 s^2)), s^2 = sigma^2 * median of the
    n^2 squared distances (each representation its own s). A callable kernel
    maps ``(a (b, d), c (m, d))`` to the cross-Gram ``(b, m)`` and must be symmetric
    (k(a, c) = k(c, a)^T). ``median_rows``: subsampled RBF median (see ``cka_matrix``).
    Errors as ``linear_cka``.
    """
    return pair_cka(x, y, kernel=kernel, sigma=sigma, debiased=debiased, median_rows=median_rows)
