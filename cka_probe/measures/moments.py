"""Exact linear-kernel HSIC in feature space from sums over rows (never an n x n matrix).

Each side (the layers of ``xs``, or of ``ys``) is shifted by a fixed reference
point s per layer (the float64 mean of the first 1024 rows, in the input's dtype), so
that a large mean offset costs no precision: x~ = x - s. Every chunk of rows
becomes one matrix per side, Z_x = [X~_1 | X~_2 | ...], whose width is the sum
of the layer widths (3,072 for 12 layers of 256: no extra columns, so every
BLAS runs the GEMM on its aligned fast path). One working-dtype GEMM per chunk
adds Z_x^T Z_y to a float64 total M = X~^T Y~. The O(n d) sums are taken
beside it (each chunk's in the working dtype, added to float64 totals): the
column sums 1^T X~, and, for the unbiased estimator only, the squared row norms
q_x of each layer's X~ with X~^T q_y, q_x^T Y~ and Q = q_x^T q_y. These are
memory-bound, so they read each Z as few times as possible: q from blocks of
256 rows squared in cache, then one skinny GEMM per side, Z^T [q_x | q_y | 1],
for the column sums, the cross products and every layer's own X~_a^T q_a
(with a pass per product and per layer, the unbiased matrix took 1.14-1.22x
the irreducible GEMMs in ``benchmarks/bench_cka.py``; now 1.09-1.12x).
Centring afterwards, with d = mean of x~ and n rows:

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

from cka_probe.measures.hsic import HSICTerms, feature_hsic


def block_indicator(dims: Sequence[int], starts: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(width, L)`` float64: 1 where column i of Z is a feature of layer a."""
    indicator = torch.zeros(starts[-1], len(dims), dtype=torch.float64, device=device)
    for a, (start, d) in enumerate(zip(starts, dims)):
        indicator[start : start + d, a] = 1
    return indicator


class Chunk:
    """One chunk of one side: Z ``(c, width)`` in the working dtype, q ``(c, L)`` float64 (None if biased)."""

    def __init__(self, z: torch.Tensor, q: torch.Tensor | None):
        self.z, self.q = z, q

    def layer(self, side: Side, a: int) -> Chunk:
        """Layer ``a``'s columns of Z (a view) and its column of q."""
        return Chunk(side.layer_view(self.z, a), None if self.q is None else self.q[:, a : a + 1])


class Side:
    """The layers of one side: their shift, layout in Z and float64 sums of columns and of q.

    Layer a occupies the contiguous columns ``starts[a]:starts[a + 1]`` of Z, so
    each layer's own matrix is a view of Z.
    """

    def __init__(self, dims: Sequence[int], unbiased: bool, dtype: torch.dtype, device: torch.device):
        self.dims, self.unbiased, self.dtype, self.device = list(dims), unbiased, dtype, device
        self.starts = [0, *torch.tensor(self.dims).cumsum(0).tolist()]
        self.width = self.starts[-1]
        self.indicator = block_indicator(self.dims, self.starts, device)
        self.col_sum = torch.zeros(self.width, dtype=torch.float64, device=device)
        self.sum_q = torch.zeros(len(self.dims), dtype=torch.float64, device=device)
        self.shift: list[torch.Tensor] | None = None
        self.square_rows: torch.Tensor | None = None

    def set_reference(self, rows: Sequence[torch.Tensor]) -> None:
        """Shift by the mean of ``rows`` (one ``(m, d)`` per layer), taken in float64, in the rows' dtype."""
        self.shift = [r.to(self.device).mean(0, dtype=torch.float64).to(r.dtype) for r in rows]

    def shifted(self, chunk: Sequence[torch.Tensor]) -> Chunk:
        """Z = [X~_1 | X~_2 | ...] of one chunk of rows, with q (unbiased only); the sums are the
        accumulator's."""
        z = torch.empty(chunk[0].shape[0], self.width, dtype=self.dtype, device=self.device)
        for a, (x, shift) in enumerate(zip(chunk, self.shift)):
            torch.sub(x.to(self.device), shift, out=self.layer_view(z, a))
        if not self.unbiased:
            return Chunk(z, None)
        q = torch.empty(len(z), len(self.dims), dtype=self.dtype, device=self.device)
        squares = self.squares(min(len(z), SQUARE_ROWS))
        indicator = self.indicator.to(self.dtype)
        for start in range(0, len(z), SQUARE_ROWS):  # a block of rows squared in cache, then summed per layer
            block = z[start : start + SQUARE_ROWS]
            torch.mm(
                torch.mul(block, block, out=squares[: len(block)]),
                indicator,
                out=q[start : start + len(block)],
            )
        q = q.to(torch.float64)
        self.sum_q += q.sum(0)
        return Chunk(z, q)

    def squares(self, rows: int) -> torch.Tensor:
        """A ``(rows, width)`` working-dtype buffer for squared rows, kept from chunk to chunk."""
        if self.square_rows is None or len(self.square_rows) < rows:
            self.square_rows = torch.empty(rows, self.width, dtype=self.dtype, device=self.device)
        return self.square_rows

    def layer_view(self, z: torch.Tensor, a: int) -> torch.Tensor:
        """Layer ``a``'s columns X~_a of ``z``, a view."""
        return z[:, self.starts[a] : self.starts[a + 1]]

    def layer(self, a: int) -> Side:
        """A one-layer view of layer ``a`` whose sums share this side's storage."""
        view = Side([self.dims[a]], self.unbiased, self.dtype, self.device)
        view.col_sum = self.col_sum[self.starts[a] : self.starts[a + 1]]
        view.sum_q = self.sum_q[a : a + 1]
        return view


