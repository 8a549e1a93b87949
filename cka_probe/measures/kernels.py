"""Kernels as cross-Gram functions ``k(a (b, d), c (m, d)) -> (b, m)``.

A cross-Gram function lets the engine build any Gram matrix one block of rows
at a time. Built in:

* ``"linear"``: k(x, x') = x^T x'.
* ``"rbf"``: k(x, x') = exp(-||x - x'||^2 / (2 s^2)) with the bandwidth of
  Kornblith et al.'s reference code, s^2 = sigma^2 * median of all n^2 squared
  pairwise distances of that layer (the zero diagonal included). With
  ``median_rows=m`` the median is taken over the m^2 distances among m rows
  drawn at random (seeded), which needs m^2 instead of n^2 values in memory.
* ``"poly"``: k(x, x') = (x^T x' / d + 1)^3 (scikit-learn's defaults).
* any callable ``k(a, c) -> (len(a), len(c))`` tensor, used as given.

Linear and RBF kernels are translation invariant, so the engine centres their
inputs in float64 before the working-dtype products (large mean offsets then
cost no precision); polynomial and user kernels see the inputs as given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from cka_probe.errors import CKAProbeError

CrossGram = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_kernel(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Linear cross-Gram ``a c^T``: ``(b, d), (m, d) -> (b, m)``."""
    return a @ c.T


def squared_distances(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||a_i - c_j||^2 ``(b, m)`` as ||a_i||^2 + ||c_j||^2 - 2 a_i^T c_j, rounding below 0 set to 0 (one GEMM,
    in place)."""
    sq_a = (a * a).sum(1)
    sq_c = (c * c).sum(1)
    return (a @ c.T).mul_(-2).add_(sq_a[:, None]).add_(sq_c[None, :]).clamp_min_(0)


def rbf_kernel(a: torch.Tensor, c: torch.Tensor, sq_sigma: float) -> torch.Tensor:
    """Gaussian cross-Gram exp(-||a_i - c_j||^2 / (2 sq_sigma)) ``(b, m)``, the exponent built in place."""
    half_a, half_c = (a * a).sum(1) / (2 * sq_sigma), (c * c).sum(1) / (2 * sq_sigma)
    exponent = (a @ c.T).mul_(1 / sq_sigma).sub_(half_a[:, None]).sub_(half_c[None, :])
    return exponent.clamp_max_(0).exp_()


def polynomial_kernel(a: torch.Tensor, c: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """Polynomial cross-Gram (a c^T / d + coef0)^degree ``(b, m)``."""
    return (a @ c.T / a.shape[1] + coef0) ** degree


def zero_kernel(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The all-zero cross-Gram ``(b, m)``: an RBF kernel whose bandwidth is 0 carries no information."""
    return a.new_zeros(a.shape[0], c.shape[0])


def median_of_distances(d: torch.Tensor) -> float:
    """``numpy.median`` of all n^2 entries of a symmetric ``d (n, n)`` >= 0 with a zero diagonal.

    Only the n(n-1)/2 entries above the diagonal are selected from: in the sorted
    n^2 values the n diagonal zeros come first, then every upper entry twice,
    so order statistic k (1-based) is 0 for k <= n, else upper value ceil((k - n) / 2).
    """
    n = d.shape[0]
    count = n * n
    wanted = [count // 2 + 1] if count % 2 else [count // 2, count // 2 + 1]
    upper_rank = [(k - n + 1) // 2 for k in wanted]  # 0 means a diagonal zero
    rows = d.cpu().numpy()
    upper = np.empty(n * (n - 1) // 2, dtype=rows.dtype)
    ends = np.cumsum(np.arange(n - 1, 0, -1))
    for i, end in enumerate(ends):
        upper[end - (n - 1 - i) : end] = rows[i, i + 1 :]
    needed = sorted({r - 1 for r in upper_rank if r > 0})
    chosen = np.partition(upper, needed) if needed else upper
    values = [float(chosen[r - 1]) if r > 0 else 0.0 for r in upper_rank]
    return sum(values) / len(values)


def median_squared_distance(x: torch.Tensor, rows: int | None = None, seed: int = 0) -> float:
    """Median of all n^2 squared distances of ``x (n, d)`` (of ``rows`` rows drawn with ``seed``, if
    given)."""
    if rows is not None and rows < x.shape[0]:
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:rows]
        x = x[pick.to(x.device)]
    return median_of_distances(squared_distances(x, x).fill_diagonal_(0))


@dataclass(frozen=True)
class Kernel:
    """A resolved kernel: its name, its cross-Gram for one layer, and whether inputs are centred first."""

    name: str
    sigma: float | None
    centre: bool
    user: CrossGram | None = None
    median_rows: int | None = None  # RBF: rows of the subsampled median (None: exact, all n^2 distances)

    @property
    def scale_free(self) -> bool:
        """True when CKA with this kernel is unchanged by scaling a layer (linear; RBF, whose bandwidth is a
        fraction of the median distance), so the engine may unit-scale the inputs."""
        return self.name in ("linear", "rbf")

    def for_layer(self, x: torch.Tensor) -> tuple[CrossGram, float | None]:
        """The cross-Gram function for the layer ``x (n, d)`` and its RBF bandwidth s^2 (None otherwise)."""
        if self.name == "rbf":
            return self.rbf(self.sigma**2 * median_squared_distance(x, self.median_rows))
        return {"linear": linear_kernel, "poly": polynomial_kernel}.get(self.name, self.user), None

    @staticmethod
    def rbf(sq_sigma: float) -> tuple[CrossGram, float]:
        """The RBF cross-Gram of bandwidth ``sq_sigma`` (the zero kernel for 0) and the bandwidth."""
        if sq_sigma <= 0:
            return zero_kernel, 0.0
        return (lambda a, c: rbf_kernel(a, c, sq_sigma)), sq_sigma


def resolve_kernel(kernel: str | CrossGram, sigma: float, median_rows: int | None = None) -> Kernel:
    """Validate the ``kernel``/``sigma``/``median_rows`` arguments of the public functions."""
    if callable(kernel):
        return Kernel(getattr(kernel, "__name__", "callable"), None, False, kernel)
    if kernel not in ("linear", "rbf", "poly"):
        raise CKAProbeError(f"kernel must be 'linear', 'rbf', 'poly' or a callable, got {kernel!r}")
    if kernel == "rbf" and not sigma > 0:
        raise CKAProbeError(f"sigma must be positive for the rbf kernel, got {sigma!r}")
    if median_rows is not None and not (kernel == "rbf" and median_rows >= 2):
        raise CKAProbeError(f"median_rows applies to the rbf kernel and must be >= 2, got {median_rows!r}")
    return Kernel(kernel, sigma if kernel == "rbf" else None, kernel in ("linear", "rbf"), None, median_rows)
