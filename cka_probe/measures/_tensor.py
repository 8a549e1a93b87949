"""Input conversion, validation and the engine's dtype/device policy.

Inputs are numpy arrays or torch tensors of shape ``(n, d)``: n samples (rows)
by d features. The *working dtype* is the dtype of the large matrix products:

* ``dtype=None`` (default): float64 when any input is float64 (numpy's
  default) on CPU; float32 when every input is float32 or narrower, and always
  float32 on CUDA. TF32 stays off on CUDA.
* ``"float64"`` / ``"float32"`` force one; ``"tf32"`` is float32 with TF32
  tensor-core matmuls allowed on CUDA (about 1e-3 relative error per product).

Whatever the working dtype, data are centred (or shifted by a float64 mean)
before any product, every sum over products is accumulated in float64, and the
returned numbers are float64. See ``docs/engine.md`` for the measured error.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from cka_probe.errors import CKAProbeError

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "tf32": torch.float32}


def named_layers(layers: Mapping | Sequence, side: str) -> dict:
    """Layer name -> array; a sequence is named ``0 .. L-1``."""
    if isinstance(layers, Mapping):
        named = dict(layers)
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)):
        named = dict(enumerate(layers))
    else:
        raise CKAProbeError(
            f"{side}: expected a dict of layer name -> array or a list of arrays, got {type(layers).__name__}"
        )
    if not named:
        raise CKAProbeError(f"{side}: no layers given")
    return named


def as_matrix(a, label: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Convert ``a`` to a finite floating tensor ``(n, d)`` on ``device``.

    float64 and float32 keep their dtype (no copy for numpy float32 on CPU);
    narrower floats become float32, integers and booleans float64.
    """
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    if t.is_complex():
        raise CKAProbeError(f"{label}: complex values are not supported")
    if t.ndim != 2:
        raise CKAProbeError(f"{label}: expected a 2-D array (rows x features), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise CKAProbeError(f"{label}: empty array of shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    t = t.detach().to(device) if device is not None else t.detach()
    # a finite sum proves all finite
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise CKAProbeError(f"{label}: contains NaN or Inf")
    return t


def layers_in_order(chunk: Mapping, names: Sequence, side: str, device=None) -> list[torch.Tensor]:
    """The arrays of ``chunk`` (layer name -> ``(rows, d)``) in ``names`` order, validated."""
    if not isinstance(chunk, Mapping):
        raise CKAProbeError(f"{side}: a chunk must be a dict of layer name -> (rows, d) array")
    missing = [name for name in names if name not in chunk]
    extra = [name for name in chunk if name not in names]
    if missing or extra:
        raise CKAProbeError(f"{side} chunk: missing layers {missing}, unexpected layers {extra}")
    return [as_matrix(chunk[name], f"{side} layer {name}", device) for name in names]


def common_rows(tensors: Mapping[str, torch.Tensor]) -> int:
    """The shared number of rows n; a ``CKAProbeError`` naming the odd layer otherwise."""
    labels = list(tensors)
    n = tensors[labels[0]].shape[0]
    for label in labels[1:]:
        if tensors[label].shape[0] != n:
            raise CKAProbeError(
                f"{label} has {tensors[label].shape[0]} rows but {labels[0]} has {n}: rows must be the "
                "same samples"
            )
    return n


CONSTANT_ULPS = 4  # rows that differ by at most this many units in the last place of max |x| are identical
UNSCALED_EXPONENTS = 16  # max |x| within 2^-16 .. 2^16: every product of the engine is in range, no copy


class Extent:
    """The column-wise minimum and maximum ``(d,)`` of the rows of one layer seen so far.

    They give the layer's magnitude ``top`` = max |x| and ``spread`` = the largest
    column range max_i x_ij - min_i x_ij, in one pass over the rows and without an
    ``(n, d)`` temporary; ``add`` takes further rows (chunks of a stream).
    """

    def __init__(self, x: torch.Tensor | None = None) -> None:
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None
        self.eps = 0.0
        if x is not None:
            self.add(x)

    def add(self, x: torch.Tensor) -> Extent:
        """Widen the extent by the rows of ``x (m, d)``."""
        low, high = torch.aminmax(x, dim=0)
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)
        self.eps = torch.finfo(x.dtype).eps
        return self

    @property
    def top(self) -> float:
        """max |x| over all rows and columns."""
        return float(torch.maximum(self.high, -self.low).max())

    def constant(self) -> bool:
        """True when every row equals every other to within ``CONSTANT_ULPS`` units in the last place of
        max |x|: a representation without variance, whatever its scale (0 for all-zero rows)."""
        spread = float((self.high - self.low).max())  # inf when the range overflows: not constant
        return spread <= CONSTANT_ULPS * self.eps * self.top


