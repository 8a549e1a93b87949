"""Decoding of the bundled CTC-attention models: CTC greedy, attention greedy and beam.

All three take the encoder output of a batch and return one list of token ids
per utterance, without ``<sos>``/``<eos>`` or CTC blanks; the caller turns ids
into text with the task's tokenizer.

- CTC greedy (best path; Graves et al. 2006, §3): the arg-max label of every
  valid frame, repeats merged, blanks removed.
- Attention greedy: the arg-max next token given the prefix, all utterances of
  the batch at once, until each has emitted ``<eos>``.
- Attention beam search: per utterance, the ``beam`` best prefixes by summed
  log-probability, all prefixes of one step scored in one batched decoder call.
  A finished hypothesis is ranked by its length-normalised score
  log p(y, <eos> | x) / (|y| + 1) (Wu et al. 2016 with α = 1), so that short
  outputs are not favoured merely for having fewer factors. The search ends
  when ``beam`` hypotheses have ended, no prefix is left, or at ``max_len``.

Each decoder step recomputes the whole prefix through
``model.decoder_log_probs(task, enc, enc_lens, ys_in) -> (B, U, V)``; that is
quadratic in the output length but simple and exact, and cheap at the sizes of
the bundled models. Outputs are bounded by ``max_len`` tokens (default: the
number of valid encoder frames, the same bound that CTC imposes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from cka_probe.errors import CKAProbeError


class AttentionDecoder(Protocol):
    """What the attention decoders need from a model (``cka_probe.asr.model.ASRModel``)."""

    def decoder_log_probs(
        self, task: str, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor
    ) -> torch.Tensor: ...


def ctc_greedy(log_probs: torch.Tensor, lens: torch.Tensor, *, blank: int = 0) -> list[list[int]]:
    """Best-path CTC decoding.

    log_probs: (B, T', V) frame log-probabilities; lens: (B,) valid frames.
    Returns B lists of label ids (repeats merged, then blanks dropped).
    """
    best = log_probs.argmax(dim=-1)  # (B, T')
    return [_collapse(best[b, : int(lens[b])].tolist(), blank) for b in range(best.size(0))]


def _collapse(path: list[int], blank: int) -> list[int]:
    """CTC's many-to-one map B: merge repeated labels, then remove blanks."""
    out = []
    previous = None
    for label in path:
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


def _default_max_len(enc_lens: torch.Tensor, max_len: int | None) -> int:
    return int(enc_lens.max()) if max_len is None else max_len


@torch.no_grad()
def attention_greedy(
    model: AttentionDecoder,
    task: str,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    *,
    sos_eos: int,
    max_len: int | None = None,
) -> list[list[int]]:
    """Greedy autoregressive decoding of a batch.

    enc: (B, T', D) encoder output; enc_lens: (B,). ``sos_eos`` is the task's
    start/end id. Returns B lists of ids, each cut at its first ``<eos>``.
    """
    limit = _default_max_len(enc_lens, max_len)
    batch = enc.size(0)
    ys = torch.full((batch, 1), sos_eos, dtype=torch.long, device=enc.device)  # (B, 1 + u)
    done = torch.zeros(batch, dtype=torch.bool, device=enc.device)
    for _ in range(limit):
        step = model.decoder_log_probs(task, enc, enc_lens, ys)[:, -1]  # (B, V)
        nxt = step.argmax(dim=-1).masked_fill(done, sos_eos)  # finished rows keep padding with <eos>
        ys = torch.cat([ys, nxt[:, None]], dim=1)
        done |= nxt == sos_eos
        if bool(done.all()):
            break
    return [_strip_eos(row[1:].tolist(), sos_eos) for row in ys]


def _strip_eos(ids: list[int], sos_eos: int) -> list[int]:
    return ids[: ids.index(sos_eos)] if sos_eos in ids else ids


@dataclass(frozen=True)
class _Hyp:
    tokens: tuple[int, ...]  # without <sos>
    score: float  # summed log-probability


def _normalised(hyp: _Hyp) -> float:
    """log p / (tokens + <eos>): the length-normalised ranking score."""
    return hyp.score / (len(hyp.tokens) + 1)


@torch.no_grad()
def attention_beam(
    model: AttentionDecoder,
    task: str,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    *,
    sos_eos: int,
    beam: int = 4,
    max_len: int | None = None,
) -> list[list[int]]:
    """Beam search, one utterance at a time, its ``beam`` prefixes batched.

    enc: (B, T', D); enc_lens: (B,). Returns B lists of ids, the best finished
    hypothesis by length-normalised log-probability. A search that reaches
    ``max_len`` ranks its unfinished prefixes with the ended ones.
    """
    if beam < 1:
        raise CKAProbeError(f"beam size must be >= 1, got {beam}")
    best = []
    for b in range(enc.size(0)):
        one_enc, one_len = enc[b : b + 1, : int(enc_lens[b])], enc_lens[b : b + 1]  # (1, T'_b, D), (1,)
        limit = _default_max_len(one_len, max_len)
        best.append(
            list(_beam_one(model, task, one_enc, one_len, sos_eos=sos_eos, beam=beam, max_len=limit).tokens)
        )
    return best


def _beam_one(
    model: AttentionDecoder,
    task: str,
    enc: torch.Tensor,
    enc_lens: torch.Tensor,
    *,
    sos_eos: int,
    beam: int,
    max_len: int,
) -> _Hyp:
    """Beam search over one utterance; enc: (1, T', D), enc_lens: (1,)."""
    alive = [_Hyp((), 0.0)]
    finished: list[_Hyp] = []
    for _ in range(max_len):
        step = _score_prefixes(model, task, enc, enc_lens, alive, sos_eos)  # (K, V)
        candidates = _expand(alive, step, beam)
        finished += [_Hyp(h.tokens[:-1], h.score) for h in candidates if h.tokens[-1] == sos_eos]
        alive = [h for h in candidates if h.tokens[-1] != sos_eos][:beam]
        if not alive or _enough_ended(finished, beam):
            break
    else:  # max_len reached: the live prefixes compete as they stand
        finished += alive
    return max(finished, key=_normalised)


def _score_prefixes(model, task, enc, enc_lens, alive: list[_Hyp], sos_eos: int) -> torch.Tensor:
    """Next-token log-probabilities (K, V) for K equally long prefixes in one call."""
    k = len(alive)
    # (K, 1 + u)
    ys = torch.tensor([(sos_eos, *h.tokens) for h in alive], dtype=torch.long, device=enc.device)
    return model.decoder_log_probs(task, enc.expand(k, -1, -1), enc_lens.expand(k), ys)[:, -1]


def _expand(alive: list[_Hyp], step: torch.Tensor, beam: int) -> list[_Hyp]:
    """The ``beam`` best one-token extensions of each prefix, best first over all (≤ K·beam)."""
    top_lp, top_id = step.topk(min(beam, step.size(-1)), dim=-1)  # (K, beam)
    candidates = [
        _Hyp(h.tokens + (int(t),), h.score + float(lp))
        for h, lps, ids in zip(alive, top_lp, top_id)
        for lp, t in zip(lps, ids)
    ]
    return sorted(candidates, key=lambda h: h.score, reverse=True)


def _enough_ended(finished: list[_Hyp], beam: int) -> bool:
    """Stop once ``beam`` hypotheses have ended (the rule of fairseq's beam search).

    With length normalisation a longer completion of a live prefix can still
    outrank the ended ones, so this is a heuristic bound, as in most toolkits.
    """
    return len(finished) >= beam


@torch.no_grad()
def transcribe(
    model,
    tokenizers: dict,
    feats: torch.Tensor,
    feat_lens: torch.Tensor,
    tasks: tuple[str, ...],
    *,
    decoding: str = "attention",
    beam: int = 1,
) -> dict[str, list[str]]:
    """Texts of a batch for each of ``tasks``: feats (B, T, 80) normalised, feat_lens (B,).

    ``decoding="ctc"`` reads the CTC head (on ``model.ctc_task``'s targets);
    ``"attention"`` runs that task's decoder, greedily for ``beam == 1``.
    """
    enc, enc_lens = model.encode(feats, feat_lens)  # (B, T', D), (B,)
    texts = {}
    for task in tasks:
        ids = _decode_ids(model, task, enc, enc_lens, tokenizers[task], decoding, beam)
        texts[task] = [tokenizers[task].decode(seq) for seq in ids]
    return texts


def _decode_ids(model, task, enc, enc_lens, tokenizer, decoding: str, beam: int) -> list[list[int]]:
    if decoding == "ctc":
        if task != model.ctc_task:
            raise CKAProbeError(f"the CTC head decodes '{model.ctc_task}', not '{task}'")
        return ctc_greedy(model.ctc_log_probs(enc), enc_lens, blank=tokenizer.blank)
    if decoding != "attention":
        raise CKAProbeError(f"decoding must be 'attention' or 'ctc', got '{decoding}'")
    if beam == 1:
        return attention_greedy(model, task, enc, enc_lens, sos_eos=tokenizer.sos_eos)
    return attention_beam(model, task, enc, enc_lens, sos_eos=tokenizer.sos_eos, beam=beam)
