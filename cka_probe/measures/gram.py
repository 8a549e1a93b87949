"""Gram-space HSIC for any kernel, in two passes over blocks of Gram rows.

1. Per layer: the row sums K1 and the diagonal of its Gram K. For the RBF
   kernel with the exact median bandwidth this pass holds that layer's n^2
   squared distances once: their median gives s^2, and the same matrix, turned
   into K in place (``exp_``), gives the row sums. Other kernels (and the
   subsampled median) visit K block by block.
2. All layers at once, one block of b rows at a time, upper block triangle only
   (K is symmetric): the block is centred in the working dtype,
   HKH = K - a 1^T - 1 a^T + c with a = K1 / n, c = 1^T K 1 / n^2 (biased), or
   U-centred (Song et al. 2012; the form of Kornblith et al.'s code):
   a = K~1 / (n-2), c = 1^T K~ 1 / ((n-1)(n-2)) and a zero diagonal (unbiased).
   Then one GEMM of the flattened blocks of every layer (x and y stacked) adds
   <K'_a, K'_b> for all pairs to a float64 total, the part right of the
   diagonal block counted twice (it stands for its mirror image too).
   HSIC_0 = <HKH, HLH> / (n-1)^2 and HSIC_1 = <K', L'> / (n(n-3)).

Centring before the product keeps float32 products accurate (no cancellation
of large uncentred sums). Memory: the blocks of pass 2 hold at most
``BLOCK_BUDGET`` bytes; pass 1 of the exact RBF median holds one layer's n^2
distances (float32: 64 MiB at n = 4,096) plus its n(n-1)/2 upper entries.
Each Gram entry above the diagonal is computed twice (once per pass).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import is_constant
from cka_probe.measures.hsic import HSICTerms
from cka_probe.measures.kernels import Kernel, median_of_distances, squared_distances

BLOCK_BUDGET = 2**28  # bytes held by the centred Gram blocks of one block of rows (256 MiB)


def _prepare(x: torch.Tensor, kernel: Kernel, dtype: torch.dtype) -> torch.Tensor:
    """``x (n, d)`` in the working dtype, centred in float64 first for translation-invariant kernels."""
    if kernel.centre:
        x64 = x.to(torch.float64)
        return (x64 - x64.mean(0)).to(dtype)
    return x.to(dtype)


def row_blocks(n: int, rows: int):
    """``(start, stop)`` of consecutive blocks of ``rows`` rows."""
    return [(start, min(n, start + rows)) for start in range(0, n, rows)]


class LayerGram:
    """One layer's cross-Gram function, RBF bandwidth, and its Gram's row sums and diagonal (float64,
    ``(n,)``)."""

    def __init__(self, x: torch.Tensor, label: str, kernel: Kernel, rows: int):
        self.x = x
        if kernel.name == "rbf" and kernel.median_rows is None:
            d = squared_distances(x, x).fill_diagonal_(0)
            self.gram, self.bandwidth = kernel.rbf(kernel.sigma**2 * median_of_distances(d))
            k = d.mul_(-0.5 / self.bandwidth).exp_() if self.bandwidth > 0 else d.zero_()
            self.rows, self.diag = k.sum(1).double(), k.diagonal().double()
        else:
            self.gram, self.bandwidth = kernel.for_layer(x)
            sums = [
                (block.sum(1), block.diagonal(offset=start))
                for start, stop in row_blocks(len(x), rows)
                for block in [self.gram(x[start:stop], x)]
            ]
            self.rows = torch.cat([s for s, _ in sums]).double()
            self.diag = torch.cat([g for _, g in sums]).double()
        if self.bandwidth == 0 and not is_constant(x):
            raise CKAProbeError(
                f"{label}: RBF bandwidth is 0 (over half of all row pairs are identical rows)"
            )

    def centring(self, unbiased: bool) -> tuple[torch.Tensor, float]:
        """``(a (n,), c)`` with K' = K - a 1^T - 1 a^T + c (and a zero diagonal when unbiased)."""
        n = len(self.rows)
        if not unbiased:
            return self.rows / n, float(self.rows.sum()) / n**2
        off = self.rows - self.diag
        return off / (n - 2), float(off.sum()) / ((n - 1) * (n - 2))

    def centred_block(
        self,
        start: int,
        stop: int,
        a: torch.Tensor,
        c: float,
        unbiased: bool,
        square: torch.Tensor,
        rest: torch.Tensor,
    ) -> None:
        """K' rows ``start:stop``, columns ``start:``, written into ``square`` ``(b, b)`` and ``rest`` ``(b, n
        - stop)``."""
        block = self.gram(self.x[start:stop], self.x[start:])
        block[:, : stop - start].diagonal().copy_(self.diag[start:stop])
        block.sub_(a[start:stop, None].to(block.dtype)).sub_((a[None, start:] - c).to(block.dtype))
        if unbiased:
            block[:, : stop - start].diagonal().zero_()
        square.copy_(block[:, : stop - start])
        rest.copy_(block[:, stop - start :])


def gram_terms(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor] | None,
    kernel: Kernel,
    *,
    unbiased: bool,
    dtype: torch.dtype,
    labels_x: Sequence[str],
    labels_y: Sequence[str] | None = None,
) -> HSICTerms:
    """HSIC of all layer pairs of ``xs`` and ``ys`` (each ``(n, d_l)``), or of ``xs`` with itself when ``ys``
    is None."""
    n = xs[0].shape[0]
    layers = list(xs) + ([] if ys is None else list(ys))
    labels = list(labels_x) + ([] if ys is None else list(labels_y))
    itemsize = torch.finfo(dtype).bits // 8
    rows = max(1, BLOCK_BUDGET // (itemsize * len(layers) * n))
    grams = [LayerGram(_prepare(x, kernel, dtype), label, kernel, rows) for x, label in zip(layers, labels)]
    centring = [g.centring(unbiased) for g in grams]
    inner = torch.zeros(len(grams), len(grams), dtype=torch.float64, device=xs[0].device)
    for start, stop in tqdm(row_blocks(n, rows), desc="Gram blocks", leave=False, disable=None):
        b = stop - start
        square = torch.empty(len(grams), b, b, dtype=dtype, device=inner.device)
        rest = torch.empty(len(grams), b, n - stop, dtype=dtype, device=inner.device)
        for g, (a, c), sq, re in zip(grams, centring, square, rest):
            g.centred_block(start, stop, a, c, unbiased, sq, re)
        square, rest = square.flatten(1), rest.flatten(1)
        inner += square @ square.T  # working-dtype products of centred blocks, float64 sums
        inner += 2 * (rest @ rest.T)  # each block above the diagonal stands for its mirror image too
    hsic = inner / (n * (n - 3) if unbiased else (n - 1) ** 2)
    own = hsic.diagonal()
    lx = len(xs)
    cross = hsic if ys is None else hsic[:lx, lx:]
    bandwidths = [g.bandwidth for g in grams]
    return HSICTerms(
        cross.clone(),
        own[:lx].clone(),
        own[:lx].clone() if ys is None else own[lx:].clone(),
        n,
        "gram",
        bandwidths[:lx],
        bandwidths[:lx] if ys is None else bandwidths[lx:],
    )
