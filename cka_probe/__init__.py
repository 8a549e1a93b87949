"""cka-probe: layer-by-layer CKA analysis of single- and dual-output L2 ASR models.

The public API re-exported here is the contract that notebooks and the CLI use::

    from cka_probe import linear_cka, kernel_cka, cka_matrix, ActivationStore, extract
"""

__version__ = "0.1.0"
