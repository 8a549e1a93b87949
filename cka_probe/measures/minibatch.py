"""Minibatch CKA (Nguyen et al. 2021, Eq. 3) for kernel CKA at large n.

For batches i = 1..k of rows, CKA_mb = sum_i HSIC_1(K_i, L_i) /
sqrt(sum_i HSIC_1(K_i, K_i) . sum_i HSIC_1(L_i, L_i)), with the unbiased HSIC_1
of Song et al. 2012, so the estimate does not depend on the batch size (the
biased estimator's bias would). Each batch costs O(b^2) memory per layer, so n
is unbounded. With the RBF kernel each batch uses its own median bandwidth.
With the linear and RBF kernels each layer is multiplied by the power of 2 that
brings the first batch's largest |value| into [0.5, 1) (exact; CKA is scale
invariant), the same factor for every batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

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
from cka_probe.measures.hsic import HSICTerms
from cka_probe.measures.kernels import CrossGram, resolve_kernel
from cka_probe.measures.matrix import check_rows, hsic_terms


class MinibatchCKA:
    """Accumulates unbiased HSIC of layers ``names_x`` against ``names_y`` (or each other) over batches.

    ``update(xs_batch, ys_batch)`` takes dicts name -> ``(b, d)`` with b >= 4;
    ``result()`` returns a DataFrame like ``cka_matrix``'s, with
    ``attrs["estimator"] == "minibatch"`` and ``attrs["batches"]``.
    """

    def __init__(
        self,
        names_x: Sequence,
        names_y: Sequence | None = None,
        *,
        kernel: str | CrossGram = "linear",
        sigma: float = 0.8,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ):
        self.names_x = list(names_x)
        self.names_y = None if names_y is None else list(names_y)
        self.kernel = resolve_kernel(kernel, sigma)
        self._device = None if device is None else torch.device(device)
        self._dtype_request = dtype
        self._sums: list[torch.Tensor] | None = None
        self._constant: list[bool] = []  # per layer (x then y): constant within every batch so far
        self._tops: list[float] = []  # per layer: max |x| of the first batch, which fixes its unit scale
        self.n = 0
        self.batches = 0

    def update(self, xs_batch: Mapping, ys_batch: Mapping | None = None) -> None:
        """Add one batch: the same b rows of every layer."""
        if (self.names_y is None) != (ys_batch is None):
            raise CKAProbeError("give ys_batch exactly when MinibatchCKA was built with names_y")
        tx = layers_in_order(xs_batch, self.names_x, "x", self._device)
        ty = None if ys_batch is None else layers_in_order(ys_batch, self.names_y, "y", self._device)
        labelled = {f"x layer {k}": t for k, t in zip(self.names_x, tx)}
        labelled |= {} if ty is None else {f"y layer {k}": t for k, t in zip(self.names_y, ty)}
        check_rows(labelled)
        extents = [Extent(t) for t in labelled.values()]
        if not self._tops:
            self._tops = [e.top if self.kernel.scale_free else 0.0 for e in extents]
        scaled = [unit_scaled(t, top) for t, top in zip(labelled.values(), self._tops)]
        tx, ty = scaled[: len(tx)], None if ty is None else scaled[len(tx) :]
        self._device = self._device or tx[0].device
        self._dims = ([t.shape[1] for t in tx], [t.shape[1] for t in (ty or tx)])
        self._dtype, tf32 = working_dtype(self._dtype_request, tx + (ty or []), self._device)
        labels_y = None if ty is None else [f"y layer {k}" for k in self.names_y]
        with matmul_precision(self._device, tf32):
            terms = hsic_terms(
                tx,
                ty,
                self.kernel,
                unbiased=True,
                dtype=self._dtype,
                labels_x=list(labelled)[: len(tx)],
                labels_y=labels_y,
            )
        parts = [terms.cross, terms.self_x, terms.self_y]
        self._sums = parts if self._sums is None else [s + p for s, p in zip(self._sums, parts)]
        flags = [e.constant() for e in extents]
        self._constant = [c and f for c, f in zip(self._constant or flags, flags)]
        self.n += common_rows(labelled)
        self.batches += 1

    def result(self) -> pd.DataFrame:
        """Minibatch CKA ``(Lx, Ly)`` over all batches so far."""
        if self._sums is None:
            raise CKAProbeError("no batches yet: call update first")
        labels = [f"x layer {k}" for k in self.names_x] + [f"y layer {k}" for k in self.names_y or []]
        for label, constant in zip(labels, self._constant):
            if constant:
                raise CKAProbeError(constant_message(f"{label} (in every batch)"))
        terms = HSICTerms(*self._sums, self.n, "minibatch")
        frame = result_frame(
            terms,
            self.names_x,
            self.names_x if self.names_y is None else self.names_y,
            estimator="minibatch",
            kernel=self.kernel.name,
            sigma=self.kernel.sigma,
            dims_x=self._dims[0],
            dims_y=self._dims[1],
            dtype=self._dtype,
            device=self._device,
        )
        frame.attrs["batches"] = self.batches
        return frame
