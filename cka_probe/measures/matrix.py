"""Layer-by-layer CKA matrices: ``cka_matrix`` and the dispatch shared by the engine.

Linear CKA is computed in feature space when n exceeds every layer's width
(O(n d^2), one GEMM of the concatenated layers per chunk of rows, see
``moments``), and in Gram space otherwise, as is every other kernel (block by
block, see ``gram``). Each layer's self-term is computed once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm import tqdm

from cka_probe.errors import CKAProbeError
from cka_probe.measures._frame import result_frame
from cka_probe.measures._tensor import (
    as_matrix,
    checked_layer,
    common_rows,
    matmul_precision,
    named_layers,
    working_dtype,
)
from cka_probe.measures.gram import gram_terms
from cka_probe.measures.hsic import HSICTerms
from cka_probe.measures.kernels import CrossGram, Kernel, resolve_kernel
from cka_probe.measures.moments import FeatureAccumulator

CHUNK_ROWS = 16384  # rows per feature-space GEMM: bounds memory and float32 accumulation length


def load_layers(layers, side: str, device) -> tuple[list, list[torch.Tensor]]:
    """Names and validated ``(n, d)`` tensors of one side (``side`` is "x" or "y")."""
    named = named_layers(layers, side)
    return list(named), [as_matrix(value, f"{side} layer {name}", device) for name, value in named.items()]


def default_device(device, layers: Mapping | Sequence) -> torch.device:
    """``device`` if given, else the device of the first layer (CPU for numpy arrays)."""
    if device is not None:
        return torch.device(device)
    first = next(iter(layers.values() if isinstance(layers, Mapping) else layers), None)
    return first.device if isinstance(first, torch.Tensor) else torch.device("cpu")


MIN_ROWS = 4  # unbiased HSIC needs n >= 4; with fewer rows every measure is degenerate (2 rows: CKA = 1)


def check_rows(labelled: Mapping[str, torch.Tensor], what: str = "CKA") -> int:
    """The common n of the ``labelled`` layers, at least ``MIN_ROWS``."""
    n = common_rows(labelled)
    if n < MIN_ROWS:
        raise CKAProbeError(
            f"{what} needs at least {MIN_ROWS} rows, got n={n}; give at least {MIN_ROWS} samples (rows)"
        )
    return n


@dataclass
class Inputs:
    """Validated layers of both sides (``ty`` None: ``xs`` against itself), their labels and the common n."""

    names_x: list
    tx: list[torch.Tensor]
    names_y: list
    ty: list[torch.Tensor] | None
    labels_x: list[str]
    labels_y: list[str]
    n: int
    device: torch.device


def load_inputs(xs, ys, device, *, what: str = "CKA", scale: bool = True) -> Inputs:
    """``xs`` and ``ys`` (dicts or sequences of ``(n, d)``) validated on ``device`` (default: xs's).

    Every layer is finite, has the same n >= ``MIN_ROWS`` rows and is not constant
    (``CKAProbeError`` naming it otherwise); with ``scale`` (scale-invariant
    measures) each is unit-scaled (``_tensor.unit_scaled``), once, so that no
    product overflows or underflows whatever its magnitude.
    """
    device = default_device(device, xs)
    names_x, tx = load_layers(xs, "x", device)
    names_y, ty = (names_x, None) if ys is None else load_layers(ys, "y", device)
    labels_x, labels_y = [f"x layer {k}" for k in names_x], [f"y layer {k}" for k in names_y]
    n = check_rows(dict(zip(labels_x, tx)) | ({} if ty is None else dict(zip(labels_y, ty))), what)
    checked = lambda ts, labels: [checked_layer(t, label, what, scale=scale) for t, label in zip(ts, labels)]
    tx, ty = checked(tx, labels_x), None if ty is None else checked(ty, labels_y)
    return Inputs(names_x, tx, names_y, ty, labels_x, labels_y, n, device)


def feature_terms(
    xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None, *, unbiased: bool, dtype: torch.dtype
) -> HSICTerms:
    """Linear HSIC in feature space, feeding in-memory rows to the streaming sums chunk by chunk."""
    n = xs[0].shape[0]
    acc = FeatureAccumulator(
        [x.shape[1] for x in xs],
        None if ys is None else [y.shape[1] for y in ys],
        unbiased=unbiased,
        dtype=dtype,
        device=xs[0].device,
    )
    for start in tqdm(range(0, n, CHUNK_ROWS), desc="CKA rows", leave=False, disable=None):
        stop = min(n, start + CHUNK_ROWS)
        acc.add([x[start:stop] for x in xs], None if ys is None else [y[start:stop] for y in ys])
    return acc.terms()


def in_feature_space(n: int, widths: Sequence[int]) -> bool:
    """Whether linear CKA of ``n`` rows of layers of these ``widths`` is computed in feature space (from the
    streamed sums): when ``n`` exceeds every width."""
    return n > max(widths)


def hsic_terms(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor] | None,
    kernel: Kernel,
    *,
    unbiased: bool,
    dtype: torch.dtype,
    labels_x: Sequence[str],
    labels_y: Sequence[str] | None,
) -> HSICTerms:
    """HSIC of all layer pairs: feature space for the linear kernel when n > every width, else Gram space."""
    widths = [x.shape[1] for x in xs] + ([] if ys is None else [y.shape[1] for y in ys])
    if kernel.name == "linear" and in_feature_space(xs[0].shape[0], widths):
        return feature_terms(xs, ys, unbiased=unbiased, dtype=dtype)
    return gram_terms(xs, ys, kernel, unbiased=unbiased, dtype=dtype, labels_x=labels_x, labels_y=labels_y)


def cka_matrix(
    xs: Mapping | Sequence,
    ys: Mapping | Sequence | None = None,
    *,
    kernel: str | CrossGram = "linear",
    sigma: float = 0.8,
    debiased: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    median_rows: int | None = None,
) -> pd.DataFrame:
    """CKA of every layer of ``xs`` against every layer of ``ys`` (Kornblith et al. 2019).

    ``xs``, ``ys``: dict of layer name -> ``(n, d_l)`` array or tensor (or a
    sequence, named 0..L-1), the same n rows (samples) in every layer. ``ys=None``
    compares ``xs`` with itself and computes only half of the cross products.
    ``kernel``: "linear", "rbf" (bandwidth ``sigma`` as in ``kernels``), "poly" or
    a callable cross-Gram. ``debiased``: unbiased HSIC (Song et al. 2012), i.e.
    debiased CKA (Nguyen et al. 2021). ``dtype``: working dtype, see ``_tensor``.
    ``median_rows``: RBF bandwidth from the median over that many random rows
    (seeded) instead of all n (the exact median of Kornblith et al.'s code).

    Returns a DataFrame ``(Lx, Ly)``, float64, never clamped; ``attrs`` records
    estimator, kernel, sigma, n, dims, space (feature or gram), dtype, device.
    Raises ``CKAProbeError`` (a ``ValueError``) naming the layer for mismatched n,
    NaN/Inf, fewer than 4 rows, a constant layer or (debiased, few rows) a
    non-positive self-HSIC. Linear and RBF CKA are scale invariant, so each
    layer is unit-scaled first (the same value for a layer times 1e-300 or 1e300).
    """
    spec = resolve_kernel(kernel, sigma, median_rows)
    v = load_inputs(xs, ys, device, scale=spec.scale_free)
    work, tf32 = working_dtype(dtype, v.tx + (v.ty or []), v.device)
    with matmul_precision(v.device, tf32):
        terms = hsic_terms(
            v.tx, v.ty, spec, unbiased=debiased, dtype=work, labels_x=v.labels_x, labels_y=v.labels_y
        )
    table = result_frame(
        terms,
        v.names_x,
        v.names_y,
        estimator="debiased" if debiased else "biased",
        kernel=spec.name,
        sigma=spec.sigma,
        dims_x=[t.shape[1] for t in v.tx],
        dims_y=[t.shape[1] for t in (v.ty or v.tx)],
        dtype=work,
        device=v.device,
    )
    if spec.name == "rbf":
        table.attrs["rbf_median"] = "exact" if median_rows is None else f"subsampled, {median_rows} rows"
    return table
