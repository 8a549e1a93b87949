"""Exact moments of debiased linear HSIC over all permutations of one side's rows, and a Pearson type III
p-value from them (docs/resampled-statistics.md, "Exact permutation moments").

U-centring (Székely & Rizzo 2014, Def. 1) turns a Gram K (n, n) into Ã: symmetric, zero diagonal, zero row
sums, with debiased HSIC₁ (Song et al. 2012, Eq. 5) the plain inner product

    HSIC₁(K, L) = Σ_{i≠j} Ã_ij B̃_ij / (n(n − 3))                      (Székely & Rizzo 2014, Prop. 1)

U-centring commutes with permuting rows and columns together, so shuffling the second side's rows by π
gives T(π) = Σ_{i≠j} Ã_ij B̃_π(i)π(j) = n(n − 3)·HSIC₁. Over π uniform on the n! permutations
(Mantel 1967; Kazi-Aoual et al. 1995 for the RV coefficient), with S = Σ Ã², u = Σ Ã³ (entrywise) and
t = tr Ã³, for each side:

    E[T] = 0,   Var[T] = 2 S_A S_B / (n(n − 3)),   E[T³] = Σ_σ m_σ s_σ(Ã) s_σ(B̃) / (n)_{b_σ}

over the eight shapes σ of three edges (:data:`SHAPES`: m_σ ordered-edge patterns on b_σ vertices, the
injective sum s_σ = α_σ u + β_σ t; (n)_b = n(n − 1)···(n − b + 1)). Per side: one GEMM per layer for t,
O(L n³); the moments of every layer pair are then products of per-side sums, O(L_a L_b).

Debiased CKA divides HSIC₁ by √(HSIC₁(K, K) HSIC₁(L, L)), which no permutation changes: its permutation
p-value is that of HSIC₁, and Var_π[CKA₁] = 2 / (n(n − 3)) for every pair of Grams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (4, 2, 1, 0),  # one pair three times: s = u
    (24, 3, -1, 0),  # a pair twice and an edge hanging from it: s = −u
    (8, 3, 0, 1),  # triangle: s = t
    (6, 4, 2, 0),  # a pair twice and a disjoint edge: s = 2u
    (24, 4, 1, -1),  # path of three edges: s = u − t
    (8, 4, 2, 0),  # star of three edges: s = 2u
    (12, 5, -4, 2),  # path of two edges and a disjoint edge: s = 2t − 4u
    (1, 6, 16, -8),  # three disjoint edges: s = 16u − 8t
)
"""(m_σ, b_σ, α_σ, β_σ) of each shape σ of three edges (i₁j₁, i₂j₂, i₃j₃), i_k ≠ j_k: m_σ set partitions of
the six indices realise it on b_σ distinct vertices, and Σ over distinct vertices of Ã_i₁j₁ Ã_i₂j₂ Ã_i₃j₃ is
α_σ u + β_σ t (Möbius inversion over the vertex partitions; zero row sums drop every quotient with a vertex
of degree one). Σ_σ m_σ (n)_{b_σ} = (n(n − 1))³, every ordered triple of pairs."""


@dataclass(frozen=True)
class Invariants:
    """One side's permutation-invariant sums of its U-centred Grams Ã (L, n, n).

    squares (L,): S = Σ_ij Ã_ij²; cubes (L,): u = Σ_ij Ã_ij³; triangles (L,): t = tr Ã³.
    """

    n: int
    squares: torch.Tensor
    cubes: torch.Tensor
    triangles: torch.Tensor


@dataclass(frozen=True)
class Moments:
    """Mean, variance and skewness (L_a, L_b) of HSIC₁ over the permutations of the second side's rows."""

    mean: torch.Tensor
    variance: torch.Tensor
    skewness: torch.Tensor


