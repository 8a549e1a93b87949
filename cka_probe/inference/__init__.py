"""Statistical inference over resampled utterances, for CKA and CER alike.

* :mod:`~cka_probe.inference.resampling`: the seeded draws of whole groups
  (utterances) behind every bootstrap and permutation of the package
* :mod:`~cka_probe.inference.bootstrap`: ``bootstrap_ci`` and ``permutation_test``
  (whole groups resampled, never frames)
* :mod:`~cka_probe.inference.resample_measures`: ``ResampledMeasure``, any
  registered measure's estimate, bootstrap and permutation grids over given
  row resamples (the cross-task tables' statistics)
* :mod:`~cka_probe.inference.intervals`: percentile, basic, BCa and Student-t
  intervals, bootstrap and permutation p-values
* :mod:`~cka_probe.inference.seeds`: pooling training seeds
* :mod:`~cka_probe.inference.effects`: one effect's per-seed and pooled rows
* :mod:`~cka_probe.inference.adjust`: multiple testing (Benjamini–Hochberg)
* :mod:`~cka_probe.inference.simulate`, :mod:`~cka_probe.inference.cer_regime`:
  the coverage simulators of ``benchmarks/bench_coverage.py`` and the tests
* :mod:`~cka_probe.inference.baselines`: the methods those coverage tables
  compare against, not used by the analysis
"""

from cka_probe.inference.bootstrap import Interval, PermutationResult, bootstrap_ci, permutation_test

__all__ = ["Interval", "PermutationResult", "bootstrap_ci", "permutation_test"]