def unit_scale(top: float, dtype: torch.dtype) -> float:
    """The power of 2 that brings ``top`` = max |x| into [0.5, 1), 1 for 0; within the dtype's exponent range.

    Multiplying by a power of 2 only changes exponents, so it is exact for every
    normal number, and scale-invariant measures (CKA, CCA, Procrustes, RSA) are
    unchanged by it; it keeps squares of 1e200 or 1e-200 from overflowing or
    underflowing in any product.
    """
    if top == 0:
        return 1.0
    limit = math.frexp(torch.finfo(dtype).max)[1] - 2  # 126 (float32), 1022 (float64)
    return math.ldexp(1.0, max(-limit, min(limit, -math.frexp(top)[1])))


def unit_scaled(x: torch.Tensor, top: float) -> torch.Tensor:
    """``x`` multiplied by ``unit_scale(top)``; ``x`` itself (no copy) when max |x| lies within
    2^-UNSCALED_EXPONENTS .. 2^UNSCALED_EXPONENTS."""
    scale = unit_scale(top, x.dtype)
    return x if abs(math.log2(scale)) <= UNSCALED_EXPONENTS else x * scale


def unit_scaled_array(x: np.ndarray) -> np.ndarray:
    """A copy of the array ``x (n, d)`` in float64, unit-scaled as by ``unit_scaled`` (for the numpy
    estimators of resamples)."""
    t = torch.tensor(x, dtype=torch.float64)
    return unit_scaled(t, Extent(t).top).numpy()


def constant_message(label: str, what: str = "CKA") -> str:
    """The one line for a constant layer: what is undefined and why."""
    return (
        f"{label}: {what} is undefined for a constant representation (every row identical); "
        "drop this layer or check how it was extracted"
    )


def checked_layer(x: torch.Tensor, label: str, what: str = "CKA", *, scale: bool = True) -> torch.Tensor:
    """``x (n, d)`` refused when constant (``constant_message``), else unit-scaled (``scale``: for
    scale-invariant measures)."""
    extent = Extent(x)
    if extent.constant():
        raise CKAProbeError(constant_message(label, what))
    return unit_scaled(x, extent.top) if scale else x


def is_constant(x: torch.Tensor) -> bool:
    """True when every row of ``x (n, d)`` is the same, relative to its magnitude (``Extent.constant``)."""
    return Extent(x).constant()


def working_dtype(dtype, tensors: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.dtype, bool]:
    """``(matmul dtype, allow TF32)`` under the policy in this module's docstring."""
    if dtype is None:
        if device.type == "cuda" or all(t.dtype != torch.float64 for t in tensors):
            return torch.float32, False
        return torch.float64, False
    key = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    if key not in _DTYPES:
        raise CKAProbeError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[key], key == "tf32"


@contextlib.contextmanager
def matmul_precision(device: torch.device, allow_tf32: bool) -> Iterator[None]:
    """Set CUDA's TF32 matmul switch for the duration of a computation, then restore it."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run small dense decompositions (SVD, eigh of d x d blocks) on one CPU thread, then restore.

    Measured with torch 2.13 CPU on 2 busy cores: 144 SVDs of 256 x 256 take
    24 s with 2 threads and 1.3 s with one (the threads wait on each other).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
