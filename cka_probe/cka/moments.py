"""Exact linear-kernel HSIC in feature space from sums over rows (never an n x n matrix).

Each side (the layers of ``xs``, or of ``ys``) is shifted by a fixed reference
point s per layer (the mean of the first rows seen, in the input's dtype), so
that a large mean offset costs no precision: x~ = x - s. Every chunk of rows
becomes one augmented matrix per side, Z_x = [X~ | 1 | q_x] ``(c, D + 1 + L)``
(q_x: squared row norms of each layer's X~, for the unbiased estimator only),
and one working-dtype GEMM per chunk adds Z_x^T Z_y to a float64 total M. M
holds X~^T Y~, the column sums of X~ and Y~, X~^T q_y and q_x^T Y~; Q = q_x^T q_y
is summed in float64. Centring afterwards, with d = mean of x~ and n rows:

    X_c^T Y_c = X~^T Y~ - n d_x d_y^T
    r_x^T r_y = Q - 2 (q_x^T Y~) D_y - 2 D_x^T (X~^T q_y) + 4 D_x^T (X~^T Y~) D_y
                + (1^T q_x) c_y^T + c_x (1^T q_y)^T - 3 n c_x c_y^T

where r = squared row norms of the centred layer, D_x ``(Dx, Lx)`` holds d_x
in layer a's rows of column a, and c_x = ||d_x||^2 per layer. The sums do not
depend on how rows are split into chunks, so results are chunk-size independent
and add across processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cka_probe.cka.hsic import HSICTerms, feature_hsic


def block_indicator(dims: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(sum(dims), L)`` float64 with ones where feature row i belongs to layer column a."""
    layer = torch.repeat_interleave(torch.arange(len(dims), device=device), torch.tensor(dims, device=device))
    return torch.nn.functional.one_hot(layer, len(dims)).to(torch.float64)


