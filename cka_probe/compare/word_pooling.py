"""Word-level mean pooling of stored frames.

A word spanning encoder frames ``[start, end)`` of utterance ``u`` is
represented by the mean of its frames,

    h_w = (1 / (end − start)) Σ_{t = start}^{end − 1} H_u[t]

accumulated in float64 (Kornblith et al. 2019 pool frames by utterance the
same way; here the unit is the word, so that words where surface and meaning
differ can be compared apart from identical ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cka_probe.errors import CKAProbeError


def pool_words(frames: np.ndarray, offsets: np.ndarray, spans: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Word means ``(W, D)`` float64.

    ``frames (rows, D)`` and ``offsets (N + 1,)`` as a store's ``frames()`` returns them
    (utterance ``u`` = ``frames[offsets[u]:offsets[u + 1]]``); ``spans``: ``(u, start, end)``
    per word, frames ``[start, end)`` of utterance ``u``.
    """
    out = np.empty((len(spans), frames.shape[1]), dtype=np.float64)
    for w, (u, start, end) in enumerate(spans):
        n_frames = int(offsets[u + 1] - offsets[u])
        if not 0 <= start < end <= n_frames:
            raise CKAProbeError(
                f"word {w}: frames [{start}, {end}) outside utterance {u}'s {n_frames} frames"
            )
        out[w] = frames[offsets[u] + start : offsets[u] + end].astype(np.float64).mean(axis=0)
    return out