def u_centred(k: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Ã (L, n, n) of the Grams k (L, n, n), float64 (Székely & Rizzo 2014, Def. 1): with K̃ = K with a zero
    diagonal, r = K̃1 and s = 1ᵀK̃1, Ã_ij = K̃_ij − (r_i + r_j)/(n − 2) + s/((n − 1)(n − 2)) for i ≠ j, 0 on
    the diagonal. Ã is unchanged by adding a_i + a_j to K_ij (the rows need no centring first)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    n = k.shape[-1]
    zero_diagonal = 1 - torch.eye(n, dtype=torch.float64, device=k.device)
    kt = k * zero_diagonal
    r = kt.sum(-1, keepdim=True)  # (L, n, 1)
    s = r.sum(-2, keepdim=True)  # (L, 1, 1)
    return (kt - (r + r.transpose(-1, -2)) / (n - 2) + s / ((n - 1) * (n - 2))) * zero_diagonal


def debiased_hsic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """HSIC₁ (L_a, L_b) = Σ_{i≠j} Ã_ij B̃_ij / (n(n − 3)) of the U-centred Grams a (L_a, n, n), b (L_b, n, n)
    (Székely & Rizzo 2014, Prop. 1; the HSIC₁ of Song et al. 2012, Eq. 5)."""
    n = a.shape[-1]
    return a.flatten(1) @ b.flatten(1).T / (n * (n - 3))


def invariants(a: torch.Tensor) -> Invariants:
    """S, u, t of the U-centred Grams a (L, n, n); t = Σ_ij Ã_ij (Ã²)_ij is one GEMM per layer."""
    return Invariants(a.shape[-1], (a**2).sum((1, 2)), (a**3).sum((1, 2)), ((a @ a) * a).sum((1, 2)))


def falling(n: int, b: int) -> int:
    """(n)_b = n(n − 1)···(n − b + 1), the number of ordered choices of b distinct rows of n."""
    return math.perm(n, b)


def third_moment(a: Invariants, b: Invariants) -> torch.Tensor:
    """E_π[T³] (L_a, L_b) = Σ_σ m_σ s_σ(Ã) s_σ(B̃) / (n)_{b_σ} over the :data:`SHAPES` with b_σ ≤ n (no others
    fit on n rows)."""
    shape_sum = lambda side, alpha, beta: alpha * side.cubes + beta * side.triangles
    return sum(
        m * torch.outer(shape_sum(a, alpha, beta), shape_sum(b, alpha, beta)) / falling(a.n, vertices)
        for m, vertices, alpha, beta in SHAPES
        if vertices <= a.n
    )


def permutation_moments(a: Invariants, b: Invariants) -> Moments:
    """Moments (L_a, L_b) of HSIC₁ = T / (n(n − 3)) over the n! permutations of the second side's rows:
    E[T] = 1ᵀÃ1·1ᵀB̃1 / (n(n − 1)) = 0, Var[T] = 2 S_A S_B / (n(n − 3)), skewness E[T³] / Var[T]^{3/2}."""
    n = a.n
    var_t = 2 * torch.outer(a.squares, b.squares) / (n * (n - 3))
    return Moments(torch.zeros_like(var_t), var_t / (n * (n - 3)) ** 2, third_moment(a, b) / var_t**1.5)


def pearson3_pvalue(
    observed: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, skewness: torch.Tensor
) -> torch.Tensor:
    """P(X ≥ observed) for X of a Pearson type III distribution (a gamma shifted and scaled, or reflected
    for negative skewness; the normal at skewness 0) with the given mean, variance and skewness; any
    broadcastable shapes. NaN where the variance is not positive (a constant layer)."""
    z = torch.where(variance > 0, (observed - mean) / variance.sqrt(), torch.nan)
    return torch.as_tensor(stats.pearson3.sf(z.cpu().numpy(), skewness.cpu().numpy()), dtype=torch.float64)


def cka_pvalues(k: torch.Tensor | np.ndarray, l: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Pearson type III permutation p-values (L_a, L_b) of debiased CKA of the Grams k (L_a, n, n) against
    l (L_b, n, n), upper tail: those of HSIC₁, as the denominator √(HSIC₁(K, K) HSIC₁(L, L)) is the same
    under every permutation of l's rows."""
    a, b = u_centred(k), u_centred(l)
    moments = permutation_moments(invariants(a), invariants(b))
    return pearson3_pvalue(debiased_hsic(a, b), moments.mean, moments.variance, moments.skewness)
