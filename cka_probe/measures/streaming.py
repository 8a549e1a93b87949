"""Exact linear CKA over more rows than fit in memory: ``StreamingLinearCKA``.

Rows arrive in chunks (the same rows of every layer in each call); the
accumulator keeps the feature-space sums of ``moments`` (chunk GEMMs in the
working dtype, sums in float64), so the result equals ``cka_matrix`` on all
rows at once, whatever the chunk sizes. The sums add across processes: give
every process the same reference rows (``set_reference``), then ``all_reduce``
(the sums and the extents of the rows over a ``torch.distributed`` group), or
``merge`` accumulators in one process.

Each layer is multiplied by the power of 2 that brings the first rows' largest
|value| into [0.5, 1) (``_tensor.unit_scale``; exact, and CKA is scale
invariant), so layers of any magnitude (1e-300 to 1e300) give the same CKA.
``result`` refuses a layer whose rows were all identical (``constant_message``),
judged on the rows this accumulator saw (``merge`` and ``all_reduce`` join them;
an all-reduce of ``sums()`` alone does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torch.distributed as dist

from cka_probe.errors import CKAProbeError
from cka_probe.measures._frame import result_frame
from cka_probe.measures._tensor import (
    Extent,
    common_rows,
    constant_message,
    layers_in_order,
    matmul_precision,
    unit_scaled,
    working_dtype,
)
from cka_probe.measures.matrix import check_rows
from cka_probe.measures.moments import FeatureAccumulator


class StreamingLinearCKA:
    """Linear CKA (biased, or debiased with ``debiased=True``) of layers ``names_x`` against ``names_y``.

    ``names_y=None`` compares the ``names_x`` layers with each other (half the
    products). ``device``: where the chunk GEMMs run (default: the first
    chunk's device). ``dtype``: working dtype as in ``cka_matrix``.

    Example::

        acc = StreamingLinearCKA(["enc.0", "enc.1"], ["enc.0", "enc.1"])
        for xs, ys in chunks:          # dicts name -> (rows, d)
            acc.update(xs, ys)
        table = acc.result()           # DataFrame, like cka_matrix's
    """

    def __init__(
        self,
        names_x: Sequence,
        names_y: Sequence | None = None,
        *,
        debiased: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ):
        self.names_x = list(names_x)
        self.names_y = None if names_y is None else list(names_y)
        self.debiased = debiased
        self._device = None if device is None else torch.device(device)
        self._dtype_request = dtype
        self._acc: FeatureAccumulator | None = None
        self._dims_x: list[int] = []
        self._dims_y: list[int] = []
        self._extents: list[Extent] = []  # every layer's rows so far, x layers then y layers
        self._tops: list[float] = []  # every layer's max |x| in the first rows: fixes its unit scale

    def _chunk(self, xs_chunk: Mapping, ys_chunk: Mapping | None) -> dict[str, torch.Tensor]:
        """Validated tensors of one call by label ("x layer NAME", "y layer NAME"); rows equal across layers,
        widths equal across calls."""
        tx = layers_in_order(xs_chunk, self.names_x, "x", self._device)
        if (self.names_y is None) != (ys_chunk is None):
            raise CKAProbeError("give ys_chunk exactly when the accumulator was built with names_y")
        ty = None if ys_chunk is None else layers_in_order(ys_chunk, self.names_y, "y", self._device)
        labelled = {f"x layer {k}": t for k, t in zip(self.names_x, tx)}
        labelled |= {} if ty is None else {f"y layer {k}": t for k, t in zip(self.names_y, ty)}
        common_rows(labelled)
        if self._acc is not None:
            for label, t, d in zip(labelled, labelled.values(), self._dims_x + self._dims_y):
                if t.shape[1] != d:
                    raise CKAProbeError(f"{label}: chunk has {t.shape[1]} columns, earlier chunks had {d}")
        return labelled

    def _scaled(self, labelled: dict[str, torch.Tensor]) -> tuple[list, list | None]:
        """``(xs, ys)`` of one chunk, each layer times its unit scale (fixed by the first rows)."""
        scaled = [unit_scaled(t, top) for t, top in zip(labelled.values(), self._tops)]
        lx = len(self.names_x)
        return scaled[:lx], None if self.names_y is None else scaled[lx:]

    def _start(self, labelled: dict[str, torch.Tensor]) -> None:
        """Fix layout, device, working dtype and unit scales from the first rows seen."""
        tensors = list(labelled.values())
        lx = len(self.names_x)
        self._device = self._device or tensors[0].device
        self._dtype, self._tf32 = working_dtype(self._dtype_request, tensors, self._device)
        self._dims_x = [t.shape[1] for t in tensors[:lx]]
        self._dims_y = [t.shape[1] for t in tensors[lx:]]
        self._extents = [Extent() for _ in tensors]
        self._tops = [Extent(t).top for t in tensors]
        self._acc = FeatureAccumulator(
            self._dims_x,
            None if self.names_y is None else self._dims_y,
            unbiased=self.debiased,
            dtype=self._dtype,
            device=self._device,
        )

    def set_reference(self, xs_rows: Mapping, ys_rows: Mapping | None = None) -> None:
        """Shift every layer by the mean of these rows, and scale it by their magnitude (default: the first
        chunk's).

        Call it before any ``update`` with the same rows in every process whose
        sums will be added; the rows themselves are not counted.
        """
        if self._acc is not None and self._acc.count > 0:
            raise CKAProbeError("set_reference must come before the first update")
        labelled = self._chunk(xs_rows, ys_rows)
        self._start(labelled)
        self._acc.set_reference(*self._scaled(labelled))

    def update(self, xs_chunk: Mapping, ys_chunk: Mapping | None = None) -> None:
        """Add the same rows of every layer: ``xs_chunk[name] (rows, d_name)`` (and ``ys_chunk``)."""
        labelled = self._chunk(xs_chunk, ys_chunk)
        if self._acc is None:
            self._start(labelled)
        for extent, t in zip(self._extents, labelled.values()):
            extent.add(t)
        with matmul_precision(self._device, self._tf32):
            self._acc.add(*self._scaled(labelled))

    def sums(self) -> list[torch.Tensor]:
        """The additive float64 state, in a fixed order; all-reduce (sum) it in place to combine processes."""
        if self._acc is None:
            raise CKAProbeError("no rows yet: call set_reference or update first")
        return self._acc.sums()

    def merge(self, other: StreamingLinearCKA) -> None:
        """Add ``other``'s rows to this accumulator (same layers and the same reference rows)."""
        mine, theirs = self.sums(), other.sums()
        same_layout = (
            self.names_x,
            self.names_y,
            self._dims_x,
            self._dims_y,
            self.debiased,
            self._tops,
        ) == (other.names_x, other.names_y, other._dims_x, other._dims_y, other.debiased, other._tops)
        shifts = [(a.x, b.x), (a.y, b.y)] if (a := self._acc) and (b := other._acc) else []
        same_shift = all(torch.equal(s, t.to(s)) for p, q in shifts for s, t in zip(p.shift, q.shift))
        if not (same_layout and same_shift):
            raise CKAProbeError(
                "cannot merge accumulators with different layers or reference rows; "
                "call set_reference with the same rows on both"
            )
        for total, part in zip(mine, theirs):
            total += part.to(total)
        for extent, seen in zip(self._extents, other._extents):
            if seen.low is not None:
                extent.add(torch.stack([seen.low, seen.high]))

    def all_reduce(self) -> None:
        """Make this accumulator hold the rows of every process of the default ``torch.distributed`` group.

        Sums the float64 state (``sums``) and joins the column-wise extents of
        the rows (minimum and maximum, which ``result`` judges constancy on), in
        place, on every process: each process must have called ``set_reference``
        with the same rows and added at least one row of its own.
        """
        if any(extent.low is None for extent in self._extents):
            raise CKAProbeError("all_reduce needs rows in every process: call update first")
        for total in self.sums():
            dist.all_reduce(total)
        for extent in self._extents:
            extent.low = _all_reduced(extent.low, dist.ReduceOp.MIN)
            extent.high = _all_reduced(extent.high, dist.ReduceOp.MAX)

    def result(self) -> pd.DataFrame:
        """CKA ``(Lx, Ly)`` of all rows so far, as ``cka_matrix`` returns it."""
        if self._acc is None:
            raise CKAProbeError("no rows yet: call update first")
        check_rows({"the streamed rows": torch.empty(self._acc.n, 0)})
        labels = [f"x layer {k}" for k in self.names_x] + [f"y layer {k}" for k in self.names_y or []]
        for label, extent in zip(labels, self._extents):
            if extent.constant():
                raise CKAProbeError(constant_message(label))
        names_y = self.names_x if self.names_y is None else self.names_y
        return result_frame(
            self._acc.terms(),
            self.names_x,
            names_y,
            estimator="debiased" if self.debiased else "biased",
            kernel="linear",
            sigma=None,
            dims_x=self._dims_x,
            dims_y=self._dims_y or self._dims_x,
            dtype=self._dtype,
            device=self._device,
        )


def _all_reduced(values: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    """``values (d,)`` reduced with ``op`` over the default group, taken in float64 (exact for the float16
    and float32 rows of the stores; not every backend reduces float16), returned in their dtype."""
    wide = values.to(torch.float64)
    dist.all_reduce(wide, op=op)
    return wide.to(values.dtype)
