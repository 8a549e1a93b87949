"""Decoder token ids in the store, and one decoder module shared by several task streams."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract import extract
from cka_probe.extract.hooks import LayerCapture
from cka_probe.store import ActivationStore, StoreWriter, partial_path


class SharedDecoder(nn.Module):
    """One embedding + linear decoder, run once per task on that task's tokens."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.layer = nn.Embedding(20, 4), nn.Linear(4, 4)

    def forward(self, tokens: dict[str, torch.Tensor]) -> None:
        for task in ("surface", "meaning"):
            self.layer(self.embed(tokens[task]))


def batches() -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for b in range(3):
        lens = {t: torch.randint(1, 6, (2,), generator=gen) for t in ("surface", "meaning")}
        ids = {t: torch.randint(0, 20, (2, 6), generator=gen) for t in lens}
        out.append(
            {
                "ids": [f"u{2 * b}", f"u{2 * b + 1}"],
                "inputs": ids,
                "lengths": lens,
                "tokens": {f"decoder/{t}": ids[t] for t in lens},
            }
        )
    return out


def forward(model, batch):
    model(batch["inputs"])
    return {f"decoder/{t}": n for t, n in batch["lengths"].items()}


def test_a_module_shared_by_two_streams_gets_one_call_each_and_its_tokens(tmp_path):
    model = SharedDecoder()
    out = extract(
        model,
        batches(),
        layers={"decoder/surface": ["layer"], "decoder/meaning": ["layer"]},
        out=tmp_path / "a.h5",
        forward=forward,
        progress=False,
    )
    with ActivationStore(out) as store, torch.no_grad():
        for batch in batches():
            for b, uid in enumerate(batch["ids"]):
                for task in ("surface", "meaning"):
                    n = int(batch["lengths"][task][b])
                    ids = batch["inputs"][task][b, :n]
                    assert store.tokens(f"decoder/{task}", "layer", [uid])[0].tolist() == ids.tolist()
                    np.testing.assert_allclose(
                        store.frames(f"decoder/{task}", "layer", [uid])[0],
                        model.layer(model.embed(ids)),
                        rtol=1e-6,
                    )


def test_a_shared_module_called_the_wrong_number_of_times_is_an_error():
    model = SharedDecoder()
    with LayerCapture(model, {"decoder/surface": ["layer"], "decoder/meaning": ["layer"]}) as capture:
        model.layer(torch.zeros(1, 4))
        with pytest.raises(
            CKAProbeError,
            match="selected for streams decoder/surface, decoder/meaning but was called 1 times",
        ):
            capture.pop()


def test_resume_truncates_the_tokens_of_an_unfinished_commit(tmp_path):
    key = ("decoder/surface", "layer")

    def append(writer, b):
        rows = np.full((b + 1, 2), float(b), np.float32)
        writer.append(
            [f"u{b}"], {key: (rows, np.array([b + 1]))}, tokens={"decoder/surface": np.arange(b + 1) + 10 * b}
        )

    with StoreWriter(tmp_path / "ref.h5", commit_bytes=0) as writer:
        for b in range(4):
            append(writer, b)
        writer.finish()
    writer = StoreWriter(tmp_path / "a.h5", commit_bytes=0)
    for b in range(2):
        append(writer, b)
    writer.close()
    with h5py.File(partial_path(tmp_path / "a.h5"), "r+") as f:  # a killed commit wrote tokens past the end
        f["decoder/surface/layer/tokens"].resize(50, axis=0)
        f["decoder/surface/layer/tokens"][3:] = -1
    with StoreWriter(tmp_path / "a.h5", commit_bytes=0) as writer:
        assert writer.n_batches == 2
        for b in range(2, 4):
            append(writer, b)
        writer.finish()
    with ActivationStore(tmp_path / "a.h5") as got, ActivationStore(tmp_path / "ref.h5") as want:
        assert np.array_equal(got.tokens(*key)[0], want.tokens(*key)[0])
        assert got.tokens(*key, ["u2"])[0].tolist() == [20, 21, 22]


def test_token_ids_must_match_the_rows(tmp_path):
    with (
        StoreWriter(tmp_path / "a.h5") as writer,
        pytest.raises(CKAProbeError, match=r"layer decoder/surface/layer: \(2,\) token ids for 3 rows"),
    ):
        writer.append(
            ["u0"],
            {("decoder/surface", "layer"): (np.zeros((3, 2)), np.array([3]))},
            tokens={"decoder/surface": np.arange(2)},
        )
