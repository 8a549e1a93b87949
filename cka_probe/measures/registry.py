"""The one registry of similarity measures: each measure's name, kind, options, layer grid and resampling.

Every caller that takes ``measure=`` (``similarity_matrix``, ``compare --measure``,
the cross-task statistics) looks the name up here, so a measure registered once
is available everywhere. A :class:`Measure` holds

* ``kind``: "similarity" (larger is more similar) or "distance" (smaller is);
* ``options``: the keyword options its grid takes;
* ``grid``: ``grid(xs, ys, **options)`` -> ``(Lx, Ly)`` float64 DataFrame of every
  layer of ``xs`` against every layer of ``ys`` (``ys=None``: ``xs`` with itself),
  inputs validated as for ``cka_matrix`` (same n rows, finite values), ``attrs``
  n and dims; :meth:`Measure.on_layers` builds it from a grid of validated tensors;
* ``resampling``: what holds one model side's layers for resampling rows
  (:class:`Resampling`): for linear CKA the Gram-space
  :class:`~cka_probe.measures.gram_resample.GramSet` (fast path, tie-corrected),
  for every other measure a :class:`LayerSet` whose grid is recomputed on the
  resampled rows.

Registered: cka, cca, svcca, pwcca, procrustes, procrustes_angle, rsa (definitions
in ``docs/engine.md``). RSA's ``rdm="euclidean"`` is the plain Euclidean distance
‖x_i − x_j‖; rsatoolbox's ``'euclidean'`` RDM is the squared distance per channel
‖x_i − x_j‖² / d. Spearman RSA (``compare="spearman"``) is the same under both (a
monotone map of every entry), Pearson RSA is not; the correlation RDM
(1 − Pearson r of two rows) is the same in both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures import gram_resample
from cka_probe.measures._tensor import working_dtype
from cka_probe.measures.cca import cca_grid
from cka_probe.measures.matrix import cka_matrix, load_inputs
from cka_probe.measures.procrustes import procrustes_grid
from cka_probe.measures.rsa import rsa_grid

KINDS = ("similarity", "distance")

Grid = Callable[..., pd.DataFrame]
"""``grid(xs, ys=None, **options)`` -> the ``(Lx, Ly)`` float64 DataFrame of a measure."""

LayerGrid = Callable[..., torch.Tensor]
"""``layer_grid(tx, ty, labels_x, labels_y, **options)`` -> ``(Lx, Ly)`` float64 tensor of validated
``(n, d)`` layers (``ty=None``: ``tx`` with itself; labels name the layers in error messages)."""


class Layers(Protocol):
    """One model side's layers held for resampling: their ``names`` in model order and the rows ``n``."""

    names: list[str]
    n: int


class LayerSet:
    """The layers of one model over the same n rows (utterances): name -> ``(n, d)`` float64."""

    def __init__(self, layers: Mapping[str, np.ndarray], *, source: str = "") -> None:
        self.names: list[str] = list(layers)
        self.layers = {name: np.asarray(x, dtype=np.float64) for name, x in layers.items()}
        rows = {x.shape[0] if x.ndim else 0 for x in self.layers.values()}
        if len(rows) > 1:
            raise CKAProbeError(f"{source}: layers have different numbers of rows {sorted(rows)}")
        self.n: int = rows.pop()
        self.source = source

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's rows ``index`` ``(m,)`` (copies allowed): name -> ``(m, d)``."""
        return {name: x[index] for name, x in self.layers.items()}


@dataclass(frozen=True)
class Resampling:
    """How a measure is computed over resampled rows of two model sides ``a`` and ``b``.

    ``layer_set(layers, source=...)`` holds one side's layers (a :class:`Layers`);
    ``point_estimate(a, b, **options)`` is ``(L_a, L_b)`` on all n rows,
    ``bootstrap(a, b, indices, **options)`` ``(R, L_a, L_b)`` on the same rows of both
    sides per index vector (copies allowed), ``permuted(a, b, permutations, **options)``
    ``(R, L_a, L_b)`` with the rows of ``b`` shuffled. ``options``: the names these
    take; ``tie_corrected``: whether pairs of copies of one row are left out of a
    resample's sums (what the calibrated CKA interval is simulated for); ``kernel``:
    the kernel of the resampled grid, "-" where none applies.
    """

    layer_set: Callable[..., Layers]
    point_estimate: Callable[..., np.ndarray]
    bootstrap: Callable[..., np.ndarray]
    permuted: Callable[..., np.ndarray]
    options: tuple[str, ...]
    tie_corrected: bool = False
    kernel: str = "-"


