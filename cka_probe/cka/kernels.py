"""Kernels as cross-Gram functions ``k(a (b, d), c (m, d)) -> (b, m)``.

A cross-Gram function lets the engine build any Gram matrix one block of rows
at a time. Built in:

* ``"linear"``: k(x, x') = x^T x'.
* ``"rbf"``: k(x, x') = exp(-||x - x'||^2 / (2 s^2)) with the bandwidth of
  Kornblith et al.'s reference code, s^2 = sigma^2 * median of all n^2 squared
  pairwise distances of that layer (the zero diagonal included).
* ``"poly"``: k(x, x') = (x^T x' / d + 1)^3 (scikit-learn's defaults).
* any callable ``k(a, c) -> (len(a), len(c))`` tensor, used as given.

Linear and RBF kernels are translation invariant, so the engine centres their
inputs in float64 before the working-dtype products (large mean offsets then
cost no precision); polynomial and user kernels see the inputs as given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cka_probe.errors import CKAProbeError

CrossGram = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_kernel(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Linear cross-Gram ``a c^T``: ``(b, d), (m, d) -> (b, m)``."""
    return a @ c.T


def squared_distances(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||a_i - c_j||^2 ``(b, m)`` as ||a_i||^2 + ||c_j||^2 - 2 a_i^T c_j, rounding below 0 set to 0."""
    sq_a = (a * a).sum(1)
    sq_c = (c * c).sum(1)
    return (sq_a[:, None] + sq_c[None, :] - 2 * (a @ c.T)).clamp_min_(0)


def rbf_kernel(a: torch.Tensor, c: torch.Tensor, sq_sigma: float) -> torch.Tensor:
    """Gaussian cross-Gram exp(-||a_i - c_j||^2 / (2 sq_sigma)) ``(b, m)``."""
    return torch.exp(squared_distances(a, c) / (-2 * sq_sigma))


def polynomial_kernel(a: torch.Tensor, c: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """Polynomial cross-Gram (a c^T / d + coef0)^degree ``(b, m)``."""
    return (a @ c.T / a.shape[1] + coef0) ** degree


def zero_kernel(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The all-zero cross-Gram ``(b, m)``: an RBF kernel whose bandwidth is 0 carries no information."""
    return a.new_zeros(a.shape[0], c.shape[0])


def median_squared_distance(x: torch.Tensor) -> float:
    """Median of all n^2 squared distances of ``x (n, d)``, as ``numpy.median`` (mean of the two middle values)."""
    flat = squared_distances(x, x).flatten()
    count = flat.numel()
    upper = flat.kthvalue(count // 2 + 1).values
    if count % 2:
        return float(upper)
    return float((flat.kthvalue(count // 2).values.double() + upper.double()) / 2)


@dataclass(frozen=True)
class Kernel:
    """A resolved kernel: its name, its cross-Gram for one layer, and whether inputs are centred first."""

    name: str
    sigma: float | None
    centre: bool
    user: CrossGram | None = None

    def for_layer(self, x: torch.Tensor) -> tuple[CrossGram, float | None]:
        """The cross-Gram function for the layer ``x (n, d)`` and its RBF bandwidth s^2 (None otherwise)."""
        if self.name == "linear":
            return linear_kernel, None
        if self.name == "poly":
            return polynomial_kernel, None
        if self.name == "rbf":
            sq_sigma = self.sigma**2 * median_squared_distance(x)
            if sq_sigma <= 0:
                return zero_kernel, 0.0
            return (lambda a, c: rbf_kernel(a, c, sq_sigma)), sq_sigma
        return self.user, None


def resolve_kernel(kernel: str | CrossGram, sigma: float) -> Kernel:
    """Validate the ``kernel``/``sigma`` arguments of the public functions."""
    if callable(kernel):
        return Kernel(getattr(kernel, "__name__", "callable"), None, False, kernel)
    if kernel not in ("linear", "rbf", "poly"):
        raise CKAProbeError(f"kernel must be 'linear', 'rbf', 'poly' or a callable, got {kernel!r}")
    if kernel == "rbf" and not sigma > 0:
        raise CKAProbeError(f"sigma must be positive for the rbf kernel, got {sigma!r}")
    return Kernel(kernel, sigma if kernel == "rbf" else None, kernel in ("linear", "rbf"))
