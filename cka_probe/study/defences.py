"""Defences for CKA's headline cells: is a similarity carried by one direction, and does the lean hold
under another measure?

High linear CKA can be carried by each side's few highest-variance directions
(Ding et al. 2021; Cloos et al. 2024) and moved without changing function
(Davari et al. 2022). For each language, the encoder comparisons DO-SSO,
DO-MSO, SSO-MSO and, with two SSO replicates, the ceiling SSO-SSO′, at each
same-index layer pair (layer i against layer i), on the per-utterance means
that the cross-task table compares (:func:`~cka_probe.study.load.load_representations`),
:func:`defence_table` gives

* ``cka``: linear CKA (debiased by default, as the cross-task table);
* ``cka_minus_top{k}``: the same after removing each side's top-k principal
  directions (:func:`~cka_probe.measures.defences.cka_without_top_pcs`);
* ``top{k}_share``: the share of CKA's numerator ||Y_cᵀ X_c||_F² carried by the
  top-k directions of both sides (:func:`~cka_probe.measures.defences.top_direction_share`);
* ``procrustes_angle``: the angular Procrustes distance arccos ||X̂ᵀ Ŷ||_* in
  radians (Williams et al. 2021), 0 for the same shape, in which a shared
  direction counts by the product of its standard deviations, not of its
  variances as in CKA;
* ``agrees`` (DO-SSO and DO-MSO rows): whether the lean, DO's being closer to
  SSO than to MSO, has the same sign under both measures:
  sign(CKA(DO, SSO) − CKA(DO, MSO)) = sign(angle(DO, MSO) − angle(DO, SSO)).

Seeds: each value is the simple mean over the comparison's replicate pairs
(replicate k of both roles; SSO j against j + 1 for the ceiling), the pairs
and the mean of the cross-task table's pooled rows (``seed`` = ``all``), so
that ``cka`` equals that table's pooled ``value``; ``seeds`` counts the pairs,
and ``agrees`` compares the means.

How to read it: where ``top1_share`` is near 1 and ``cka_minus_top1`` lies
far below ``cka``, the similarity is carried by one direction, and a high CKA
says only that the two models share their largest axis of variation. Where
``agrees`` is False, the lean depends on the measure: report it as such, not
as a property of the models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.measures import linear_cka, similarity
from cka_probe.measures.defences import (
    PrincipalAxes,
    cka_without_top_pcs,
    principal_axes,
    top_direction_share,
)
from cka_probe.study.cross_task import (
    COMPARISONS,
    REFERENCES,
    Comparison,
    Representations,
    _pairs,
    _replicates,
)
from cka_probe.study.load import load_representations
from cka_probe.study.roles import ROLES
from cka_probe.study.schema import CEILING

DEFENDED = ("DO-SSO", "DO-MSO", "SSO-MSO", CEILING)
"""The encoder comparisons of the defence table."""

TOP_K = (1, 3)
"""The numbers of top principal directions removed and whose share is reported."""

LEAN = ("DO-SSO", "DO-MSO")
"""The lean's two comparisons, whose rows carry ``agrees``."""


Model = tuple[str, int]
"""One model of a language: its role and replicate number."""


def _cell(px: PrincipalAxes, py: PrincipalAxes, ks: Sequence[int], debiased: bool) -> dict[str, float]:
    """The defences of one layer pair from each side's principal axes. CKA and the Procrustes angle are
    computed on the principal scores U S ``(n, r)``: X_c = U S Vᵀ with orthonormal Vᵀ gives them the layer's
    Gram X_c X_cᵀ and its cross products' singular values, hence its CKA and angle, with r ≤ d columns."""
    x, y = px.scores, py.scores
    return {
        "cka": linear_cka(x, y, debiased=debiased),
        **{f"cka_minus_top{k}": cka_without_top_pcs(px, py, k, debiased=debiased) for k in ks},
        **{f"top{k}_share": top_direction_share(px, py, k) for k in ks},
        "procrustes_angle": similarity(x, y, measure="procrustes_angle"),
    }


def _axes_at(
    encoders: Mapping[Model, Mapping[str, np.ndarray]], index: int, language: str
) -> Callable[[Model], PrincipalAxes]:
    """The principal axes of a model's encoder layer ``index``, computed once, when first asked for."""

    def axes(model: Model) -> PrincipalAxes:
        (role, k), name = model, list(encoders[model])[index]
        return principal_axes(
            encoders[model][name], f"{language}/{role}{f' seed {k}' if k else ''}/encoder/{name}"
        )

    return cache(axes)