class Side:
    """The layers of one side: their shift, layout in the augmented matrix and float64 sums of q."""

    def __init__(self, dims: Sequence[int], unbiased: bool, dtype: torch.dtype, device: torch.device):
        self.dims, self.unbiased, self.dtype, self.device = list(dims), unbiased, dtype, device
        self.offsets = [0, *torch.tensor(self.dims).cumsum(0).tolist()]
        self.total = self.offsets[-1]
        self.width = self.total + 1 + (len(self.dims) if unbiased else 0)
        self.indicator = block_indicator(self.dims, device)
        self.sum_q = torch.zeros(len(self.dims), dtype=torch.float64, device=device)
        self.varying = torch.zeros(len(self.dims), dtype=torch.float64, device=device)
        self.shift: list[torch.Tensor] | None = None
        self.first_row: list[torch.Tensor] | None = None

    def set_reference(self, rows: Sequence[torch.Tensor]) -> None:
        """Shift by the mean of ``rows`` (one ``(m, d)`` per layer); its first row defines 'constant'."""
        self.shift = [r.mean(0).to(self.device) for r in rows]
        self.first_row = [r[0].to(self.device) for r in rows]

    def augment(self, chunk: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``Z = [X~ | 1 | q]`` ``(c, width)`` in the working dtype and q ``(c, L)`` float64 (None if biased)."""
        rows = chunk[0].shape[0]
        z = torch.empty(rows, self.width, dtype=self.dtype, device=self.device)
        for a, (x, shift, first) in enumerate(zip(chunk, self.shift, self.first_row)):
            x = x.to(self.device)
            torch.sub(x, shift.to(x.dtype), out=z[:, self.offsets[a] : self.offsets[a + 1]])
            self.varying[a] += float(bool((x != first.to(x.dtype)).any()))
        z[:, self.total] = 1
        if not self.unbiased:
            return z, None
        for a in range(len(self.dims)):
            block = z[:, self.offsets[a] : self.offsets[a + 1]]
            z[:, self.total + 1 + a] = (block * block).sum(1)
        q = z[:, self.total + 1 :].to(torch.float64)
        self.sum_q += q.sum(0)
        return z, q

    def layer_columns(self, a: int) -> torch.Tensor:
        """Column indices of layer ``a``'s own augmented matrix [X~_a | 1 | q_a] inside Z."""
        cols = list(range(self.offsets[a], self.offsets[a + 1])) + [self.total]
        if self.unbiased:
            cols.append(self.total + 1 + a)
        return torch.tensor(cols, device=self.device)

    def layer(self, a: int) -> Side:
        """A one-layer view of layer ``a`` whose ``sum_q`` shares this side's storage."""
        view = Side([self.dims[a]], self.unbiased, self.dtype, self.device)
        view.sum_q = self.sum_q[a : a + 1]
        return view


class Moments:
    """Float64 sums M = sum Z_l^T Z_r and Q = sum q_l^T q_r for one pair of sides."""

    def __init__(self, left: Side, right: Side, symmetric: bool):
        self.left, self.right, self.symmetric = left, right, symmetric
        self.m = torch.zeros(left.width, right.width, dtype=torch.float64, device=left.device)
        self.q = torch.zeros(len(left.dims), len(right.dims), dtype=torch.float64, device=left.device)
        self.blocks = list(zip(left.offsets[:-1], left.offsets[1:])) + [(left.total, left.width)]

    def add(self, zl: torch.Tensor, ql: torch.Tensor | None, zr: torch.Tensor, qr: torch.Tensor | None) -> None:
        """Add one chunk; a symmetric pair computes only the block upper triangle (about half the work)."""
        if self.symmetric:
            for start, stop in self.blocks:
                self.m[:stop, start:stop] += (zl[:, :stop].T @ zl[:, start:stop]).to(torch.float64)
        else:
            self.m += (zl.T @ zr).to(torch.float64)
        if ql is not None:
            self.q += ql.T @ qr

    def full(self) -> torch.Tensor:
        """M with the lower block triangle of a symmetric pair filled in from the upper one."""
        if not self.symmetric:
            return self.m
        stops = torch.tensor([stop for start, stop in self.blocks for _ in range(stop - start)], device=self.m.device)
        upper = torch.arange(self.m.shape[0], device=self.m.device)[:, None] < stops[None, :]
        return torch.where(upper, self.m, self.m.T)

    def hsic(self, n: int) -> torch.Tensor:
        """HSIC ``(Ll, Lr)`` of every layer pair, biased or unbiased as the sides were built."""
        left, right, m = self.left, self.right, self.full()
        g = m[: left.total, : right.total]
        d_l, d_r = m[: left.total, right.total] / n, m[left.total, : right.total] / n
        centred = g - n * torch.outer(d_l, d_r)
        cross_sq = left.indicator.T @ (centred * centred) @ right.indicator
        if not left.unbiased:
            return feature_hsic(cross_sq, n)
        shift_l, shift_r = left.indicator * d_l[:, None], right.indicator * d_r[:, None]
        c_l, c_r = (shift_l * shift_l).sum(0), (shift_r * shift_r).sum(0)
        q_y = m[left.total + 1 :, : right.total]
        x_q = m[: left.total, right.total + 1 :]
        row_norms = (
            self.q
            - 2 * q_y @ shift_r
            - 2 * shift_l.T @ x_q
            + 4 * shift_l.T @ g @ shift_r
            + torch.outer(left.sum_q, c_r)
            + torch.outer(c_l, right.sum_q)
            - 3 * n * torch.outer(c_l, c_r)
        )
        total_l, total_r = left.sum_q - n * c_l, right.sum_q - n * c_r
        return feature_hsic(cross_sq, n, row_norms, total_l[:, None], total_r[None, :])


class FeatureAccumulator:
    """Streamed sums for the linear HSIC of layers ``xs`` against ``ys`` (or ``xs`` against itself)."""

    def __init__(self, dims_x, dims_y, *, unbiased: bool, dtype: torch.dtype, device: torch.device):
        self.x = Side(dims_x, unbiased, dtype, device)
        self.symmetric = dims_y is None
        self.y = self.x if self.symmetric else Side(dims_y, unbiased, dtype, device)
        self.cross = Moments(self.x, self.y, self.symmetric)
        self.own_x = [] if self.symmetric else [Moments(self.x.layer(a), self.x.layer(a), True) for a in range(len(dims_x))]
        self.own_y = [] if self.symmetric else [Moments(self.y.layer(a), self.y.layer(a), True) for a in range(len(dims_y))]
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    @property
    def n(self) -> int:
        return int(self.count.item())

    def set_reference(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None) -> None:
        self.x.set_reference(xs)
        if not self.symmetric:
            self.y.set_reference(ys)

    def add(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None) -> None:
        """Add the same rows of every layer: ``xs[a] (c, dx_a)``, ``ys[b] (c, dy_b)``."""
        if self.x.shift is None:
            self.set_reference(xs, ys)
        zx, qx = self.x.augment(xs)
        zy, qy = (zx, qx) if self.symmetric else self.y.augment(ys)
        self.cross.add(zx, qx, zy, qy)
        for side, z, q, own in ((self.x, zx, qx, self.own_x), (self.y, zy, qy, self.own_y)):
            for a, moments in enumerate(own):
                za = z.index_select(1, side.layer_columns(a))
                qa = None if q is None else q[:, a : a + 1]
                moments.add(za, qa, za, qa)
        self.count += xs[0].shape[0]

    def sums(self) -> list[torch.Tensor]:
        """Every additive float64 state tensor (sum them across processes to merge)."""
        pairs = [self.cross, *self.own_x, *self.own_y]
        sides = [self.x] if self.symmetric else [self.x, self.y]
        return [self.count, *(t for s in sides for t in (s.sum_q, s.varying)), *(t for p in pairs for t in (p.m, p.q))]

    def terms(self) -> HSICTerms:
        n = self.n
        cross = self.cross.hsic(n)
        if self.symmetric:
            self_x = self_y = cross.diagonal().clone()
        else:
            self_x = torch.cat([m.hsic(n).flatten() for m in self.own_x])
            self_y = torch.cat([m.hsic(n).flatten() for m in self.own_y])
        return HSICTerms(cross, self_x, self_y, n, "feature", self.x.varying == 0, self.y.varying == 0)
