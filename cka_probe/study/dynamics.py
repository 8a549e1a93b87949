"""The encoder lean over training: CKA(DO, SSO) − CKA(DO, MSO) per layer at each saved epoch.

Models trained with ``save_every=E`` (:func:`cka_probe.asr.train.train`) keep
their weights at epoch 0 and after every E-th epoch. With the stores of SSO,
MSO and DO extracted at each such epoch e, the lean at encoder layer i is

    lean_i(e) = CKA(DO_e, SSO_e)_i − CKA(DO_e, MSO_e)_i,

each model at its own epoch e, from the comparison set of
:func:`cka_probe.study.cross_task.cross_task_by_language` (debiased linear
CKA on per-utterance means, the same bootstrap over utterances and interval as
``encoder_entanglement.csv``, :func:`cka_probe.study.summary.encoder_entanglement`).
At epoch 0 the models are untrained and their lean is what the initialisations
alone give; a lean that grows over the epochs is one that training builds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.study.cross_task import cross_task_by_language
from cka_probe.study.schema import DYNAMICS_EPOCH, pooled
from cka_probe.study.summary import encoder_entanglement


def dynamics_table(
    stores: Mapping[int, Sequence[str | Path]], *, n_boot: int, n_perm: int, seed: int
) -> pd.DataFrame:
    """``stores[epoch]`` (the SSO, MSO and DO stores of that epoch) -> the pooled ``encoder_entanglement``
    rows of each epoch with its ``epoch`` first, by epoch."""
    if not stores:
        raise CKAProbeError("the lean over training needs the stores of at least one saved epoch")
    frames = [
        pooled(
            encoder_entanglement(
                cross_task_by_language(stores[epoch], n_boot=n_boot, n_perm=n_perm, seed=seed)
            )
        ).assign(**{DYNAMICS_EPOCH: epoch})
        for epoch in sorted(stores)
    ]
    table = pd.concat(frames, ignore_index=True)
    return table[[DYNAMICS_EPOCH, *(c for c in table.columns if c != DYNAMICS_EPOCH)]]
