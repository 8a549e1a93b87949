"""Extraction: forward hooks on any ``nn.Module`` -> the HDF5 activation store.

``extract`` is generic (glob layer selection, output selector, valid lengths,
``name@k`` for repeated calls); ``cka_probe.extract.asr.extract_checkpoint``
applies it to the bundled checkpoints; ``cka_probe.extract.distributed``
shards it over ``torchrun`` ranks.
"""

from cka_probe.extract.extract import default_forward, extract, valid_rows
from cka_probe.extract.hooks import LayerCapture, first_tensor, glob_regex, select_modules

__all__ = ["extract", "default_forward", "valid_rows", "LayerCapture", "first_tensor", "glob_regex",
           "select_modules"]
