"""A worked ``FILE.py:FUNCTION`` adapter: a WeNet-style CTC encoder written as a plain torch module.

Use it as ``cka-probe extract examples/wenet_style_adapter.py:adapter --data m.jsonl --out acts.h5``.
For your own ESPnet or WeNet model, replace ``TinyEncoder`` by your model
class and load its weights in ``build`` (here: ``$WENET_STYLE_WEIGHTS`` if
set, else seeded random weights); the rest is the protocol of
``cka_probe.extract.models.base``: build, default_layers, batches, forward,
the optional transcribe (greedy CTC), which ``cka-probe evaluate
examples/wenet_style_adapter.py:adapter --data m.jsonl --out cer.csv`` scores,
and the optional build_random (the architecture with fresh weights), which
``cka-probe extract ... --random-init SEED --role rand`` and ``reproduce --model
en:sso=examples/wenet_style_adapter.py:adapter`` extract as the random-initialisation floor.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from cka_probe.asr.features import fbank, load_wav

ALPHABET = "_ abcdefghijklmnopqrstuvwxyz'"
"""The CTC head's output symbols; index 0 (``_``) is the blank."""


class TinyEncoder(nn.Module):
    """80-dim fbank ``(B, T, 80)`` -> 4x subsampling (two stride-2 convs) -> Transformer layers ``(B, T',
    D)``, and a CTC head ``ctc`` (``D`` -> ``len(ALPHABET)``) for transcripts."""

    def __init__(self, d_model: int = 32, n_layers: int = 2):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(1, 4, 3, 2), nn.ReLU(), nn.Conv2d(4, 4, 3, 2), nn.ReLU())
        self.project = nn.Linear(4 * 19, d_model)
        self.encoders = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, 2, 64, dropout=0.0, batch_first=True) for _ in range(n_layers)
        )
        self.ctc = nn.Linear(d_model, len(ALPHABET))

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Two unpadded 3-wide stride-2 convolutions: ``⌊(⌊(T − 3)/2⌋ + 1 − 3)/2⌋ + 1``."""
        return ((lengths - 3) // 2 + 1 - 3) // 2 + 1

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(feats[:, None]).permute(0, 2, 1, 3).flatten(2)  # (B, T', 4 * 19)
        x = self.project(x)
        pad = torch.arange(x.shape[1], device=x.device)[None] >= self.output_lengths(lengths)[:, None]
        for layer in self.encoders:
            x = layer(x, src_key_padding_mask=pad)
        return x


class WenetStyleAdapter:
    name = "wenet-style example"

    def build(self, device: str) -> nn.Module:
        model = self.build_random("cpu", 0)
        weights = os.environ.get("WENET_STYLE_WEIGHTS")
        if weights:
            model.load_state_dict(torch.load(weights, map_location="cpu"))
        return model.to(device).eval()

    def build_random(self, device: str, seed: int) -> nn.Module:
        """The same architecture with fresh weights drawn after ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        return TinyEncoder().to(device).eval()

    def default_layers(self, tasks):
        return ["project", "encoders.*"]

    def batches(self, rows, batch_size, tasks):
        for start in range(0, len(rows), batch_size):
            block = rows[start : start + batch_size]
            feats = [fbank(load_wav(r["audio"], 16000, r.get("start"), r.get("end"))) for r in block]
            lengths = torch.tensor([len(f) for f in feats])
            yield {
                "ids": [r["id"] for r in block],
                "feats": nn.utils.rnn.pad_sequence(feats, batch_first=True),
                "lengths": lengths,
            }

    def forward(self, model, batch):
        model(batch["feats"], batch["lengths"])
        return {"encoder": TinyEncoder.output_lengths(batch["lengths"])}

    def transcribe(self, model, batch):
        """Greedy CTC over each utterance's valid frames: argmax, repeats collapsed, blanks dropped."""
        best = model.ctc(model(batch["feats"], batch["lengths"])).argmax(-1)  # (B, T')
        texts = []
        for ids, n in zip(best, TinyEncoder.output_lengths(batch["lengths"])):
            symbols = torch.unique_consecutive(ids[:n]).tolist()
            texts.append("".join(ALPHABET[i] for i in symbols if i != 0))
        return {"surface": texts}

    def attrs(self):
        return {
            "arch": "wenet-style-ctc",
            "weights": os.environ.get("WENET_STYLE_WEIGHTS", "random (seed 0)"),
        }


def adapter() -> WenetStyleAdapter:
    return WenetStyleAdapter()
