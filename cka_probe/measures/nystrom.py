"""Nyström kernel CKA for large n: an approximation, labelled ``attrs["estimator"] == "nystrom"``.

With m landmark rows (drawn at random, seeded; the same rows for every layer),
C = k(X, X_m) ``(n, m)`` and W = k(X_m, X_m) ``(m, m)``, the Gram is approximated
by K ~ C W^+ C^T = Phi Phi^T with features Phi = C V Lambda^{-1/2} (W = V Lambda V^T,
eigenvalues below ``RANK_TOL`` of the largest dropped) (Williams & Seeger 2001).
Kernel CKA of the approximate Grams is then the exact linear CKA of the
features, computed in feature space by the streaming sums of ``moments``
(O(n (L m)^2), never an n x n matrix), biased or debiased.

With m = n landmarks the approximation is exact (K W^+ K = K), and its error
shrinks as m grows (tested). The RBF bandwidth is the median over
``median_rows`` random rows (all rows when n <= median_rows), since the exact
median would need all n^2 distances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from cka_probe.errors import CKAProbeError
from cka_probe.measures._frame import result_frame
from cka_probe.measures._tensor import matmul_precision, one_thread, working_dtype
from cka_probe.measures.gram import _prepare
from cka_probe.measures.kernels import CrossGram, Kernel, resolve_kernel
from cka_probe.measures.matrix import CHUNK_ROWS, load_inputs
from cka_probe.measures.moments import FeatureAccumulator

RANK_TOL = 1e-10  # eigenvalues of W below this fraction of the largest are dropped


class NystromLayer:
    """One layer's Nyström feature map: ``features(rows)`` -> Phi ``(c, k)`` in the working dtype."""

    def __init__(self, x: torch.Tensor, label: str, kernel: Kernel, landmarks: torch.Tensor):
        self.x, self.landmarks = x, x[landmarks]
        self.gram, self.bandwidth = kernel.for_layer(x)
        if self.bandwidth == 0:  # constant layers are refused before, so this layer has distinct rows
            raise CKAProbeError(
                f"{label}: RBF bandwidth is 0 (over half of the sampled row pairs are identical rows)"
            )
        w = self.gram(self.landmarks, self.landmarks).to(torch.float64)
        with one_thread():
            evals, evecs = torch.linalg.eigh((w + w.T) / 2)
        keep = evals > RANK_TOL * float(evals[-1].clamp_min(0))
        if not bool(keep.any()):  # landmarks without variance: one zero feature, self-HSIC 0 (an error)
            self.map = torch.zeros(len(landmarks), 1, dtype=x.dtype, device=x.device)
        else:
            self.map = (evecs[:, keep] * evals[keep].rsqrt()).to(x.dtype)

    def features(self, start: int, stop: int) -> torch.Tensor:
        """Phi rows ``start:stop``: k(x_i, landmarks) V Lambda^{-1/2}."""
        return self.gram(self.x[start:stop], self.landmarks) @ self.map


def nystrom_cka_matrix(
    xs: Mapping | Sequence,
    ys: Mapping | Sequence | None = None,
    *,
    kernel: str | CrossGram = "rbf",
    sigma: float = 0.8,
    rank: int = 256,
    debiased: bool = False,
    median_rows: int = 4096,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> pd.DataFrame:
    """Approximate kernel CKA of every layer of ``xs`` against every layer of ``ys`` with ``rank`` landmarks.

    Arguments as ``cka_matrix``; ``rank``: landmark rows m (at most n), drawn
    with ``seed``; ``median_rows``: rows of the RBF median. Returns a DataFrame
    like ``cka_matrix``'s with ``attrs`` estimator "nystrom", debiased, rank,
    seed and the bandwidths.
    """
    if rank < 1:
        raise CKAProbeError(f"rank must be >= 1, got {rank}")
    spec = resolve_kernel(kernel, sigma, median_rows if kernel == "rbf" else None)
    v = load_inputs(xs, ys, device, scale=spec.scale_free)
    n, device = v.n, v.device
    work, tf32 = working_dtype(dtype, v.tx + (v.ty or []), device)
    landmarks = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(rank, n)].to(device)
    with matmul_precision(device, tf32):
        left = [
            NystromLayer(_prepare(x, spec, work), label, spec, landmarks)
            for x, label in zip(v.tx, v.labels_x)
        ]
        right = (
            None
            if v.ty is None
            else [
                NystromLayer(_prepare(y, spec, work), label, spec, landmarks)
                for y, label in zip(v.ty, v.labels_y)
            ]
        )
        acc = FeatureAccumulator(
            [g.map.shape[1] for g in left],
            None if right is None else [g.map.shape[1] for g in right],
            unbiased=debiased,
            dtype=work,
            device=device,
        )
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            acc.add(
                [g.features(start, stop) for g in left],
                None if right is None else [g.features(start, stop) for g in right],
            )
        terms = acc.terms()
    table = result_frame(
        terms,
        v.names_x,
        v.names_y,
        estimator="nystrom",
        kernel=spec.name,
        sigma=spec.sigma,
        dims_x=[t.shape[1] for t in v.tx],
        dims_y=[t.shape[1] for t in (v.ty or v.tx)],
        dtype=work,
        device=device,
    )
    table.attrs.update(debiased=debiased, rank=len(landmarks), seed=seed, space="nystrom features")
    if spec.name == "rbf":
        table.attrs.update(
            rbf_sq_sigma_x=dict(zip(map(str, v.names_x), [g.bandwidth for g in left])),
            rbf_median_rows=min(median_rows, n),
            rbf_sq_sigma_y=dict(zip(map(str, v.names_y), [g.bandwidth for g in (right or left)])),
        )
    return table
