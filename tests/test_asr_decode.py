"""Decoding against hand-made models whose next-token distributions we set."""

import itertools
import math
import random

import pytest
import torch

from cka_probe.asr.decode import attention_beam, attention_greedy, ctc_greedy
from cka_probe.errors import CKAProbeError

BLANK, A, B, EOS = 0, 1, 2, 3  # vocabulary of the fake decoder: blank, two letters, <sos/eos>
V = 4


class TableDecoder:
    """next-token distribution = table[prefix] (prefix without <sos>), else ``default``.

    Only the last position of the (B, U, V) output matters to the decoders; the
    earlier ones are filled with NaN so that a decoder reading them would fail.
    """

    def __init__(self, table, default=(0.0, 0.05, 0.05, 0.9)):
        self.table = table
        self.default = default
        self.calls = []

    def decoder_log_probs(self, task, enc, enc_lens, ys_in):
        assert task == "surface"
        assert enc.size(0) == ys_in.size(0) == enc_lens.size(0)
        self.calls.append(tuple(ys_in.shape))
        out = torch.full((*ys_in.shape, V), float("nan"))
        for row, ys in enumerate(ys_in.tolist()):
            assert ys[0] == EOS  # <sos> shares the id
            probs = torch.tensor(self.table.get(tuple(ys[1:]), self.default))
            out[row, -1] = probs.log()
        return out


def _enc(batch=1, frames=8):
    return torch.zeros(batch, frames, 2), torch.full((batch,), frames)


# greedy takes A (0.5) and then A (0.34); beam finds B <eos>, whose normalised score is higher.
GARDEN_PATH = {
    (): (0.0, 0.5, 0.4, 0.1),
    (A,): (0.0, 0.34, 0.33, 0.33),
    (A, A): (0.0, 0.05, 0.05, 0.9),
    (B,): (0.0, 0.025, 0.025, 0.95),
}


def _normalised_logp(table, tokens, default=(0.0, 0.05, 0.05, 0.9)):
    logp = 0.0
    for i, tok in enumerate((*tokens, EOS)):
        logp += math.log(table.get(tuple(tokens[:i]), default)[tok])
    return logp / (len(tokens) + 1)


def test_beam_finds_what_greedy_misses():
    enc, lens = _enc()
    greedy = attention_greedy(TableDecoder(GARDEN_PATH), "surface", enc, lens, sos_eos=EOS)
    beam = attention_beam(TableDecoder(GARDEN_PATH), "surface", enc, lens, sos_eos=EOS, beam=2)
    assert greedy == [[A, A]]
    assert beam == [[B]]
    assert _normalised_logp(GARDEN_PATH, (B,)) > _normalised_logp(GARDEN_PATH, (A, A))


def test_beam_of_one_equals_greedy():
    enc, lens = _enc()
    assert attention_beam(TableDecoder(GARDEN_PATH), "surface", enc, lens, sos_eos=EOS, beam=1) == [[A, A]]


def _random_table(rng, depth):
    """Random next-token distributions for every prefix shorter than ``depth``;
    prefixes of length depth - 1 end almost surely, so no prefix outlives ``max_len = depth``."""
    table = {}
    for n in range(depth):
        for prefix in itertools.product((BLANK, A, B), repeat=n):
            weights = [rng.random() + 1e-3 for _ in range(V)]
            if n == depth - 1:
                weights = [1e-12, 1e-12, 1e-12, 1.0]
            table[prefix] = tuple(w / sum(weights) for w in weights)
    return table


@pytest.mark.parametrize("seed", range(5))
def test_wide_beam_equals_exhaustive_search(seed):
    max_len = 4  # at most 3 tokens + <eos>
    table = _random_table(random.Random(seed), max_len)
    candidates = [t for n in range(max_len) for t in itertools.product((BLANK, A, B), repeat=n)]
    best = max(candidates, key=lambda t: _normalised_logp(table, t))
    enc, lens = _enc()
    got = attention_beam(TableDecoder(table), "surface", enc, lens, sos_eos=EOS, beam=100, max_len=max_len)
    assert got == [list(best)]


def test_greedy_is_batched_and_stops_each_row_at_its_eos():
    # Batch rows share the table, so make rows differ by prefix only: every row follows the same
    # chain; what is checked is that finished rows stop growing and the batch is one call per step.
    table = {(): (0.0, 0.1, 0.8, 0.1), (B,): (0.0, 0.7, 0.2, 0.1), (B, A): (0.0, 0.1, 0.1, 0.8)}
    model = TableDecoder(table)
    enc, lens = _enc(batch=3)
    assert attention_greedy(model, "surface", enc, lens, sos_eos=EOS) == [[B, A]] * 3
    assert model.calls == [(3, 1), (3, 2), (3, 3)]


def test_max_len_bounds_output():
    never_ends = {}
    model = TableDecoder(never_ends, default=(0.0, 0.9, 0.0999, 0.0001))
    enc, lens = _enc(frames=5)
    assert attention_greedy(model, "surface", enc, lens, sos_eos=EOS) == [[A] * 5]  # default: valid frames
    assert attention_greedy(model, "surface", enc, lens, sos_eos=EOS, max_len=2) == [[A, A]]
    assert attention_beam(model, "surface", enc, lens, sos_eos=EOS, beam=2, max_len=3) == [[A, A, A]]


def test_beam_size_must_be_positive():
    enc, lens = _enc()
    with pytest.raises(CKAProbeError, match="beam"):
        attention_beam(TableDecoder({}), "surface", enc, lens, sos_eos=EOS, beam=0)


def _one_hot_path(path, vocab=5):
    """(T, V) log-probs whose arg-max is ``path``."""
    lp = torch.full((len(path), vocab), -5.0)
    lp[torch.arange(len(path)), torch.tensor(path, dtype=torch.long)] = -0.1
    return lp


def test_ctc_greedy_merges_repeats_then_drops_blanks():
    paths = [[1, 1, 0, 1, 2, 2, 0, 0], [0, 3, 3, 3, 0, 0, 4, 0]]
    lp = torch.stack([_one_hot_path(p) for p in paths])
    assert ctc_greedy(lp, torch.tensor([8, 8])) == [[1, 1, 2], [3, 4]]
    # frames past a row's length are padding and ignored
    assert ctc_greedy(lp, torch.tensor([3, 2])) == [[1], [3]]


@pytest.mark.parametrize("seed", range(5))
def test_ctc_greedy_inverts_a_random_alignment(seed):
    rng = random.Random(seed)
    labels = [rng.randint(1, 4) for _ in range(rng.randint(0, 10))]
    path = [0] * rng.randint(0, 2)
    for prev, lab in zip([None, *labels], labels):
        if lab == prev:
            path.append(0)  # CTC needs a blank between repeated labels
        path += [lab] * rng.randint(1, 3) + [0] * rng.randint(0, 2)
    lp = _one_hot_path(path)[None]
    assert ctc_greedy(lp, torch.tensor([len(path)])) == [labels]
