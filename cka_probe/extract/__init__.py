"""Extraction: forward hooks on any ``nn.Module`` -> the HDF5 activation store.

``extract`` is generic (glob layer selection, output selector, valid lengths,
``name@k`` for repeated calls); ``cka_probe.extract.models.extract_model``
applies it to any model through its adapter (a bundled ``.pt``, a Hugging
Face folder, ``FILE.py:FUNCTION``); ``cka_probe.extract.distributed`` shards
it over ``torchrun`` ranks.
"""

import sys
import types
from typing import Any

from cka_probe.extract.extract import default_forward, extract, valid_rows
from cka_probe.extract.hooks import LayerCapture, first_tensor, glob_regex, select_modules

__all__ = ["extract", "default_forward", "valid_rows", "LayerCapture", "first_tensor", "glob_regex",
           "select_modules"]


class _CallableModule(types.ModuleType):
    """Lets ``from cka_probe import extract; extract(model, batches, ...)`` call the
    function although ``cka_probe.extract`` is this package: a package attribute
    named like a subpackage would otherwise shadow it (or break ``cka_probe.extract.asr``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return extract(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