class Moments:
    """Float64 sums for one pair of sides: M = Z_l^T Z_r, Q = q_l^T q_r, Z_l^T q_r and q_l^T Z_r."""

    def __init__(self, left: Side, right: Side, symmetric: bool):
        self.left, self.right, self.symmetric = left, right, symmetric
        f64 = {"dtype": torch.float64, "device": left.device}
        self.m = torch.zeros(left.width, right.width, **f64)
        unbiased = left.unbiased
        self.q = torch.zeros(len(left.dims), len(right.dims), **f64)
        self.zq = torch.zeros(left.width if unbiased else 0, len(right.dims), **f64)
        self.qz = torch.zeros(len(left.dims), 0 if (symmetric or not unbiased) else right.width, **f64)
        self.blocks = list(zip(left.starts[:-1], left.starts[1:]))

    def add(self, left: Chunk, right: Chunk) -> None:
        """Add one chunk; a symmetric pair computes only the block upper triangle (about half the work)."""
        if self.symmetric:
            for start, stop in self.blocks:
                # float32 product, float64 sum
                self.m[:stop, start:stop] += left.z[:, :stop].T @ left.z[:, start:stop]
        else:
            self.m += left.z.T @ right.z
        if left.q is not None:
            self.q += left.q.T @ right.q  # zq and qz: FeatureAccumulator.add_narrow

    def full(self) -> torch.Tensor:
        """M with the lower block triangle of a symmetric pair filled in from the upper one."""
        if not self.symmetric or len(self.blocks) == 1:  # one block: the whole product was computed
            return self.m
        stops = torch.tensor(
            [stop for start, stop in self.blocks for _ in range(stop - start)], device=self.m.device
        )
        upper = torch.arange(self.m.shape[0], device=self.m.device)[:, None] < stops[None, :]
        return torch.where(upper, self.m, self.m.T)

    def hsic(self, n: int) -> torch.Tensor:
        """HSIC ``(Ll, Lr)`` of every layer pair, biased or unbiased as the sides were built."""
        left, right, m = self.left, self.right, self.full()
        in_l, in_r = left.indicator, right.indicator
        d_l, d_r = left.col_sum / n, right.col_sum / n
        centred_sq = torch.addr(m, d_l, d_r, alpha=-n).square_()  # (X_c^T Y_c)^2 elementwise
        cross_sq = in_l.T @ centred_sq @ in_r
        if not left.unbiased:
            return feature_hsic(cross_sq, n)
        qz = self.zq.T if self.symmetric else self.qz
        shift_l, shift_r = in_l * d_l[:, None], in_r * d_r[:, None]
        c_l, c_r = (shift_l * shift_l).sum(0), (shift_r * shift_r).sum(0)
        row_norms = (
            self.q
            - 2 * qz @ shift_r
            - 2 * shift_l.T @ self.zq
            + 4 * shift_l.T @ m @ shift_r
            + torch.outer(left.sum_q, c_r)
            + torch.outer(c_l, right.sum_q)
            - 3 * n * torch.outer(c_l, c_r)
        )
        total_l, total_r = left.sum_q - n * c_l, right.sum_q - n * c_r
        return feature_hsic(cross_sq, n, row_norms, total_l[:, None], total_r[None, :])


def self_moments(side: Side) -> list[Moments]:
    """One symmetric ``Moments`` per layer of ``side``: its self-terms."""
    return [Moments(view, view, True) for view in map(side.layer, range(len(side.dims)))]


