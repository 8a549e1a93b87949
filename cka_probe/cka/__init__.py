"""The CKA engine: kernels, HSIC estimators, CKA and layer-by-layer matrices,
and beside CKA the CCA family, Procrustes and RSA (``similarity_matrix``).

Pure math on tensors (numpy arrays or torch tensors in, float64 numbers out);
no files, no models. See ``docs/engine.md`` for formulas and the dtype policy.
"""

from cka_probe.cka.kernels import linear_kernel, polynomial_kernel, rbf_kernel
from cka_probe.cka.matrix import cka_matrix
from cka_probe.cka.minibatch import MinibatchCKA
from cka_probe.cka.nystrom import nystrom_cka_matrix
from cka_probe.cka.pair import kernel_cka, linear_cka
from cka_probe.cka.similarity import MEASURES, similarity, similarity_matrix
from cka_probe.cka.stats import Interval, PermutationResult, bootstrap_ci, permutation_test
from cka_probe.cka.streaming import StreamingLinearCKA

__all__ = [
    "MEASURES",
    "Interval",
    "MinibatchCKA",
    "PermutationResult",
    "StreamingLinearCKA",
    "bootstrap_ci",
    "cka_matrix",
    "kernel_cka",
    "linear_cka",
    "linear_kernel",
    "nystrom_cka_matrix",
    "permutation_test",
    "polynomial_kernel",
    "rbf_kernel",
    "similarity",
    "similarity_matrix",
]
