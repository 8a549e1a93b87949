"""Representational similarity analysis (Kriegeskorte et al. 2008) for every layer pair.

Each layer's representational dissimilarity matrix (RDM) ``(n, n)`` compares
every pair of samples (rows):

* ``rdm="correlation"``: 1 - Pearson correlation of rows i and j across features;
* ``rdm="euclidean"``: ||x_i - x_j||.

Two RDMs are compared by the correlation of their n(n-1)/2 upper-triangle
entries (i < j): ``compare="spearman"`` (ranks, ties averaged; the usual choice,
invariant to monotone transforms of either RDM) or ``"pearson"``. The result is
a similarity in [-1, 1], float64.

Memory: every layer's standardised upper triangle is held in the working
dtype (float32 for float32 inputs: 4 L n(n-1)/2 bytes, 24 layers at n = 4,096:
0.8 GiB); above ``MEMORY_BUDGET`` that is a ``CKAProbeError`` stating the need.
RDM rows are built in blocks in the working dtype; ranks, standardisation and
the sums of the blockwise products are float64.
Undefined cases (clear errors): a row without variance across its features for
the correlation RDM, an RDM whose entries are all equal (fewer than 4 rows and
constant layers are refused by the registry's input check).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures.kernels import squared_distances

MEMORY_BUDGET = 4 * 2**30  # bytes of standardised RDM entries held at once
BLOCK_VALUES = 2**24  # RDM entries built per block
RDMS, COMPARES = ("correlation", "euclidean"), ("spearman", "pearson")


def prepared(x: torch.Tensor, label: str, rdm: str, dtype: torch.dtype) -> torch.Tensor:
    """``x (n, d)`` ready for RDM rows: unit-norm row-centred rows (correlation) or column-centred data."""
    x64 = x.to(torch.float64)
    if rdm == "euclidean":
        return (x64 - x64.mean(0)).to(dtype)
    rows = x64 - x64.mean(1, keepdim=True)
    norms = rows.square().sum(1).sqrt()
    if bool((norms == 0).any()):
        raise CKAProbeError(
            f"{label}: row {int((norms == 0).nonzero()[0])} is constant across its features; "
            "its correlation distances are undefined (use rdm='euclidean')"
        )
    return (rows / norms[:, None]).to(dtype)


def upper_triangle(p: torch.Tensor, rdm: str) -> torch.Tensor:
    """The RDM entries i < j of prepared rows ``p (n, d)``, row by row, float64 ``(n(n-1)/2,)``."""
    n = p.shape[0]
    rows = max(1, BLOCK_VALUES // n)
    parts = []
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        if rdm == "correlation":
            block = 1 - p[start:stop] @ p[start:].T
        else:
            block = squared_distances(p[start:stop], p[start:]).sqrt_()
        above = (
            torch.arange(n - start, device=p.device)[None, :]
            > torch.arange(stop - start, device=p.device)[:, None]
        )
        parts.append(block[above].to(torch.float64))
    return torch.cat(parts)


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..m of ``v (m,)`` float64, tied values sharing their average rank (as scipy's rankdata)."""
    values, order = torch.sort(v)
    _, counts = torch.unique_consecutive(values, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    ranks = torch.empty_like(v)
    ranks[order] = torch.repeat_interleave(ends - (counts - 1) / 2, counts)
    return ranks


def standardised(x: torch.Tensor, label: str, rdm: str, compare: str, dtype: torch.dtype) -> torch.Tensor:
    """The layer's upper-triangle RDM (ranked for Spearman), centred and scaled to unit norm, ``(m,)`` in
    ``dtype``."""
    v = upper_triangle(prepared(x, label, rdm, dtype), rdm)
    if compare == "spearman":
        v = average_ranks(v)
    v = v - v.mean()
    norm = float(v.square().sum().sqrt())
    if norm == 0:
        raise CKAProbeError(f"{label}: every entry of its RDM is equal; RSA is undefined")
    return (v / norm).to(dtype)


def rsa_grid(
    xs: Sequence[torch.Tensor],
    ys: Sequence[torch.Tensor] | None,
    labels_x: Sequence[str],
    labels_y: Sequence[str],
    *,
    rdm: str = "correlation",
    compare: str = "spearman",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``(Lx, Ly)`` float64 RSA of layers ``xs`` against ``ys`` (each ``(n, d)``; ``ys=None``: xs with
    itself)."""
    if rdm not in RDMS or compare not in COMPARES:
        raise CKAProbeError(
            f"rdm must be one of {RDMS} and compare one of {COMPARES}, got {rdm!r}, {compare!r}"
        )
    n = xs[0].shape[0]
    layers = len(xs) + (0 if ys is None else len(ys))
    need = torch.finfo(dtype).bits // 8 * layers * n * (n - 1) // 2
    if need > MEMORY_BUDGET:
        raise CKAProbeError(
            f"RSA of {layers} layers at n={n:,} holds {need / 2**30:.1f} GiB of RDM entries, "
            f"more than its budget of {MEMORY_BUDGET / 2**30:.0f} GiB; use fewer rows or layers"
        )
    zx = torch.stack([standardised(x, label, rdm, compare, dtype) for x, label in zip(xs, labels_x)])
    zy = (
        zx
        if ys is None
        else torch.stack([standardised(y, label, rdm, compare, dtype) for y, label in zip(ys, labels_y)])
    )
    out = torch.zeros(len(zx), len(zy), dtype=torch.float64)
    for start in range(0, zx.shape[1], BLOCK_VALUES):  # working-dtype products, float64 sum
        out += zx[:, start : start + BLOCK_VALUES] @ zy[:, start : start + BLOCK_VALUES].T
    return out
