"""SpecAugment (Park et al. 2019) without time warping: frequency and time masks.

For each utterance, ``freq_masks`` bands of ``f ~ U{0..freq_width}`` mel bins and
``time_masks`` spans of ``t ~ U{0..min(time_width, max_time_fraction·T)}`` valid
frames are set to zero, which is the mean of CMVN-normalised features. Masks are
drawn from a ``torch.Generator`` so that training is reproducible for a seed.
"""

from __future__ import annotations

import torch


def mask_span(length: int, max_width: int, generator: torch.Generator) -> slice:
    """A random span ``[start, start + w)`` with ``w ~ U{0..max_width}`` inside ``length``."""
    width = int(torch.randint(0, max(0, min(max_width, length)) + 1, (), generator=generator))
    start = int(torch.randint(0, length - width + 1, (), generator=generator))
    return slice(start, start + width)


def spec_augment(
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    generator: torch.Generator,
    *,
    freq_masks: int = 2,
    freq_width: int = 10,
    time_masks: int = 2,
    time_width: int = 40,
    max_time_fraction: float = 0.2,
) -> torch.Tensor:
    """Masked copy of ``feats (B, T, F)``; only the first ``feat_lens[b]`` frames are masked."""
    out = feats.clone()
    for b, length in enumerate(feat_lens.tolist()):
        for _ in range(freq_masks):
            out[b, :length, mask_span(feats.shape[2], freq_width, generator)] = 0.0
        for _ in range(time_masks):
            out[b, mask_span(length, min(time_width, int(max_time_fraction * length)), generator)] = 0.0
    return out
