"""One entry point for every representational similarity measure: ``similarity_matrix`` and ``similarity``.

* ``"cka"``: linear or kernel CKA (options of ``cka_matrix``), :mod:`~cka_probe.measures.matrix`
* ``"cca"``, ``"svcca"``, ``"pwcca"``: mean CCA rho-bar, SVCCA, PWCCA (``ridge``, ``variance``),
  :mod:`~cka_probe.measures.cca`
* ``"procrustes"``, ``"procrustes_angle"``: orthogonal Procrustes distance, angular shape metric,
  :mod:`~cka_probe.measures.procrustes`
* ``"rsa"``: RDM correlation (``rdm``, ``compare``), :mod:`~cka_probe.measures.rsa`

``attrs["kind"]`` says whether larger means more similar ("similarity") or
less ("distance"); ``attrs["measure"]`` and ``attrs["options"]`` say what was
computed. Inputs are validated as for ``cka_matrix`` (same n, finite values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import working_dtype
from cka_probe.measures.cca import cca_grid
from cka_probe.measures.matrix import cka_matrix, load_inputs
from cka_probe.measures.procrustes import procrustes_grid
from cka_probe.measures.rsa import rsa_grid

KINDS = {
    "cka": "similarity",
    "cca": "similarity",
    "svcca": "similarity",
    "pwcca": "similarity",
    "procrustes": "distance",
    "procrustes_angle": "distance",
    "rsa": "similarity",
}
MEASURES = tuple(KINDS)
OPTIONS = {
    "cka": ("kernel", "sigma", "debiased", "device", "dtype", "median_rows"),
    "cca": ("ridge",),
    "svcca": ("variance",),
    "pwcca": ("ridge",),
    "procrustes": (),
    "procrustes_angle": (),
    "rsa": ("rdm", "compare", "dtype"),
}


def centred(x: torch.Tensor) -> torch.Tensor:
    """Column-centred float64 copy of ``x (n, d)``."""
    x64 = x.to(torch.float64)
    return x64 - x64.mean(0)


def grid(measure: str, tx, ty, labels_x, labels_y, options: dict) -> torch.Tensor:
    """``(Lx, Ly)`` float64 of a non-CKA ``measure`` on validated layers (``ty=None``: tx with itself)."""
    if measure == "rsa":
        work, _ = working_dtype(options.pop("dtype", None), tx + (ty or []), tx[0].device)
        return rsa_grid(tx, ty, labels_x, labels_y, dtype=work, **options)
    cx = [centred(x) for x in tx]
    cy = cx if ty is None else [centred(y) for y in ty]
    if measure in ("procrustes", "procrustes_angle"):
        return procrustes_grid(cx, cy, labels_x, labels_y if ty is not None else labels_x, measure=measure)
    return cca_grid(cx, cy, labels_x, labels_y if ty is not None else labels_x, measure=measure, **options)


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
    if measure not in KINDS:
        raise CKAProbeError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    unknown = sorted(set(options) - set(OPTIONS[measure]))
    if unknown:
        raise CKAProbeError(f"measure {measure!r} takes the options {list(OPTIONS[measure])}, not {unknown}")
    if measure == "cka":
        table = cka_matrix(xs, ys, **options)
    else:
        v = load_inputs(xs, ys, None, what=measure)
        values = grid(measure, v.tx, v.ty, v.labels_x, v.labels_y, dict(options))
        table = pd.DataFrame(values.cpu().numpy(), index=list(v.names_x), columns=list(v.names_y))
        table.attrs = {
            "n": v.n,
            "dims_x": {str(k): int(t.shape[1]) for k, t in zip(v.names_x, v.tx)},
            "dims_y": {str(k): int(t.shape[1]) for k, t in zip(v.names_y, v.ty or v.tx)},
        }
    table.attrs.update(measure=measure, kind=KINDS[measure], options={k: str(v) for k, v in options.items()})
    return table


def options_of(measure: str, available: Mapping) -> dict:
    """The entries of ``available`` that ``measure`` takes (for callers holding every option, e.g. the
    CLI)."""
    return {k: v for k, v in available.items() if k in OPTIONS.get(measure, ())}


def similarity(x, y, *, measure: str = "cka", **options) -> float:
    """``measure`` of one pair ``x (n, dx)``, ``y (n, dy)``; usable as ``statistic=`` of ``bootstrap_ci``."""
    table = similarity_matrix({"x": x}, {"y": y}, measure=measure, **options)
    value = float(table.iloc[0, 0])
    if value != value:  # NaN: CKA of a constant layer
        raise CKAProbeError(f"{measure} is undefined for this pair: a representation is constant")
    return value
