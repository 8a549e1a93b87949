"""Generic extraction: exact round trips, padding never stored, layer selection, repeats, decoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract import LayerCapture, extract, select_modules
from cka_probe.store import ActivationStore

torch.set_num_threads(1)


class IntegerLinearStack(nn.Module):
    """Frame-wise linear maps with small integer weights: float32 arithmetic is exact."""

    def __init__(self, dims: tuple[int, ...] = (3, 4, 5, 2), seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(*[nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        for layer in self.net:
            layer.weight.data = torch.randint(-2, 3, layer.weight.shape, generator=gen).float()
            layer.bias.data = torch.randint(-2, 3, layer.bias.shape, generator=gen).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def expected(self, x: np.ndarray) -> list[np.ndarray]:
        """Each layer's output for one utterance ``(T, d0)``, in int64 numpy."""
        outs, h = [], x.astype(np.int64)
        for layer in self.net:
            h = h @ layer.weight.detach().numpy().astype(np.int64).T + layer.bias.detach().numpy().astype(
                np.int64
            )
            outs.append(h)
        return outs


def integer_batches(n_batches: int = 4, batch: int = 3, dim: int = 3, seed: int = 0, pad: float = 1e4):
    """Padded batches of integer frames; padding rows hold ``pad`` so that a leak would show."""
    gen = torch.Generator().manual_seed(seed)
    batches, utterances = [], {}
    for b in range(n_batches):
        lengths = torch.randint(1, 7, (batch,), generator=gen)
        x = torch.full((batch, int(lengths.max()), dim), pad)
        ids = [f"utt{b:02d}{i}" for i in range(batch)]
        for i, uid in enumerate(ids):
            utterances[uid] = torch.randint(-3, 4, (int(lengths[i]), dim), generator=gen).float()
            x[i, : lengths[i]] = utterances[uid]
        batches.append(
            {
                "ids": ids,
                "inputs": x,
                "lengths": lengths,
                "metadata": {"speaker": [f"s{i}" for i in range(batch)], "n_frames": lengths.tolist()},
            }
        )
    return batches, utterances


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


class ToyEncoderDecoders(nn.Module):
    """Subsampling by 2, masked self-attention layers, and one teacher-forced decoder per task.

    Padding changes every output unless the masks work, so the stored rows
    equal single-utterance forwards only when padding never leaks.
    """

    def __init__(self, dim: int = 8, vocab: int = 7, tasks: tuple[str, ...] = ("surface", "meaning")):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(2 * dim, dim)
        self.layers = nn.ModuleList([nn.MultiheadAttention(dim, 2, batch_first=True) for _ in range(2)])
        self.decoders = nn.ModuleDict({t: ToyDecoder(dim, vocab) for t in tasks})

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = x.shape[1] // 2
        h, enc_lens = self.embed(x[:, : 2 * steps].reshape(len(x), steps, -1)), lengths // 2
        pad = torch.arange(steps)[None, :] >= enc_lens[:, None]
        for layer in self.layers:
            h = h + layer(h, h, h, key_padding_mask=pad)[0]
        return h, enc_lens


class ToyDecoder(nn.Module):
    def __init__(self, dim: int, vocab: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([nn.MultiheadAttention(dim, 2, batch_first=True) for _ in range(2)])

    def forward(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys_in: torch.Tensor) -> torch.Tensor:
        pad = torch.arange(enc.shape[1])[None, :] >= enc_lens[:, None]
        h = self.emb(ys_in)
        for layer in self.layers:
            h = h + layer(h, enc, enc, key_padding_mask=pad)[0]
        return h


def teacher_forced(model: ToyEncoderDecoders, batch: dict) -> dict[str, torch.Tensor]:
    """Forward for :func:`extract`: encoder, then one teacher-forced pass per task."""
    enc, enc_lens = model.encode(batch["feats"], batch["feat_lens"])
    lengths = {"encoder": enc_lens}
    for task, decoder in model.decoders.items():
        decoder(enc, enc_lens, batch["ys_in"][task])
        lengths[f"decoder/{task}"] = batch["ys_in_lens"][task]
    return lengths


def toy_asr_batches(n_batches: int = 3, batch: int = 3, dim: int = 8, vocab: int = 7, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        feat_lens = torch.randint(2, 12, (batch,), generator=gen)
        ys_lens = {t: torch.randint(1, 5, (batch,), generator=gen) for t in ("surface", "meaning")}
        feats = torch.randn(batch, int(feat_lens.max()), dim, generator=gen)
        feats[torch.arange(feats.shape[1])[None, :] >= feat_lens[:, None]] = 1e3
        ys_in = {t: torch.randint(0, vocab, (batch, int(n.max())), generator=gen) for t, n in ys_lens.items()}
        out.append(
            {
                "ids": [f"b{b}u{i}" for i in range(batch)],
                "feats": feats,
                "feat_lens": feat_lens,
                "ys_in": ys_in,
                "ys_in_lens": ys_lens,
            }
        )
    return out


TOY_LAYERS = {
    "encoder": ["embed", "layers.*"],
    "decoder/surface": ["decoders.surface.layers.*"],
    "decoder/meaning": ["decoders.meaning.layers.*"],
}


def unpad(batch: dict, i: int) -> dict:
    """Utterance ``i`` of a padded batch alone, without padding (feats, ys_in per task)."""
    one = {
        "feats": batch["feats"][i : i + 1, : int(batch["feat_lens"][i])],
        "feat_lens": batch["feat_lens"][i : i + 1],
        "ys_in": {t: y[i : i + 1, : int(batch["ys_in_lens"][t][i])] for t, y in batch["ys_in"].items()},
        "ys_in_lens": {t: n[i : i + 1] for t, n in batch["ys_in_lens"].items()},
    }
    return {**one, "tasks": batch["tasks"]} if "tasks" in batch else one


def assert_store_matches_single_forwards(store, model, batches, patterns, forward, rtol, atol) -> None:
    """Every stored utterance's rows and means equal a forward of that utterance alone."""
    for batch in batches:
        for i, uid in enumerate(batch["ids"]):
            with LayerCapture(model, {"all": patterns}) as capture, torch.no_grad():
                forward(model, unpad(batch, i))
                alone = {name: out[0] for name, out in capture.pop()["all"].items()}
            for stream in store.streams():
                for layer in store.layers(stream):
                    np.testing.assert_allclose(
                        store.frames(stream, layer, [uid])[0], alone[layer].numpy(), rtol=rtol, atol=atol
                    )
                    np.testing.assert_allclose(
                        store.means(stream, layer, [uid])[0],
                        alone[layer].double().mean(0).numpy(),
                        rtol=rtol,
                        atol=atol,
                    )


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