GRAM_SPACE = Resampling(
    gram_resample.GramSet,
    gram_resample.point_estimate,
    gram_resample.bootstrap,
    gram_resample.permuted,
    options=("debiased",),
    tie_corrected=True,
    kernel="linear",
)
"""Linear CKA over resamples in Gram space (:mod:`cka_probe.measures.gram_resample`)."""


def _stacked(grids: list[np.ndarray], a: Layers, b: Layers) -> np.ndarray:
    """``(R, L_a, L_b)`` from R grids, also for R = 0."""
    return np.array(grids, dtype=np.float64).reshape(len(grids), len(a.names), len(b.names))


def _estimate(grid: Grid, a: LayerSet, b: LayerSet, **options) -> np.ndarray:
    """The measure ``(L_a, L_b)`` on all n rows."""
    return grid(a.layers, b.layers, **options).to_numpy()


def _bootstrap(grid: Grid, a: LayerSet, b: LayerSet, indices: Sequence[np.ndarray], **options) -> np.ndarray:
    """``(R, L_a, L_b)``: the measure on the rows of each resample, the same rows on both sides."""
    return _stacked([grid(a.rows(i), b.rows(i), **options).to_numpy() for i in indices], a, b)


def _permuted(
    grid: Grid, a: LayerSet, b: LayerSet, permutations: Sequence[np.ndarray], **options
) -> np.ndarray:
    """``(R, L_a, L_b)`` with the rows of ``b`` shuffled by each permutation: the null of no association."""
    return _stacked([grid(a.layers, b.rows(p), **options).to_numpy() for p in permutations], a, b)


def recomputed(grid: Grid, options: tuple[str, ...]) -> Resampling:
    """Resampling by recomputing ``grid`` on the resampled rows (:class:`LayerSet` per side)."""
    return Resampling(
        LayerSet, partial(_estimate, grid), partial(_bootstrap, grid), partial(_permuted, grid), options
    )


def on_layers(title: str, layer_grid: LayerGrid) -> Grid:
    """The :data:`Grid` of ``layer_grid``: inputs validated (same n >= 4 rows, finite, not constant) and
    unit-scaled, as for ``cka_matrix`` (every measure registered here is scale invariant), a DataFrame with
    ``attrs`` n, dims_x, dims_y; ``title`` names the measure in error messages."""

    def grid(xs: Mapping | Sequence, ys: Mapping | Sequence | None = None, **options) -> pd.DataFrame:
        v = load_inputs(xs, ys, None, what=title)
        values = layer_grid(v.tx, v.ty, v.labels_x, v.labels_y, **options)
        table = pd.DataFrame(values.cpu().numpy(), index=list(v.names_x), columns=list(v.names_y))
        table.attrs = {
            "n": v.n,
            "dims_x": {str(k): int(t.shape[1]) for k, t in zip(v.names_x, v.tx)},
            "dims_y": {str(k): int(t.shape[1]) for k, t in zip(v.names_y, v.ty or v.tx)},
        }
        return table

    return grid


