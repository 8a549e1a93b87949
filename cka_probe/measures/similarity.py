"""One entry point for every registered similarity measure: ``similarity_matrix`` and ``similarity``.

The measures, their options and kinds are those of :mod:`cka_probe.measures.registry`
(``registry.names()``): ``"cka"`` (options of ``cka_matrix``), ``"cca"``,
``"svcca"``, ``"pwcca"`` (``ridge``, ``variance``), ``"procrustes"``,
``"procrustes_angle"``, ``"rsa"`` (``rdm``, ``compare``, ``dtype``), and any
measure registered since.

``attrs["kind"]`` says whether larger means more similar ("similarity") or
less ("distance"); ``attrs["measure"]`` and ``attrs["options"]`` say what was
computed. Inputs are validated as for ``cka_matrix`` (same n >= 4 rows, finite
values, no constant layer) and unit-scaled, so every built-in measure gives the
same value for a layer multiplied by any constant from 1e-300 to 1e300.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.measures.registry import lookup


def similarity_matrix(
    xs: Mapping | Sequence,
    ys: Mapping | Sequence | None = None,
    *,
    measure: str = "cka",
    **options,
) -> pd.DataFrame:
    """``measure`` of every layer of ``xs`` (rows) against every layer of ``ys`` (columns).

    ``xs``, ``ys``: dict of layer name -> ``(n, d_l)`` array or tensor (or a
    sequence, named 0..L-1), the same n rows in every layer; ``ys=None``
    compares ``xs`` with itself. ``options``: those of the measure (module
    docstring). Returns a float64 DataFrame ``(Lx, Ly)``, never clamped, with
    ``attrs`` measure, kind, options, n, dims_x, dims_y. Undefined cases
    (mismatched n, NaN, constant layers, CCA without full rank, ...) raise
    ``CKAProbeError`` naming the layer.
    """
    entry = lookup(measure)
    entry.check_options(options)
    return record_measure(entry.grid(xs, ys, **options), measure, options)


def record_measure(table: pd.DataFrame, measure: str, options: Mapping) -> pd.DataFrame:
    """``table`` with the ``attrs`` that ``similarity_matrix`` adds: measure, kind and options (as text)."""
    table.attrs.update(
        measure=measure, kind=lookup(measure).kind, options={k: str(v) for k, v in options.items()}
    )
    return table


def options_of(measure: str, available: Mapping) -> dict:
    """The entries of ``available`` that ``measure`` takes (for callers holding every option, e.g. the
    CLI)."""
    takes = lookup(measure).options
    return {k: v for k, v in available.items() if k in takes}


def similarity(x, y, *, measure: str = "cka", **options) -> float:
    """``measure`` of one pair ``x (n, dx)``, ``y (n, dy)``; usable as ``statistic=`` of ``bootstrap_ci``."""
    table = similarity_matrix({"x": x}, {"y": y}, measure=measure, **options)
    value = float(table.iloc[0, 0])
    if value != value:  # NaN from a measure registered beside the built-in ones, which never give one
        raise CKAProbeError(f"{measure} is undefined for this pair (the measure gave NaN)")
    return value
