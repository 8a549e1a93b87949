"""Generic extraction: exact round trips, padding never stored, layer selection, repeats, decoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import (
    TOY_LAYERS,
    IntegerLinearStack,
    ToyEncoderDecoders,
    assert_store_matches_single_forwards,
    integer_batches,
    teacher_forced,
    toy_asr_batches,
)
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract import extract, select_modules
from cka_probe.store import ActivationStore

torch.set_num_threads(1)


def test_fixed_linear_maps_round_trip_exactly(tmp_path):
    model = IntegerLinearStack()
    batches, utterances = integer_batches()
    out = extract(model, batches, layers=["net.*"], out=tmp_path / "acts.h5", progress=False)
    with ActivationStore(out) as store:
        assert store.ids == list(utterances)
        assert store.layers("encoder") == ["net.0", "net.1", "net.2"]
        for k, layer in enumerate(store.layers("encoder")):
            rows, offsets = store.frames("encoder", layer)
            for i, uid in enumerate(store.ids):
                want = model.expected(utterances[uid].numpy())[k]
                np.testing.assert_array_equal(rows[offsets[i] : offsets[i + 1]], want)
                np.testing.assert_allclose(store.means("encoder", layer, [uid])[0], want.mean(0), rtol=1e-6)
        assert store.metadata.loc["utt011", "n_frames"] == len(utterances["utt011"])
        assert store.metadata.loc["utt011", "speaker"] == "s1"


def test_limit_stores_the_first_n_utterances(tmp_path):
    model = IntegerLinearStack()
    batches, utterances = integer_batches()
    out = extract(model, batches, layers=["net.2"], out=tmp_path / "a.h5", limit=5, progress=False)
    with ActivationStore(out) as store:
        assert store.ids == list(utterances)[:5]
        assert len(store.metadata) == 5


def test_glob_star_stays_within_one_component():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    assert select_modules(model, ["*"]) == ["0", "1"]
    assert select_modules(model, ["0.*"]) == ["0.0", "0.1"]
    assert select_modules(model, ["**"]) == ["0", "0.0", "0.1", "1"]
    with pytest.raises(CKAProbeError, match="'2.*' matches no module"):
        select_modules(model, ["2.*"])


class Twice(nn.Module):
    """Calls the same block twice; the block returns a tuple (output, extra)."""

    def __init__(self):
        super().__init__()
        self.block = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.block(x))


def test_repeated_calls_need_opt_in_then_are_named_by_call(tmp_path):
    model = Twice()
    x = torch.randn(2, 3, 2)
    batches = [{"ids": ["a", "b"], "inputs": x}]
    with pytest.raises(CKAProbeError, match="block was called 2 times"):
        extract(model, batches, layers=["block"], out=tmp_path / "x.h5", progress=False)
    out = extract(model, batches, layers=["block"], out=tmp_path / "y.h5", allow_repeats=True, progress=False)
    with ActivationStore(out) as store, torch.no_grad():
        assert store.layers("encoder") == ["block@0", "block@1"]
        first = model.block(x)
        np.testing.assert_allclose(store.frames("encoder", "block@0")[0], first.reshape(-1, 2), rtol=1e-6)
        np.testing.assert_allclose(
            store.frames("encoder", "block@1")[0], model.block(first).reshape(-1, 2), rtol=1e-6
        )


class TupleLayer(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2 * x, -x


def test_output_selector_picks_from_tuples(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), TupleLayer())
    batches = [{"ids": ["a"], "inputs": torch.ones(1, 2, 2)}]
    default = extract(model, batches, layers=["1"], out=tmp_path / "a.h5", progress=False)
    second = extract(
        model, batches, layers=["1"], out=tmp_path / "b.h5", progress=False, select=lambda name, out: out[1]
    )
    with ActivationStore(default) as a, ActivationStore(second) as b:
        np.testing.assert_array_equal(a.frames("encoder", "1")[0], -2 * b.frames("encoder", "1")[0])


def test_lengths_longer_than_the_output_name_the_utterance(tmp_path):
    model = IntegerLinearStack()
    batches = [{"ids": ["a", "b"], "inputs": torch.zeros(2, 3, 3), "lengths": torch.tensor([3, 4])}]
    with pytest.raises(CKAProbeError, match="net.0: utterance b has valid length 4"):
        extract(model, batches, layers=["net.0"], out=tmp_path / "a.h5", progress=False)
    assert not (tmp_path / "a.h5").exists()


def test_padding_never_reaches_the_store_encoder_and_decoders(tmp_path):
    model = ToyEncoderDecoders()
    batches = toy_asr_batches()
    out = extract(
        model, batches, layers=TOY_LAYERS, out=tmp_path / "acts.h5", forward=teacher_forced, progress=False
    )
    with ActivationStore(out) as store:
        assert store.streams() == ["encoder", "decoder/surface", "decoder/meaning"]
        assert store.layers("decoder/meaning") == ["decoders.meaning.layers.0", "decoders.meaning.layers.1"]
        patterns = [p for ps in TOY_LAYERS.values() for p in ps]
        assert_store_matches_single_forwards(store, model, batches, patterns, teacher_forced, 1e-5, 1e-5)


def test_float16_storage_keeps_means_from_full_precision(tmp_path):
    model = ToyEncoderDecoders()
    batches = toy_asr_batches()
    kwargs = {"layers": TOY_LAYERS, "forward": teacher_forced, "progress": False}
    full = extract(model, batches, out=tmp_path / "f32.h5", **kwargs)
    half = extract(model, batches, out=tmp_path / "f16.h5", dtype="float16", compression="gzip", **kwargs)
    with ActivationStore(full) as a, ActivationStore(half) as b:
        rows32, rows16 = a.frames("encoder", "layers.1")[0], b.frames("encoder", "layers.1")[0]
        assert rows16.dtype == np.float16
        np.testing.assert_array_equal(rows16, rows32.astype(np.float16))
        np.testing.assert_array_equal(b.means("encoder", "layers.1"), a.means("encoder", "layers.1"))
