"""Extraction: forward hooks on any ``nn.Module`` -> the HDF5 activation store.

:func:`extract_activations` (alias ``extract``) is generic: glob layer
selection, output selector, valid lengths, ``name@k`` for repeated calls.
``cka_probe.extract.models.extract_model`` applies it to any model through
its adapter (a bundled ``.pt``, a Hugging Face folder, ``FILE.py:FUNCTION``);
``cka_probe.extract.distributed`` shards it over ``torchrun`` ranks;
``cka_probe.extract.word_spans`` writes the word spans of a store from a CTC
forced alignment.
"""

from cka_probe.extract.activations import default_forward, extract_activations, valid_rows
from cka_probe.extract.hooks import LayerCapture, first_tensor, glob_regex, select_modules

extract = extract_activations
"""The name of :func:`extract_activations` in ``from cka_probe import extract``."""

__all__ = [
    "LayerCapture",
    "default_forward",
    "extract",
    "extract_activations",
    "first_tensor",
    "glob_regex",
    "select_modules",
    "valid_rows",
]
