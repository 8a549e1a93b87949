"""Probes of said versus meant: what a layer's word representations tell of the surface and the meaning word.

* :mod:`~cka_probe.probe.forms`: the description of a word's form (standardised bag of character n-grams)
* :mod:`~cka_probe.probe.word_table`: the words of a store, from its word-span sidecar and manifest
* :mod:`~cka_probe.probe.groups`: cross-validation folds grouped by utterance and by sentence
* :mod:`~cka_probe.probe.forced_choice`: the forced-choice surface-preference probe
* :mod:`~cka_probe.probe.decode`: decodability of the surface and the meaning word, with control tasks
* :mod:`~cka_probe.probe.intervals`: grouped bootstrap intervals, seed pooling, differences between models
* :mod:`~cka_probe.probe.nested`: a probe fitted with its regulariser chosen by inner grouped CV
* :mod:`~cka_probe.probe.run`: ``probe_store``, every probe of every layer of one store
* :mod:`~cka_probe.probe.simulate`: word representations with a planted surface preference

See ``docs/probes.md`` for the definitions.
"""

from cka_probe.probe.intervals import probe_differences, summarise
from cka_probe.probe.run import probe_outcomes, probe_store

__all__ = ["probe_differences", "probe_outcomes", "probe_store", "summarise"]