@dataclass(frozen=True)
class Measure:
    """One measure of the registry (module docstring); ``about``: its definition and source in one line.

    ``resampling`` left out is the grid recomputed on resampled rows (:func:`recomputed`).
    """

    name: str
    kind: str
    options: tuple[str, ...]
    grid: Grid
    about: str
    resampling: Resampling | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CKAProbeError(f"measure {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.resampling is None:
            object.__setattr__(self, "resampling", recomputed(self.grid, self.options))

    @classmethod
    def on_layers(
        cls,
        name: str,
        kind: str,
        options: tuple[str, ...],
        layer_grid: LayerGrid,
        about: str,
        title: str | None = None,
    ) -> Measure:
        """A measure computed on validated layers by ``layer_grid`` (:data:`LayerGrid`); ``title``: its name
        in error messages (default ``name``)."""
        return cls(name, kind, options, on_layers(title or name, layer_grid), about)

    def check_options(self, options: Mapping, takes: Sequence[str] | None = None) -> None:
        """A ``CKAProbeError`` for any of ``options`` outside ``takes`` (default: the grid's options)."""
        takes = self.options if takes is None else tuple(takes)
        unknown = sorted(set(options) - set(takes))
        if unknown:
            raise CKAProbeError(f"measure {self.name!r} takes the options {list(takes)}, not {unknown}")


_REGISTRY: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Add ``measure`` under its name (which must be free); returns it."""
    if measure.name in _REGISTRY:
        raise CKAProbeError(f"measure {measure.name!r} is already registered")
    _REGISTRY[measure.name] = measure
    return measure


def unregister(name: str) -> Measure:
    """Remove the measure ``name``; returns it."""
    return _REGISTRY.pop(lookup(name).name)


def lookup(name: str) -> Measure:
    """The registered measure ``name``; a ``CKAProbeError`` listing the names otherwise."""
    if name not in _REGISTRY:
        raise CKAProbeError(f"measure must be one of {', '.join(names())}, got {name!r}")
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The registered measures' names, in registration order."""
    return tuple(_REGISTRY)


def centred(x: torch.Tensor) -> torch.Tensor:
    """Column-centred float64 copy of ``x (n, d)``."""
    x64 = x.to(torch.float64)
    return x64 - x64.mean(0)


def centred_sides(tx, ty, labels_x, labels_y) -> tuple[list, list, Sequence[str], Sequence[str]]:
    """``(xs, ys, labels_x, labels_y)`` of column-centred float64 layers, ``ty=None`` giving ``tx`` twice."""
    cx = [centred(x) for x in tx]
    if ty is None:
        return cx, cx, labels_x, labels_x
    return cx, [centred(y) for y in ty], labels_x, labels_y


def _cca(tx, ty, labels_x, labels_y, *, measure: str, **options) -> torch.Tensor:
    """``(Lx, Ly)`` of "cca", "svcca" or "pwcca" (:mod:`~cka_probe.measures.cca`)."""
    return cca_grid(*centred_sides(tx, ty, labels_x, labels_y), measure=measure, **options)


def _procrustes(tx, ty, labels_x, labels_y, *, measure: str) -> torch.Tensor:
    """``(Lx, Ly)`` of "procrustes" or "procrustes_angle" (:mod:`~cka_probe.measures.procrustes`)."""
    return procrustes_grid(*centred_sides(tx, ty, labels_x, labels_y), measure=measure)


def _rsa(tx, ty, labels_x, labels_y, *, dtype=None, **options) -> torch.Tensor:
    """``(Lx, Ly)`` RSA (:mod:`~cka_probe.measures.rsa`), RDM rows in the working dtype."""
    work, _ = working_dtype(dtype, tx + (ty or []), tx[0].device)
    return rsa_grid(tx, ty, labels_x, labels_y, dtype=work, **options)


BUILT_IN: tuple[Measure, ...] = (
    Measure(
        "cka",
        "similarity",
        ("kernel", "sigma", "debiased", "device", "dtype", "median_rows"),
        cka_matrix,
        "linear or kernel CKA, HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith et al. 2019, Eq. 2-4)",
        GRAM_SPACE,
    ),
    Measure.on_layers(
        "cca",
        "similarity",
        ("ridge",),
        partial(_cca, measure="cca"),
        "mean canonical correlation rho-bar (Hotelling 1936; Raghu et al. 2017)",
        title="CCA",
    ),
    Measure.on_layers(
        "svcca",
        "similarity",
        ("variance",),
        partial(_cca, measure="svcca"),
        "rho-bar of the layers reduced to the directions keeping `variance` of it (Raghu et al. 2017)",
        title="SVCCA",
    ),
    Measure.on_layers(
        "pwcca",
        "similarity",
        ("ridge",),
        partial(_cca, measure="pwcca"),
        "projection-weighted canonical correlation (Morcos et al. 2018, Eq. 2)",
        title="PWCCA",
    ),
    Measure.on_layers(
        "procrustes",
        "distance",
        (),
        partial(_procrustes, measure="procrustes"),
        "orthogonal Procrustes distance 2 - 2 ||X^T Y||_* of unit-norm layers "
        "(Schönemann 1966; Ding et al. 2021)",
        title="Procrustes distance",
    ),
    Measure.on_layers(
        "procrustes_angle",
        "distance",
        (),
        partial(_procrustes, measure="procrustes_angle"),
        "angular shape metric arccos ||X^T Y||_* in radians (Williams et al. 2021, Eq. 3)",
        title="Procrustes angle",
    ),
    Measure.on_layers(
        "rsa",
        "similarity",
        ("rdm", "compare", "dtype"),
        _rsa,
        "correlation of two RDMs' upper triangles (Kriegeskorte et al. 2008); rdm='euclidean' is "
        "||x_i - x_j||, rsatoolbox's 'euclidean' ||x_i - x_j||^2 / d: the same RSA under "
        "compare='spearman' only",
        title="RSA",
    ),
)
"""The measures registered on import."""

for _measure in BUILT_IN:
    register(_measure)
