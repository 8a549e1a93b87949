"""cka-probe: layer-by-layer representation analysis of single- and dual-output L2 speech recognisers.

The public API re-exported here is the contract that notebooks and the CLI use::

    from cka_probe import linear_cka, kernel_cka, cka_matrix, similarity_matrix, ActivationStore, extract

``extract`` is :func:`~cka_probe.extract.activations.extract_activations`; the
package of the same name is imported as ``from cka_probe.extract.models import ...``.
The layout, and what each package may import, is in ``docs/design.md``.
"""

from cka_probe import _moved
from cka_probe._version import __version__
from cka_probe.extract import extract_activations
from cka_probe.inference import Interval, PermutationResult, bootstrap_ci, permutation_test
from cka_probe.measures import (
    MinibatchCKA,
    StreamingLinearCKA,
    cka_matrix,
    kernel_cka,
    linear_cka,
    nystrom_cka_matrix,
    similarity,
    similarity_matrix,
)
from cka_probe.store import ActivationStore, align_ids

extract = extract_activations
"""``from cka_probe import extract``: the function :func:`extract_activations`."""

_moved.install()

__all__ = [
    "__version__",
    "ActivationStore",
    "Interval",
    "MinibatchCKA",
    "PermutationResult",
    "StreamingLinearCKA",
    "align_ids",
    "bootstrap_ci",
    "cka_matrix",
    "extract",
    "extract_activations",
    "kernel_cka",
    "linear_cka",
    "nystrom_cka_matrix",
    "permutation_test",
    "similarity",
    "similarity_matrix",
]
