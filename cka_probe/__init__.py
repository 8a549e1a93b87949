"""cka-probe: layer-by-layer CKA analysis of single- and dual-output L2 ASR models.

The public API re-exported here is the contract that notebooks and the CLI use::

    from cka_probe import linear_cka, kernel_cka, cka_matrix, ActivationStore, extract

``extract`` is both the extraction package and, called, its function
``cka_probe.extract.extract.extract`` (see ``cka_probe/extract/__init__.py``).
"""

__version__ = "0.1.0"

from cka_probe.cka import (  # noqa: E402
    MinibatchCKA,
    StreamingLinearCKA,
    bootstrap_ci,
    cka_matrix,
    kernel_cka,
    linear_cka,
    nystrom_cka_matrix,
    permutation_test,
    similarity,
    similarity_matrix,
)
from cka_probe.store import ActivationStore, align_ids  # noqa: E402
import cka_probe.extract as extract  # noqa: E402  (a callable package)

__all__ = [
    "__version__",
    "ActivationStore",
    "MinibatchCKA",
    "StreamingLinearCKA",
    "align_ids",
    "bootstrap_ci",
    "cka_matrix",
    "extract",
    "kernel_cka",
    "linear_cka",
    "nystrom_cka_matrix",
    "permutation_test",
    "similarity",
    "similarity_matrix",
]
