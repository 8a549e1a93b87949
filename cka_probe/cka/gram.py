"""Gram-space HSIC for any kernel, one block of Gram rows at a time.

For a block of b rows, the b x n slice of every layer's Gram is built once;
the sums that ``hsic.gram_hsic`` needs are accumulated from it in float64:
<K_a, L_b> for all layer pairs (one GEMM of the flattened slices), each Gram's
row sums and diagonal. Memory holds (Lx + Ly) b n values, never L n^2, and each
Gram entry is computed once (a per-pair loop computes it Lx + Ly times).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm import tqdm

from cka_probe.cka._tensor import is_constant
from cka_probe.cka.hsic import HSICTerms, gram_hsic
from cka_probe.cka.kernels import Kernel
from cka_probe.errors import CKAProbeError

BLOCK_BUDGET = 2**25  # float64 values held by the Gram slices of one block (256 MiB)


class GramSums:
    """Row sums ``(L, n)``, diagonals ``(L, n)`` and <K_a, K_a> ``(L,)`` of L Grams, filled block by block."""

    def __init__(self, layers: int, n: int, device: torch.device):
        self.rows = torch.zeros(layers, n, dtype=torch.float64, device=device)
        self.diag = torch.zeros(layers, n, dtype=torch.float64, device=device)
        self.self_inner = torch.zeros(layers, dtype=torch.float64, device=device)

    def add(self, block: torch.Tensor, start: int) -> None:
        """Record the Gram rows ``block (L, b, n)`` that start at row ``start``."""
        stop = start + block.shape[1]
        self.rows[:, start:stop] = block.sum(2)
        self.diag[:, start:stop] = block.diagonal(offset=start, dim1=1, dim2=2)
        self.self_inner += (block * block).sum((1, 2))


def pair_hsic(inner: torch.Tensor, gx: GramSums, gy: GramSums, n: int, unbiased: bool, matrix: bool) -> torch.Tensor:
    """HSIC for all pairs ``(Lx, Ly)`` (``matrix``) or for matching pairs ``(L,)``, from raw Gram sums."""
    if matrix:
        dot, left, right = (lambda a, b: a @ b.T), (lambda v: v[:, None]), (lambda v: v[None, :])
    else:
        dot, left, right = (lambda a, b: (a * b).sum(1)), (lambda v: v), (lambda v: v)
    return gram_hsic(
        inner,
        dot(gx.rows, gy.rows),
        dot(gx.rows, gy.diag),
        dot(gx.diag, gy.rows),
        dot(gx.diag, gy.diag),
        left(gx.rows.sum(1)),
        right(gy.rows.sum(1)),
        left(gx.diag.sum(1)),
        right(gy.diag.sum(1)),
        n,
        unbiased,
    )


def _prepare(x: torch.Tensor, kernel: Kernel, dtype: torch.dtype) -> torch.Tensor:
    """``x (n, d)`` in the working dtype, centred in float64 first for translation-invariant kernels."""
    if kernel.centre:
        x64 = x.to(torch.float64)
        return (x64 - x64.mean(0)).to(dtype)
    return x.to(dtype)


class _Layers:
    """The prepared layers of one side with their cross-Gram functions and RBF bandwidths."""

    def __init__(self, xs: Sequence[torch.Tensor], labels: Sequence[str], kernel: Kernel, dtype: torch.dtype):
        self.data = [_prepare(x, kernel, dtype) for x in xs]
        self.grams, self.bandwidths = [], []
        self.constant = torch.tensor([is_constant(x) for x in xs], device=xs[0].device)
        for x, label, constant in zip(self.data, labels, self.constant):
            gram, bandwidth = kernel.for_layer(x)
            if bandwidth == 0 and not constant:
                raise CKAProbeError(f"{label}: RBF bandwidth is 0 (over half of all row pairs are identical rows)")
            self.grams.append(gram)
            self.bandwidths.append(bandwidth)

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Gram rows ``start:stop`` of every layer, ``(L, stop - start, n)`` float64."""
        return torch.stack([gram(x[start:stop], x).to(torch.float64) for x, gram in zip(self.data, self.grams)])


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
    """HSIC of all layer pairs of ``xs`` and ``ys`` (each ``(n, d_l)``), or of ``xs`` with itself when ``ys`` is None."""
    left = _Layers(xs, labels_x, kernel, dtype)
    right = left if ys is None else _Layers(ys, labels_y, kernel, dtype)
    n, device = xs[0].shape[0], xs[0].device
    rows_per_block = max(1, BLOCK_BUDGET // ((len(left.data) + len(right.data)) * n))
    inner = torch.zeros(len(left.data), len(right.data), dtype=torch.float64, device=device)
    gx, gy = GramSums(len(left.data), n, device), GramSums(len(right.data), n, device)
    for start in tqdm(range(0, n, rows_per_block), desc="Gram blocks", leave=False, disable=None):
        stop = min(n, start + rows_per_block)
        bx = left.block(start, stop)
        by = bx if ys is None else right.block(start, stop)
        inner += bx.flatten(1) @ by.flatten(1).T
        gx.add(bx, start)
        if ys is not None:
            gy.add(by, start)
    if ys is None:
        gy = gx
    cross = pair_hsic(inner, gx, gy, n, unbiased, matrix=True)
    self_x = cross.diagonal().clone() if ys is None else pair_hsic(gx.self_inner, gx, gx, n, unbiased, matrix=False)
    self_y = self_x if ys is None else pair_hsic(gy.self_inner, gy, gy, n, unbiased, matrix=False)
    return HSICTerms(cross, self_x, self_y, n, "gram", left.constant, right.constant, left.bandwidths, right.bandwidths)
