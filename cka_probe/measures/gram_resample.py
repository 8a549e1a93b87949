"""Linear CKA of many resamples of the same rows, in Gram space (the fast path of the
cross-task statistics; :mod:`cka_probe.inference.bootstrap` is the general one for any statistic).

The cross-task statistics (bootstrap intervals over utterances, permutation
p-values) recompute a whole L_a × L_b CKA matrix hundreds of times. With one
row per utterance (per-utterance mean representations, n a few hundred to a
few thousand), every resample is an index vector into the same n utterances,
so each layer's linear Gram matrix ``K = X Xᵀ`` (n, n) is built once.
:meth:`GramSet.terms` gathers one resample's rows and columns (the word tables' resamples);
:func:`bootstrap` and :func:`permuted` (and the tables, for all comparisons of a language at
once) never gather a resample's Grams: they are sums over count weights and permuted Grams,
batched over resamples as GEMMs ("Batched" below).

Estimators (Kornblith et al. 2019, Eq. 2–4; Song et al. 2012, Eq. 5):

* biased:   HSIC₀(K, L) = tr(K H L H) / (n−1)², H = I − 11ᵀ/n
* debiased: HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)),
  K̃ = K with its diagonal set to zero
* CKA(K, L) = HSIC(K, L) / √(HSIC(K, K) · HSIC(L, L))

Ties. A bootstrap resample holds copies of utterances; a pair of copies of one
utterance is a "self" pair, which the biased estimator over-weights (its upward
bias, ≈ d/(n+d) for unrelated representations, would grow with every copy and
push the whole bootstrap distribution above the point estimate). The pairs of
distinct positions holding the same utterance are therefore left out of every
HSIC sum, as the diagonal is in HSIC₁; for the identity resample nothing is
left out and the result is the usual estimator.

The Grams are of the centred rows (x − x̄ over the original n utterances):
CKA is translation invariant, but leaving tie pairs out of an uncentred Gram
is not, and a layer with a large mean offset then had its debiased resamples
pulled far below or above its estimate.

Batched (:func:`bootstrap_grids`, :func:`permuted_grids`; docs/resampled-statistics.md).
A bootstrap resample is its count weights c (n,), Σc = m (c_u = how often row u was drawn);
K is a layer's centred Gram, dk = diag K, K₀ = K − diag(dk), h = cᵀ(K∘L)c. The pairs the
resample's sums run over are those of distinct positions holding different rows, so
(Eq. D, debiased, the HSIC₁ terms of the resample):

    tr(K̃L̃) = Σ_{u≠v} c_u c_v K_uv L_uv = h − Σ_u c_u² dk_u dl_u
    1ᵀK̃1   = cᵀK₀c = cᵀKc − Σ_u c_u² dk_u
    1ᵀK̃L̃1 = Σ_u c_u (K₀c)_u (L₀c)_u,   K₀c = Kc − c∘dk

(Eq. B, biased) the resample's double-centred Gram is K_uv + x_u + x_v with x = μ/2 − Kc/m,
μ = cᵀKc/m², and the kept pairs weigh W = ccᵀ − diag(e), e = c² − c (a row's copies meet
themselves only on the diagonal); expanding Σ_uv W_uv (K_uv + x_u + x_v)(L_uv + y_u + y_v):

    (m − 1)² HSIC₀ = h − Σ e dk dl + 2 Σ (c∘Kc − e∘dk) y + 2 Σ x (c∘Lc − e∘dl)
                     + 2 Σ x y (m c − 2e) + 2 (xᵀc)(yᵀc)

Everything but h comes from g = Kc (R × n)·(n × n), one GEMM per layer per side, shared by
every comparison using the side. h runs over the upper triangle t = (u ≤ v) of the symmetric
products, T = n(n + 1)/2 entries with weights w_t = 2 − δ_uv (half the multiply-adds of n²):

    cᵀ(K∘L)c = Σ_t w_t c_u c_v K_uv L_uv      (bootstrap: (R × T)·(T × ΣL_a·L_b) per chunk of t)
    ⟨K, P L Pᵀ⟩ = Σ_t w_t K_uv L_π(u)π(v)       (permutations: R × (ΣL_a × T)·(T × L_b) per chunk of t)

The bootstrap stacks the Hadamard products of every layer pair of every comparison (and K∘K of
every layer, for the self-HSICs) as the columns of one GEMM, each formed once; the permutations
stack every first side sharing a second side as the rows, the second side's permuted entries
gathered once per permutation, permutation by permutation, from a layer-last copy of its Grams.
A resample holding a single distinct row has no pair to sum over: NaN. g, dl of a permutation are
(L1)[π], (diag L)[π].

Precision (the dtype policy): each layer is first multiplied by the power of 2 that brings its largest
|value| into [0.5, 1) (exact; CKA is scale invariant), so that no Gram entry overflows or underflows, and
its Gram is computed in float64. ``dtype`` (float64 here by default; the tables: float32 from 500 rows) is the
dtype the batched calls hold the Grams in (each entry rounded once) and compute the triangle GEMMs'
operands and products in; every chunk's GEMM result is summed in float64, and the vector sums (g, dk,
s) and the HSIC assembly are float64 whatever ``dtype``. Point estimates and :meth:`GramSet.terms` are
float64 throughout. float32 is within 1e-6 of float64 for values, interval ends and p-values
(tests/test_gram_batched.py; docs/resampled-statistics.md gives the errors measured at n = 1,000).

Memory (docs/resampled-statistics.md, "Memory"): a :class:`GramSet` holds its input layers as given and
no Gram; a batched call holds the Grams of its sides (4 or 8·n²·ΣL bytes, :func:`held_grams`), one
layer-last copy of one second side's Grams (4 or 8·n²·L_b), about ``max_bytes`` of chunk operands,
8·tile·n·ΣL bytes of per-tile sums and 8·R·(ΣL_a·L_b + ΣL) of cross terms (the size of the grids).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._tensor import Extent, constant_message, unit_scaled_array
from cka_probe.measures.hsic import gram_hsic


@dataclass(frozen=True)
class HSICTerms:
    """What one side contributes to HSIC for one resample (L layers, n rows).

    flat (L, n²): the (masked, centred or zero-diagonal) Gram matrices, flattened;
    total (L,): 1ᵀK̃1 and rowsum (L, n): K̃1, used by the debiased estimator only.
    """

    flat: np.ndarray
    total: np.ndarray
    rowsum: np.ndarray


class GramSet:
    """Linear Gram matrices ``K_l = X_l X_lᵀ`` of one model's layers over the same n utterances.

    ``layers`` maps layer name -> (n, d_l) array, in model order. The arrays are held as given (not
    copied; an array-like, such as a store's dataset, is read by ``np.asarray`` each time a layer is
    used) and each layer's Gram is computed from them when needed (:meth:`gram_tensor`): a side holds no
    (L, n, n) structure between the calls that use it, except :attr:`grams`, built on first use by
    :meth:`terms` (the word tables' per-resample gathers).
    """

    def __init__(self, layers: Mapping[str, np.ndarray], *, source: str = "") -> None:
        self.names: list[str] = list(layers)
        self.source = source
        self.layers = list(layers.values())  # as given: arrays, or array-likes read (np.asarray) when used
        rows, self.constant = [], []
        for name, x in layers.items():  # one layer's float64 copy at a time
            checked = _checked(np.asarray(x, dtype=np.float64), f"{source}{name}")
            rows.append(len(checked))
            # a constant layer keeps an all-zero Gram (NaN in every grid); point_estimate names it
            self.constant.append(Extent(torch.from_numpy(checked)).constant())
        if len(set(rows)) > 1:
            raise CKAProbeError(f"{source}: layers have different numbers of rows {rows}")
        self.n: int = rows[0]

    def centred(self, layer: int) -> np.ndarray:
        """(n, d) float64: the layer unit-scaled and centred, x − x̄ (zero for a constant layer). Centred
        first: CKA is unchanged, and a left-out tie pair (a zero of K̃) then stands at the value an
        independent pair has on average, not at a similarity far below every other."""
        x = unit_scaled_array(np.asarray(self.layers[layer], dtype=np.float64))
        x = x * 0 if self.constant[layer] else x
        return x - x.mean(0)

    def gram_tensor(self, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
        """(L, n, n) in ``dtype`` on ``device``: each layer's centred Gram computed in float64 and rounded
        once to ``dtype``; besides the result, one layer's float64 Gram is held at a time."""
        out = torch.empty(len(self.names), self.n, self.n, dtype=dtype, device=device)
        for layer, gram in enumerate(out):
            c = self.centred(layer)
            gram.copy_(torch.from_numpy(c @ c.T))
        return out

    @cached_property
    def grams(self) -> np.ndarray:
        """(L, n, n) float64, built on first use and kept (for :meth:`terms`)."""
        return self.gram_tensor().numpy()

    def terms(self, index: np.ndarray, *, debiased: bool) -> HSICTerms:
        """HSIC terms of the resample ``index`` (n,) of row numbers (copies allowed)."""
        keep = (index[:, None] != index[None, :]) | np.eye(len(index), dtype=bool)
        return masked_terms(self.grams[:, index][:, :, index], keep, debiased=debiased)


def masked_terms(k: np.ndarray, keep: np.ndarray, *, debiased: bool) -> HSICTerms:
    """HSIC terms of the gathered Grams k (L, m, m), overwritten: the pairs where ``keep`` (m, m) is False
    (tie pairs) left out; debiased, the diagonal too (K̃), else k double-centred first."""
    if debiased:
        k *= keep & ~np.eye(len(keep), dtype=bool)
        rowsum = k.sum(axis=2)
        return HSICTerms(k.reshape(len(k), -1), rowsum.sum(axis=1), rowsum)
    row, column, grand = (
        k.mean(axis=1, keepdims=True),
        k.mean(axis=2, keepdims=True),
        k.mean((1, 2), keepdims=True),
    )
    k -= row
    k -= column
    k += grand
    k *= keep
    return HSICTerms(k.reshape(len(k), -1), np.empty(0), np.empty(0))


def _checked(x: np.ndarray, name: str) -> np.ndarray:
    """x (n, d) with finite values and n ≥ 4 (the debiased estimator's minimum), unit-scaled
    (:func:`~cka_probe.measures._tensor.unit_scaled_array`)."""
    if x.ndim != 2:
        raise CKAProbeError(f"{name}: expected a (n, d) array, got shape {x.shape}")
    if x.shape[0] < 4:
        raise CKAProbeError(f"{name}: {x.shape[0]} utterances; CKA statistics need at least 4")
    if not np.isfinite(x).all():
        raise CKAProbeError(f"{name}: contains NaN or Inf")
    return unit_scaled_array(x)


def hsic(a: HSICTerms, b: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """HSIC of every layer pair, (L_a, L_b)."""
    return masked_gram_hsic(
        a.flat @ b.flat.T,
        a.rowsum @ b.rowsum.T if debiased else 0.0,
        a.total[:, None],
        b.total[None, :],
        n,
        debiased,
    )


def self_hsic(a: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """HSIC(K_l, K_l) of every layer, (L,)."""
    rows = np.einsum("li,li->l", a.rowsum, a.rowsum) if debiased else 0.0
    return masked_gram_hsic(np.einsum("lk,lk->l", a.flat, a.flat), rows, a.total, a.total, n, debiased)


def masked_gram_hsic(inner, rows, sum_k, sum_l, n: int, debiased: bool) -> np.ndarray:
    """:func:`gram_hsic` of the masked Grams: centred ones (biased) have zero row sums and totals,
    zero-diagonal ones (debiased) zero traces and diagonal terms."""
    if not debiased:
        return gram_hsic(inner, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, n, unbiased=False)
    return gram_hsic(inner, rows, 0.0, 0.0, 0.0, sum_k, sum_l, 0.0, 0.0, n, unbiased=True)


def cka_grid(a: HSICTerms, b: HSICTerms, n: int, *, debiased: bool) -> np.ndarray:
    """CKA of every layer pair, (L_a, L_b); NaN where a layer has no variance."""
    norms = np.sqrt(
        np.clip(np.outer(self_hsic(a, n, debiased=debiased), self_hsic(b, n, debiased=debiased)), 0, None)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, hsic(a, b, n, debiased=debiased) / norms, np.nan)


def point_estimate(a: GramSet, b: GramSet, *, debiased: bool = False) -> np.ndarray:
    """CKA (L_a, L_b) on all n utterances; a constant layer or another undefined cell (a self-HSIC not
    positive) is an error naming the layer."""
    for side in (a, b):
        for name, flat in zip(side.names, side.constant):
            if flat:
                raise CKAProbeError(constant_message(f"{side.source}{name}"))
    every = np.ones((a.n, a.n), dtype=bool)  # all n utterances once: no tie pair
    a_terms, b_terms = (masked_terms(s.gram_tensor().numpy(), every, debiased=debiased) for s in (a, b))
    grid = cka_grid(a_terms, b_terms, a.n, debiased=debiased)
    bad = np.argwhere(np.isnan(grid))
    if len(bad):
        i, j = bad[0]
        raise CKAProbeError(
            f"CKA undefined for layers {a.names[i]} vs {b.names[j]}: a self-HSIC is not positive at "
            f"n={a.n} utterances; use more utterances or the biased estimator"
        )
    return grid


def bootstrap(
    a: GramSet, b: GramSet, indices: Sequence[np.ndarray], *, debiased: bool = False, device: str = "cpu"
) -> np.ndarray:
    """CKA (R, L_a, L_b) of each resample in ``indices``: the same rows of both sides
    (:func:`bootstrap_grids` of the one pair)."""
    return bootstrap_grids([(a, b)], indices, debiased=debiased, device=device)[0]


def permuted(
    a: GramSet, b: GramSet, permutations: Sequence[np.ndarray], *, debiased: bool = False, device: str = "cpu"
) -> np.ndarray:
    """CKA (R, L_a, L_b) with the rows of ``b`` shuffled by each permutation: the null of no association
    (:func:`permuted_grids` of the one pair)."""
    return permuted_grids([(a, b)], permutations, debiased=debiased, device=device)[0]


# -- batched over resamples: count weights (bootstrap) and permuted Grams (permutations)

Pair = tuple[GramSet, GramSet]
BOOTSTRAP_TILE = 64
"""Resamples per tile of the per-side sums (count weights or permuted row sums and diagonals)."""
CHUNK_BYTES = 2**28
"""Bytes of chunk operands (weights, Hadamard products, gathered permuted Grams) of the triangle GEMMs."""


@dataclass(frozen=True)
class Sums:
    """One side's vector sums for R resamples of weights c (R, n) (module docstring, "Batched").

    g (R, L, n): K c; d (R or 1, L, n): diag K as the resample meets it; s (R or 1, L): cᵀ K c.
    """

    g: torch.Tensor
    d: torch.Tensor
    s: torch.Tensor


@dataclass(frozen=True)
class Pairing:
    """How two sides' (R, L, n) sums meet: every layer pair (R, L_a, L_b) or each layer itself (R, L)."""

    diagonal: bool

    def dot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_u x_u y_u of x (R, L_a, n) and y (R, L_b, n)."""
        return (x * y).sum(-1) if self.diagonal else x @ y.transpose(-1, -2)

    def outer(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s_a · t_b of s (R, L_a) and t (R, L_b)."""
        return s * t if self.diagonal else s[..., :, None] * t[..., None, :]

    def scalar(self, n: torch.Tensor) -> torch.Tensor:
        """n (R,) shaped to broadcast over the pairing's (R, ...) result."""
        return n[:, None] if self.diagonal else n[:, None, None]


PAIRS, LAYERS = Pairing(diagonal=False), Pairing(diagonal=True)


def weighted_sums(k: torch.Tensor, c: torch.Tensor) -> Sums:
    """Float64 sums of the Grams k (L, n, n) for count weights c (R, n): g = K c is one (R × n)·(n × n)
    GEMM per layer, in float64 (a float32 layer is widened one at a time)."""
    g = torch.stack([c @ layer.double() for layer in k], 1)  # (R, L, n)
    return Sums(g, torch.diagonal(k, dim1=1, dim2=2).double()[None], (g * c[:, None]).sum(-1))


def permuted_sums(k: torch.Tensor, perms: torch.Tensor) -> Sums:
    """Float64 sums of the Grams k (L, n, n) with rows and columns taken in the order of each permutation
    perms (R, n), weights 1: g = (K1)[π], d = (diag K)[π], s = 1ᵀK1."""
    rowsum = torch.stack([layer.sum(-1, dtype=torch.float64) for layer in k])  # (L, n)
    diagonal = torch.diagonal(k, dim1=1, dim2=2).double()
    return Sums(rowsum[:, perms].transpose(0, 1), diagonal[:, perms].transpose(0, 1), rowsum.sum(-1)[None])


def squares(k: torch.Tensor) -> torch.Tensor:
    """(L,) float64: ⟨K_l, K_l⟩ of the Grams k (L, n, n), one layer widened at a time."""
    return torch.stack([layer.double().square().sum() for layer in k])


def triangle(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The upper triangle u ≤ v of an n × n symmetric matrix M: rows u (T,), columns v (T,) and weights
    w (T,) = 2 off the diagonal, 1 on it, so that Σ_uv M_uv = Σ_t w_t M_{u_t v_t}; T = n(n + 1)/2."""
    u, v = torch.triu_indices(n, n, device=device)
    return u, v, 2.0 - (u == v).double()


def spans(total: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` (at least 1) covering range(total)."""
    size = max(1, size)
    return [slice(start, start + size) for start in range(0, total, size)]


def products(
    held: Mapping[GramSet, torch.Tensor], pairs: Sequence[Pair], flat: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """(N, T_c) in ``dtype``: K_a∘L_b at the flat entries u·n + v (T_c,) of every layer pair of every pair
    (L_a·L_b rows each, a-major), then K_l∘K_l of every layer of every held side, N = ΣL_a·L_b + ΣL."""
    entries = {side: k.flatten(1).index_select(1, flat).to(dtype) for side, k in held.items()}
    factors = [(entries[a][:, None], entries[b][None]) for a, b in pairs] + [(e, e) for e in entries.values()]
    shapes = [torch.broadcast_shapes(x.shape, y.shape) for x, y in factors]
    sizes = [shape[:-1].numel() for shape in shapes]
    out = torch.empty(sum(sizes), len(flat), dtype=dtype, device=flat.device)
    for (x, y), shape, rows in zip(factors, shapes, out.split(sizes)):
        torch.mul(x, y, out=rows.view(shape))
    return out


def bootstrap_cross(
    held: Mapping[GramSet, torch.Tensor],
    pairs: Sequence[Pair],
    c: torch.Tensor,
    dtype: torch.dtype,
    max_bytes: int,
) -> torch.Tensor:
    """h = cᵀ(K∘L)c = Σ_t w_t c_{u_t} c_{v_t} (K∘L)_{u_t v_t} (R, N) of the weights c (R, n) and the
    :func:`products`: per chunk of the triangle one (R × T_c)·(T_c × N) GEMM in ``dtype``, summed in
    float64; each Hadamard product is formed once. Chunk operands: about ``max_bytes``."""
    u, v, w = triangle(c.shape[1], c.device)
    width = sum(len(a.names) * len(b.names) for a, b in pairs) + sum(len(s.names) for s in held)
    h = torch.zeros(len(c), width, dtype=torch.float64, device=c.device)
    for span in spans(len(u), max_bytes // (8 * (3 * len(c) + 2 * width))):
        i, j = u[span], v[span]
        weights = (c.index_select(1, i) * c.index_select(1, j)).mul_(w[span]).to(dtype)
        h += (weights @ products(held, pairs, i * c.shape[1] + j, dtype).T).double()
    return h


def permuted_cross(
    firsts: Sequence[torch.Tensor], l: torch.Tensor, perms: torch.Tensor, dtype: torch.dtype, max_bytes: int
) -> torch.Tensor:
    """h = ⟨K_a, P L_b Pᵀ⟩ = Σ_t w_t K_a[u_t, v_t] L_b[π(u_t), π(v_t)] (R, ΣL_a, L_b) of every layer of the
    first sides' Grams ``firsts`` (L_a, n, n) with every layer of l (L_b, n, n) under every permutation of
    perms (R, n): per chunk of the triangle the permuted entries are gathered permutation by permutation,
    (R, T_c, L_b) (one permutation's entries of a row u all lie in row π(u) of the layer-last copy of l,
    so the gather stays in cache), and multiplied by the weighted first-side entries (ΣL_a × T_c) in one
    batched GEMM in ``dtype``, summed in float64. Chunk operands: about ``max_bytes``."""
    (r, n), depth = perms.shape, sum(len(k) for k in firsts)
    u, v, w = triangle(n, l.device)
    table = l.flatten(1).to(dtype).T.contiguous()  # (n², L_b): row π(u)·n + π(v) holds every layer's entry
    per_entry = r * (table.element_size() * len(l) + 8) + 16 * depth
    h = torch.zeros(r, depth, len(l), dtype=torch.float64, device=l.device)
    for span in spans(len(u), max_bytes // per_entry):
        i, j = u[span], v[span]
        index = perms.index_select(1, i).mul_(n).add_(perms.index_select(1, j))  # (R, T_c): π(u)·n + π(v)
        first = torch.cat([k.flatten(1).index_select(1, i * n + j) for k in firsts]) * w[span]
        h += (first.to(dtype) @ gathered_rows(table, index)).double()
    return h


def gathered_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] (*index.shape, width) of a (rows, width) table; on the CPU by numpy's take, which
    copies a row about twice as fast as torch's index_select."""
    if table.device.type != "cpu":
        return table[index]
    return torch.from_numpy(np.take(table.numpy(), index.numpy(), axis=0))


def debiased_hsic(h: torch.Tensor, a: Sums, b: Sums, c: torch.Tensor, pairing: Pairing) -> torch.Tensor:
    """HSIC₁ (Song et al. 2012, Eq. 5) of the resample of weights c (R, n), tie pairs and the diagonal left
    out (K₀ = K with zero diagonal, h = cᵀ(K∘L)c; module docstring, Eq. D):
    tr(K̃L̃) = h − Σ c² dk dl, 1ᵀK̃1 = s − Σ c² dk, 1ᵀK̃L̃1 = Σ_u c_u (K₀c)_u (L₀c)_u."""
    w, n = c[:, None], pairing.scalar(c.sum(-1))  # (R, 1, n)
    trace = h - pairing.dot(w**2 * a.d, b.d)
    total_a, total_b = a.s - (w**2 * a.d).sum(-1), b.s - (w**2 * b.d).sum(-1)
    rows = pairing.dot(w * (a.g - w * a.d), b.g - w * b.d)
    ones = pairing.outer(total_a, total_b) / ((n - 1) * (n - 2))
    return (trace + ones - 2 * rows / (n - 2)) / (n * (n - 3))


def centring(side: Sums, n: torch.Tensor) -> torch.Tensor:
    """x (R, L, n) with K_uv − m_u − m_v + μ = K_uv + x_u + x_v: x = μ/2 − m, m = Kc/n, μ = cᵀKc/n²
    (the resample's row means and grand mean); n (R, 1, 1)."""
    return side.s[..., None] / (2 * n**2) - side.g / n


def biased_hsic(h: torch.Tensor, a: Sums, b: Sums, c: torch.Tensor, pairing: Pairing) -> torch.Tensor:
    """HSIC₀ = Σ_uv W_uv K̄_uv L̄_uv / (n − 1)² of the resample's double-centred Grams K̄ = K + x1ᵀ + 1xᵀ
    (:func:`centring`) with tie pairs left out: W = ccᵀ − diag(e), e = c² − c (module docstring, Eq. B)."""
    n = c.sum(-1)[:, None, None]
    w, e = c[:, None], (c**2 - c)[:, None]  # (R, 1, n)
    x, y = centring(a, n), centring(b, n)
    inner = (
        h
        - pairing.dot(e * a.d, b.d)
        + 2 * pairing.dot(w * a.g - e * a.d, y)
        + 2 * pairing.dot(x, w * b.g - e * b.d)
        + 2 * pairing.dot(x * (n * w - 2 * e), y)
        + 2 * pairing.outer((x * w).sum(-1), (y * w).sum(-1))
    )
    return inner / (pairing.scalar(c.sum(-1)) - 1) ** 2


def cka(hsic_ab: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> np.ndarray:
    """CKA (R, L_a, L_b) from HSIC (R, L_a, L_b) and self-HSIC (R, L_a), (R, L_b); NaN where a self-HSIC is
    not positive."""
    norms = torch.sqrt(torch.clamp(PAIRS.outer(self_a, self_b), min=0))
    return torch.where(norms > 0, hsic_ab / norms, torch.nan).cpu().numpy()


def held_grams(pairs: Sequence[Pair], dtype: torch.dtype, device: str = "cpu") -> dict[GramSet, torch.Tensor]:
    """Every side's Grams (L, n, n) in ``dtype`` (:meth:`GramSet.gram_tensor`): all a batched call holds,
    about 4 or 8·n²·ΣL bytes."""
    return {side: side.gram_tensor(dtype, device) for side in sides(pairs)}


def sides(pairs: Sequence[Pair], position: int | None = None) -> list[GramSet]:
    """The distinct sides of ``pairs`` in order of appearance: all, or those at ``position`` (0 or 1)."""
    found = [s for pair in pairs for i, s in enumerate(pair) if position in (None, i)]
    return list(dict.fromkeys(found))


def empty_grids(pairs: Sequence[Pair], count: int) -> list[np.ndarray]:
    """One (count, L_a, L_b) array per pair."""
    return [np.empty((count, len(a.names), len(b.names))) for a, b in pairs]


def bootstrap_grids(
    pairs: Sequence[Pair],
    indices: Sequence[np.ndarray],
    *,
    debiased: bool = False,
    device: str = "cpu",
    tile: int = BOOTSTRAP_TILE,
    max_bytes: int = CHUNK_BYTES,
    dtype: torch.dtype = torch.float64,
    held: Mapping[GramSet, torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """CKA (R, L_a, L_b) of each pair on each resample of ``indices`` (R vectors of row numbers, copies
    allowed), as count weights c_r = bincount(indices[r]) (module docstring, "Batched").

    The cross terms h of every pair and side (:func:`bootstrap_cross`, Hadamard products and GEMMs in
    ``dtype``) come first for all resamples; then per tile of resamples each side's sums are computed once
    and shared by every pair using that side. ``held``: the sides' Grams in ``dtype`` if already computed
    (:func:`held_grams`), else computed here. Peak memory besides the Grams: about ``max_bytes``, or
    8·tile·n·ΣL bytes of sums, and 8·R·(ΣL_a·L_b + ΣL) of cross terms (the size of the grids).
    """
    hsic = debiased_hsic if debiased else biased_hsic
    out = empty_grids(pairs, len(indices))
    if not (pairs and len(indices)):
        return out
    counts = np.stack([np.bincount(i, minlength=pairs[0][0].n) for i in indices], dtype=np.float64)
    held = held or held_grams(pairs, dtype, device)
    c_all = torch.from_numpy(counts).to(device)
    sizes = [len(a.names) * len(b.names) for a, b in pairs] + [len(s.names) for s in held]
    (*cross,) = torch.split(bootstrap_cross(held, pairs, c_all, dtype, max_bytes), sizes, dim=1)
    own_h = dict(zip(held, cross[len(pairs) :]))
    for start in range(0, len(indices), tile):
        rows = slice(start, start + tile)
        c = c_all[rows]
        single = (c > 0).sum(-1).cpu().numpy() < 2  # no pair of positions holding different rows: NaN
        sums = {side: weighted_sums(k, c) for side, k in held.items()}
        own = {side: hsic(own_h[side][rows], sums[side], sums[side], c, LAYERS) for side in held}
        for (a, b), h, grid in zip(pairs, cross, out):
            h = h[rows].view(len(c), len(a.names), len(b.names))
            grid[rows] = cka(hsic(h, sums[a], sums[b], c, PAIRS), own[a], own[b])
            grid[rows][single] = np.nan
    return out


def permuted_grids(
    pairs: Sequence[Pair],
    permutations: Sequence[np.ndarray],
    *,
    debiased: bool = False,
    device: str = "cpu",
    tile: int = BOOTSTRAP_TILE,
    max_bytes: int = CHUNK_BYTES,
    dtype: torch.dtype = torch.float64,
    held: Mapping[GramSet, torch.Tensor] | None = None,
) -> list[np.ndarray]:
    """CKA (R, L_a, L_b) of each pair with the rows of its second side shuffled by each permutation.

    The pairs sharing a second side are stacked: one :func:`permuted_cross` per second side gathers its
    permuted Grams once for all of them; then per tile of permutations the HSICs are assembled. ``held``:
    as for :func:`bootstrap_grids`. Peak
    memory besides the Grams: about ``max_bytes``, or 8·tile·n·L_b bytes of permuted sums, 4 or 8·n²·L_b
    of the second side's Grams in ``dtype``, and 8·R·ΣL_a·L_b of cross terms (the size of the grids).
    """
    hsic = debiased_hsic if debiased else biased_hsic
    out = empty_grids(pairs, len(permutations))
    if not (pairs and len(permutations)):
        return out
    held = held or held_grams(pairs, dtype, device)
    ones = torch.ones(1, pairs[0][0].n, dtype=torch.float64, device=device)
    fixed = {side: weighted_sums(k, ones) for side, k in held.items()}
    own = {side: hsic(squares(k)[None], fixed[side], fixed[side], ones, LAYERS) for side, k in held.items()}
    perms = torch.as_tensor(
        np.asarray(permutations, dtype=np.int64).reshape(len(permutations), -1), device=device
    )
    for b in sides(pairs, 1):
        group = [(pair, grid) for pair, grid in zip(pairs, out) if pair[1] is b]
        firsts = [held[a] for (a, _), _ in group]
        cross = torch.split(
            permuted_cross(firsts, held[b], perms, dtype, max_bytes), [len(k) for k in firsts], 1
        )
        for start in range(0, len(permutations), tile):
            rows = slice(start, start + tile)
            shuffled = permuted_sums(held[b], perms[rows])
            for ((a, _), grid), h in zip(group, cross):
                grid[rows] = cka(hsic(h[rows], fixed[a], shuffled, ones, PAIRS), own[a], own[b])
    return out