def _layer_rows(
    index: int,
    compared: Sequence[tuple[Comparison, list[tuple[Model, Model]]]],
    encoders: Mapping[Model, Mapping[str, np.ndarray]],
    language: str,
    ks: Sequence[int],
    debiased: bool,
) -> list[dict]:
    """The rows of layer ``index`` of every comparison whose models both have it, each value the mean over
    the comparison's replicate pairs; one SVD per model's layer, held for this layer only."""
    axes, rows = _axes_at(encoders, index, language), []
    for comp, pairs in compared:
        a, b = pairs[0]
        if index < min(len(encoders[a]), len(encoders[b])):
            cells = pd.DataFrame([_cell(axes(x), axes(y), ks, debiased) for x, y in pairs])
            rows.append(
                {
                    "comparison": comp.name,
                    "seeds": len(pairs),
                    "index": index,
                    "layer_a": list(encoders[a])[index],
                    "layer_b": list(encoders[b])[index],
                    "n": axes(a).scores.shape[0],
                    **cells.mean(),
                }
            )
    return rows


def _agreement(table: pd.DataFrame) -> pd.Series:
    """Per row: on the lean's rows, whether sign(CKA(DO, SSO) − CKA(DO, MSO)) = sign(angle(DO, MSO) −
    angle(DO, SSO)) at its layer; NA on the other rows."""
    wide = table.pivot(index="index", columns="comparison", values=["cka", "procrustes_angle"])
    cka_lean = wide["cka", "DO-SSO"] - wide["cka", "DO-MSO"]
    angle_lean = wide["procrustes_angle", "DO-MSO"] - wide["procrustes_angle", "DO-SSO"]
    agrees = np.sign(cka_lean) == np.sign(angle_lean)
    return table["index"].map(agrees).astype("boolean").where(table["comparison"].isin(LEAN))


def defence_arrays(
    reps: Representations, *, language: str, ks: Sequence[int] = TOP_K, debiased: bool = True
) -> pd.DataFrame:
    """The defence table (module docstring) of one language from ``reps[role][stream][layer]`` ``(n, d)``
    (or ``reps[role]`` a list of those, one per seed replicate), as :func:`~cka_probe.study.cross_task.
    cross_task_arrays` takes them; only the encoder streams are read. Rows by layer, then comparison."""
    replicates = _replicates(reps, language)
    encoders = {(role, k): models["encoder"] for role in ROLES for k, models in enumerate(replicates[role])}
    sets = {(role, "encoder"): [model for model in encoders if model[0] == role] for role in ROLES}
    compared = [
        (c, pairs)
        for c in COMPARISONS + REFERENCES
        if c.part == "encoder" and c.name in DEFENDED and (pairs := _pairs(c, sets))
    ]
    depth = max(len(layers) for layers in encoders.values())
    table = pd.DataFrame(
        [row for i in range(depth) for row in _layer_rows(i, compared, encoders, language, ks, debiased)]
    )
    table = table.assign(language=language, estimator="debiased" if debiased else "biased")
    table["agrees"] = _agreement(table)
    return table[list(columns(ks))]


def columns(ks: Sequence[int] = TOP_K) -> tuple[str, ...]:
    """The defence table's columns, in order, for the numbers ``ks`` of top directions."""
    return (
        "language",
        "comparison",
        "seeds",
        "index",
        "layer_a",
        "layer_b",
        "n",
        "estimator",
        "cka",
        *(f"cka_minus_top{k}" for k in ks),
        *(f"top{k}_share" for k in ks),
        "procrustes_angle",
        "agrees",
    )


def defence_table(
    stores: Sequence[str | Path],
    *,
    ks: Sequence[int] = TOP_K,
    debiased: bool = True,
    allow_different_manifests: bool = False,
) -> pd.DataFrame:
    """:func:`defence_arrays` for every language of ``stores`` (files or folders of ``.h5``), read as the
    cross-task table reads them (:func:`~cka_probe.study.load.load_representations`, the same utterances
    and ``allow_different_manifests``). No random draws: no seed."""
    reps = load_representations(stores, allow_different_manifests=allow_different_manifests)
    frames = [defence_arrays(r, language=language, ks=ks, debiased=debiased) for language, r in reps.items()]
    return pd.concat(frames, ignore_index=True)
