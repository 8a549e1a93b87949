"""Learning-rate schedule: linear warm-up, then cosine decay (Loshchilov & Hutter 2017).

    lr(s) = peak · (s + 1) / warmup                             for s < warmup
    lr(s) = peak · (floor + (1 − floor) · ½ (1 + cos(π p)))     p = (s − warmup) / (total − warmup)

where ``s`` counts optimizer steps from 0 and ``p`` is clamped to [0, 1]. The
warm-up (Goyal et al. 2017; Vaswani et al. 2017) keeps the first Adam steps
small while its moment estimates are poor; the decay ends at ``floor · peak``.
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))
