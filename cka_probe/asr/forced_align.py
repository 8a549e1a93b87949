"""CTC forced alignment (Viterbi) of a known transcript over a model's CTC log-posteriors.

For targets ``y = y_1 … y_L`` CTC's paths run over the extended sequence
``z = (∅, y_1, ∅, y_2, …, ∅, y_L, ∅)`` of ``S = 2L + 1`` states (Graves et al.
2006, §4.1). The best path maximises Σ_t log p_t(z_{s_t}) subject to

    s_0 ∈ {0, 1},  s_{T−1} ∈ {S − 1, S − 2},
    s_t − s_{t−1} ∈ {0, 1}, or 2 when z_{s_t} ≠ ∅ and z_{s_t} ≠ z_{s_t − 2},

computed by the max-product (Viterbi) recursion

    δ_t(s) = log p_t(z_s) + max(δ_{t−1}(s), δ_{t−1}(s − 1), δ_{t−1}(s − 2) if allowed)

with back-pointers, in float64, vectorised over states (one step per frame).
Token ``k`` then occupies the frames where ``s_t = 2k + 1``: at least one, in
order, so the spans of the tokens are monotonic and every token has one. Word
spans run from the first frame of a word's first token to the last frame of
its last token (blank frames between words belong to no word).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cka_probe.errors import CKAProbeError


@dataclass(frozen=True)
class WordSpan:
    """Word ``index`` (0-based, in its transcript) of text ``word`` on encoder frames ``[start, end)``."""

    index: int
    word: str
    start: int
    end: int


def forced_align(log_probs: torch.Tensor, targets: list[int], *, blank: int = 0) -> torch.Tensor:
    """The best CTC path's state per frame, ``(T,)`` long in ``[0, 2L]``.

    ``log_probs (T, V)``: one utterance's valid frames; ``targets``: ``L`` label ids (no blank).
    A transcript that needs more frames than ``T`` (``L`` plus its repeated neighbours) is an error.
    """
    n_frames, n_labels = log_probs.shape[0], len(targets)
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    if n_labels + repeats > n_frames:
        raise CKAProbeError(
            f"a transcript of {n_labels} tokens ({repeats} repeated) needs at least "
            f"{n_labels + repeats} frames, the utterance has {n_frames}"
        )
    z = torch.full((2 * n_labels + 1,), blank, dtype=torch.long, device=log_probs.device)
    z[1::2] = torch.tensor(targets, dtype=torch.long, device=log_probs.device)
    skip = torch.zeros_like(z, dtype=torch.bool)
    skip[2:] = (z[2:] != blank) & (z[2:] != z[:-2])  # s − 2 -> s allowed
    emit = log_probs.double()[:, z]  # (T, S)
    minus_inf = torch.tensor(float("-inf"), dtype=torch.float64, device=log_probs.device)
    delta = torch.full_like(emit[0], float("-inf"))
    delta[:2] = emit[0, :2]
    back = torch.zeros(emit.shape, dtype=torch.long, device=log_probs.device)  # (T, S): predecessor state
    states = torch.arange(len(z), device=log_probs.device)
    for t in range(1, n_frames):
        stay, step = delta, torch.cat([minus_inf[None], delta[:-1]])
        jump = torch.where(skip, torch.cat([minus_inf.expand(2), delta[:-2]]), minus_inf)
        best, choice = torch.stack([stay, step, jump]).max(dim=0)  # (S,), 0 = stay, 1 = s−1, 2 = s−2
        back[t] = states - choice
        delta = best + emit[t]
    final = len(z) - 1 if len(z) == 1 or delta[-1] >= delta[-2] else len(z) - 2
    path = torch.empty(n_frames, dtype=torch.long, device=log_probs.device)
    path[-1] = final
    for t in range(n_frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def token_spans(path: torch.Tensor, n_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` frames of each of the ``n_tokens`` tokens on a :func:`forced_align` path."""
    spans = []
    for k in range(n_tokens):
        frames = torch.nonzero(path == 2 * k + 1).flatten()
        spans.append((int(frames[0]), int(frames[-1]) + 1))
    return spans


def word_token_ranges(word_lengths: list[int]) -> list[tuple[int, int]]:
    """Token ``[first, last]`` of each word when words of ``word_lengths`` tokens are joined by one space
    token."""
    ranges, first = [], 0
    for n in word_lengths:
        ranges.append((first, first + n - 1))
        first += n + 1
    return ranges


def word_spans(log_probs: torch.Tensor, text: str, tokenizer, *, blank: int = 0) -> list[WordSpan]:
    """Word spans of ``text`` (words split at white space) over one utterance's ``log_probs (T, V)``.

    ``tokenizer`` is the CTC task's :class:`cka_probe.asr.tokenizer.CharTokenizer`; the text is
    tokenised as ``" ".join(words)``, so words are separated by one space token.
    """
    words = text.split()
    if not words:
        raise CKAProbeError("cannot align an empty transcript")
    targets = tokenizer.encode(" ".join(words))
    spans = token_spans(forced_align(log_probs, targets, blank=blank), len(targets))
    lengths = [len(tokenizer.encode(w)) for w in words]
    return [
        WordSpan(i, w, spans[a][0], spans[b][1])
        for i, (w, (a, b)) in enumerate(zip(words, word_token_ranges(lengths)))
    ]
