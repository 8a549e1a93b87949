"""Similarity measures: kernels, HSIC estimators, linear and kernel CKA, layer-by-layer matrices,
streaming, minibatch and Nyström CKA, and beside CKA the CCA family, Procrustes and RSA, each
registered once in :mod:`~cka_probe.measures.registry`.

Pure math on tensors (numpy arrays or torch tensors in, float64 numbers out);
no files, no models, no random draws or intervals (that is :mod:`cka_probe.inference`: the
resampled grids here take the index vectors they are given). See
``docs/engine.md`` for the formulas and the dtype policy.
"""

import warnings

from cka_probe.measures.kernels import linear_kernel, polynomial_kernel, rbf_kernel
from cka_probe.measures.matrix import cka_matrix
from cka_probe.measures.minibatch import MinibatchCKA
from cka_probe.measures.nystrom import nystrom_cka_matrix
from cka_probe.measures.pair import kernel_cka, linear_cka
from cka_probe.measures.registry import Measure, lookup, names, register, unregister
from cka_probe.measures.similarity import similarity, similarity_matrix
from cka_probe.measures.streaming import StreamingLinearCKA

__all__ = [
    "Measure",
    "MinibatchCKA",
    "StreamingLinearCKA",
    "cka_matrix",
    "kernel_cka",
    "linear_cka",
    "linear_kernel",
    "lookup",
    "nystrom_cka_matrix",
    "polynomial_kernel",
    "rbf_kernel",
    "register",
    "similarity",
    "similarity_matrix",
    "unregister",
]


def __getattr__(name: str) -> tuple[str, ...]:
    """``MEASURES``, the registered measures' names, kept for one release (use ``registry.names()``)."""
    if name != "MEASURES":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        "cka_probe.measures.MEASURES is deprecated; use cka_probe.measures.registry.names()",
        DeprecationWarning,
        stacklevel=2,
    )
    return names()