SQUARE_ROWS = 256  # rows squared at a time for q: 3 MiB of float32 at width 3,072, so they stay in cache
REFERENCE_ROWS = 1024  # default shift: the mean of the first rows seen (offset left: about sigma / 32)


class FeatureAccumulator:
    """Streamed sums for the linear HSIC of layers ``xs`` against ``ys`` (or ``xs`` against itself)."""

    def __init__(self, dims_x, dims_y, *, unbiased: bool, dtype: torch.dtype, device: torch.device):
        self.x = Side(dims_x, unbiased, dtype, device)
        self.symmetric = dims_y is None
        self.y = self.x if self.symmetric else Side(dims_y, unbiased, dtype, device)
        self.cross = Moments(self.x, self.y, self.symmetric)
        self.own_x = [] if self.symmetric else self_moments(self.x)
        self.own_y = [] if self.symmetric else self_moments(self.y)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    @property
    def n(self) -> int:
        """Rows added so far."""
        return int(self.count.item())

    def set_reference(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None) -> None:
        """Fix the shifts from reference rows of every layer (see ``Side.set_reference``)."""
        self.x.set_reference(xs)
        if not self.symmetric:
            self.y.set_reference(ys)

    def add(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor] | None) -> None:
        """Add the same rows of every layer: ``xs[a] (c, dx_a)``, ``ys[b] (c, dy_b)``."""
        if self.x.shift is None:
            self.set_reference(
                [x[:REFERENCE_ROWS] for x in xs], None if ys is None else [y[:REFERENCE_ROWS] for y in ys]
            )
        cx = self.x.shifted(xs)
        cy = cx if self.symmetric else self.y.shifted(ys)
        self.cross.add(cx, cy)
        for side, chunk, own in ((self.x, cx, self.own_x), (self.y, cy, self.own_y)):
            for a, moments in enumerate(own):
                view = chunk.layer(side, a)
                moments.add(view, view)
        self.add_narrow(cx, cy)
        self.count += xs[0].shape[0]

    def add_narrow(self, cx: Chunk, cy: Chunk) -> None:
        """The O(n·d·L) sums of one chunk: column sums and, unbiased, one skinny GEMM Z^T [q_x | q_y | 1] per
        side.

        That GEMM reads each Z once for its column sums, the cross pair's X~^T q_y and q_x^T Y~ and every
        layer's own X~_a^T q_a (in the working dtype, added to float64 totals).
        """
        sides = [(self.x, cx)] if self.symmetric else [(self.x, cx), (self.y, cy)]
        if cx.q is None:
            for side, chunk in sides:
                side.col_sum += chunk.z.sum(0)
            return
        qs = [chunk.q for _, chunk in sides]
        ones = torch.ones(cx.z.shape[0], 1, dtype=torch.float64, device=cx.z.device)
        right = torch.cat([*qs, ones], 1).to(cx.z.dtype)  # (c, L_x + L_y + 1)
        # (width, L_x + L_y + 1) each
        products = [(chunk.z.T @ right).to(torch.float64) for _, chunk in sides]
        for (side, _), p in zip(sides, products):
            side.col_sum += p[:, -1]
        lx = len(self.x.dims)
        if self.symmetric:
            self.cross.zq += products[0][:, :lx]
            return
        self.cross.zq += products[0][:, lx:-1]
        self.cross.qz += products[1][:, :lx].T
        for (side, _), p, own, offset in zip(sides, products, (self.own_x, self.own_y), (0, lx)):
            for a, moments in enumerate(own):
                moments.zq += p[side.starts[a] : side.starts[a + 1], offset + a : offset + a + 1]

    def sums(self) -> list[torch.Tensor]:
        """Every additive float64 state tensor (sum them across processes to merge)."""
        pairs = [self.cross, *self.own_x, *self.own_y]
        sides = [self.x] if self.symmetric else [self.x, self.y]
        return [
            self.count,
            *(t for s in sides for t in (s.col_sum, s.sum_q)),
            *(t for p in pairs for t in (p.m, p.q, p.zq, p.qz)),
        ]

    def terms(self) -> HSICTerms:
        """HSIC of all pairs and self-terms."""
        n = self.n
        cross = self.cross.hsic(n)
        if self.symmetric:
            self_x = self_y = cross.diagonal().clone()
        else:
            self_x = torch.cat([m.hsic(n).flatten() for m in self.own_x])
            self_y = torch.cat([m.hsic(n).flatten() for m in self.own_y])
        return HSICTerms(cross, self_x, self_y, n, "feature")
