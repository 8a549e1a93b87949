"""Multiple-comparison adjustment of p-values: Benjamini–Hochberg false-discovery rate.

A heatmap is L_a × L_b tests; the analysis adjusts the p-values within each
comparison (one language, one comparison, one seed pooling) by the step-up
procedure of Benjamini & Hochberg (1995): with p₍₁₎ ≤ … ≤ p₍ₘ₎,
p̃₍ᵢ₎ = min_{j ≥ i} min(1, m p₍ⱼ₎ / j). A cell with p̃ ≤ α is a discovery at
false-discovery rate α (valid for independent or positively dependent tests,
Benjamini & Yekutieli 2001, which neighbouring layers are).
"""

from __future__ import annotations

import numpy as np


def benjamini_hochberg(p) -> np.ndarray:
    """BH-adjusted p-values of the same shape as ``p``; NaN entries stay NaN and do not count in m."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    out = np.full(flat.shape, np.nan)
    if len(ok):
        order = ok[np.argsort(flat[ok], kind="stable")]
        scaled = flat[order] * len(ok) / np.arange(1, len(ok) + 1)
        out[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return out.reshape(p.shape)
