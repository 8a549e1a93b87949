"""Exact linear CKA over more rows than fit in memory: ``StreamingLinearCKA``.

Rows arrive in chunks (the same rows of every layer in each call); the
accumulator keeps the feature-space sums of ``moments`` (chunk GEMMs in the
working dtype, sums in float64), so the result equals ``cka_matrix`` on all
rows at once, whatever the chunk sizes. The sums add across processes: give
every process the same reference rows (``set_reference``), then all-reduce
``sums()`` (or ``merge`` accumulators in one process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._frame import result_frame
from cka_probe.measures._tensor import common_rows, layers_in_order, matmul_precision, working_dtype
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

    def _chunk(self, xs_chunk: Mapping, ys_chunk: Mapping | None) -> tuple[list, list | None]:
        """Validated tensors of one call; rows equal across layers, widths equal across calls."""
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
        return tx, ty

    def _start(self, tx: list[torch.Tensor], ty: list[torch.Tensor] | None) -> None:
        """Fix layout, device and working dtype from the first rows seen."""
        self._device = self._device or tx[0].device
        self._dtype, self._tf32 = working_dtype(self._dtype_request, tx + (ty or []), self._device)
        self._dims_x = [t.shape[1] for t in tx]
        self._dims_y = [] if ty is None else [t.shape[1] for t in ty]
        self._acc = FeatureAccumulator(
            self._dims_x,
            None if ty is None else self._dims_y,
            unbiased=self.debiased,
            dtype=self._dtype,
            device=self._device,
        )

    def set_reference(self, xs_rows: Mapping, ys_rows: Mapping | None = None) -> None:
        """Shift every layer by the mean of these rows (default: the first chunk).

        Call it before any ``update`` with the same rows in every process whose
        sums will be added; the rows themselves are not counted.
        """
        if self._acc is not None and self._acc.count > 0:
            raise CKAProbeError("set_reference must come before the first update")
        tx, ty = self._chunk(xs_rows, ys_rows)
        self._start(tx, ty)
        self._acc.set_reference(tx, ty)

    def update(self, xs_chunk: Mapping, ys_chunk: Mapping | None = None) -> None:
        """Add the same rows of every layer: ``xs_chunk[name] (rows, d_name)`` (and ``ys_chunk``)."""
        tx, ty = self._chunk(xs_chunk, ys_chunk)
        if self._acc is None:
            self._start(tx, ty)
        with matmul_precision(self._device, self._tf32):
            self._acc.add(tx, ty)

    def sums(self) -> list[torch.Tensor]:
        """The additive float64 state, in a fixed order; all-reduce (sum) it in place to combine processes."""
        if self._acc is None:
            raise CKAProbeError("no rows yet: call set_reference or update first")
        return self._acc.sums()

    def merge(self, other: StreamingLinearCKA) -> None:
        """Add ``other``'s rows to this accumulator (same layers and the same reference rows)."""
        mine, theirs = self.sums(), other.sums()
        same_layout = (self.names_x, self.names_y, self._dims_x, self._dims_y, self.debiased) == (
            other.names_x,
            other.names_y,
            other._dims_x,
            other._dims_y,
            other.debiased,
        )
        shifts = [(a.x, b.x), (a.y, b.y)] if (a := self._acc) and (b := other._acc) else []
        same_shift = all(torch.equal(s, t.to(s)) for p, q in shifts for s, t in zip(p.shift, q.shift))
        if not (same_layout and same_shift):
            raise CKAProbeError(
                "cannot merge accumulators with different layers or reference rows; "
                "call set_reference with the same rows on both"
            )
        for total, part in zip(mine, theirs):
            total += part.to(total)

    def result(self) -> pd.DataFrame:
        """CKA ``(Lx, Ly)`` of all rows so far, as ``cka_matrix`` returns it."""
        if self._acc is None:
            raise CKAProbeError("no rows yet: call update first")
        n = self._acc.n
        check_rows({"the streamed rows": torch.empty(n, 0)}, self.debiased)
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
