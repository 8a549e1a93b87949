"""Similarity measures: kernels, HSIC estimators, linear and kernel CKA, layer-by-layer matrices,
streaming, minibatch and Nyström CKA, and beside CKA the CCA family, Procrustes and RSA.

Pure math on tensors (numpy arrays or torch tensors in, float64 numbers out);
no files, no models, no resampling (that is :mod:`cka_probe.inference`). See
``docs/engine.md`` for the formulas and the dtype policy.
"""

from cka_probe.measures.kernels import linear_kernel, polynomial_kernel, rbf_kernel
from cka_probe.measures.matrix import cka_matrix
from cka_probe.measures.minibatch import MinibatchCKA
from cka_probe.measures.nystrom import nystrom_cka_matrix
from cka_probe.measures.pair import kernel_cka, linear_cka
from cka_probe.measures.similarity import MEASURES, similarity, similarity_matrix
from cka_probe.measures.streaming import StreamingLinearCKA

__all__ = [
    "MEASURES",
    "MinibatchCKA",
    "StreamingLinearCKA",
    "cka_matrix",
    "kernel_cka",
    "linear_cka",
    "linear_kernel",
    "nystrom_cka_matrix",
    "polynomial_kernel",
    "rbf_kernel",
    "similarity",
    "similarity_matrix",
]
