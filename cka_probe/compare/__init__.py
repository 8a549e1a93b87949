"""Comparing any two activation stores or arrays, with any measure and pooling.

* :func:`compare_stores`: layer-by-layer measure of two stores, pooled by
  utterance, frames or words
* :func:`compare_npz`: the same for two ``.npz`` files of layer arrays
* :func:`compare_words`: divergent against identical words of two stores
"""

from cka_probe.compare.npz import compare_npz
from cka_probe.compare.stores import compare_stores
from cka_probe.compare.words import compare_words

__all__ = ["compare_npz", "compare_stores", "compare_words"]
