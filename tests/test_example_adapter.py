"""The shipped ``FILE.py:FUNCTION`` example end to end, and the Python adapter protocol's errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile
import torch

from cka_probe.asr.features import fbank
from cka_probe.cli import main
from cka_probe.store import ActivationStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hf_models import noise_corpus  # noqa: E402

torch.set_num_threads(1)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wenet_style_adapter.py"


def test_example_adapter_rows_equal_the_module_alone(tmp_path, capsys):
    manifest = noise_corpus(tmp_path / "data", [0.4, 0.9, 0.6, 0.5])
    out = tmp_path / "acts.h5"
    assert (
        main(
            ["extract", f"{EXAMPLE}:adapter", "--data", str(manifest), "--out", str(out), "--batch-size", "3"]
        )
        == 0
    )
    assert main(["layers", f"{EXAMPLE}:adapter"]) == 0
    assert "* encoders.1" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model = example.adapter().build("cpu")
    with ActivationStore(out) as store, torch.no_grad():
        assert store.attrs["arch"] == "wenet-style-ctc" and store.attrs["adapter_sha256"]
        for uid in store.ids:
            feats = fbank(soundfile.read(manifest.parent / f"{uid}.wav", dtype="float32")[0])
            alone = model(feats[None], torch.tensor([len(feats)]))[0]
            frames = ((len(feats) - 3) // 2 + 1 - 3) // 2 + 1
            stored = store.frames("encoder", "encoders.1", [uid])[0]
            assert stored.shape[0] == frames == alone.shape[0]
            np.testing.assert_allclose(stored, alone, atol=2e-5, rtol=1e-4)


def test_an_adapter_missing_a_duty_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("class A:\n    def build(self, device): ...\n\ndef make():\n    return A()\n")
    manifest = noise_corpus(tmp_path / "data", [0.4])
    assert main(["extract", f"{bad}:make", "--data", str(manifest), "--out", str(tmp_path / "a.h5")]) == 2
    assert "lacks default_layers, batches, forward" in capsys.readouterr().err
    assert main(["layers", f"{bad}:nothing"]) == 2
    assert "has no function nothing" in capsys.readouterr().err


def test_a_padding_sensitive_adapter_fails_the_self_check(tmp_path, capsys):
    """The example's model with one layer that subtracts the mean over every frame, padding included."""
    sensitive = tmp_path / "sensitive.py"
    sensitive.write_text(f"""
import importlib.util, torch
spec = importlib.util.spec_from_file_location("example", {str(EXAMPLE)!r})
example = importlib.util.module_from_spec(spec); spec.loader.exec_module(example)

class Centre(torch.nn.Module):
    def forward(self, x):
        return x - x.mean(dim=1, keepdim=True)

class Adapter(example.WenetStyleAdapter):
    def build(self, device):
        model = super().build(device)
        model.project = torch.nn.Sequential(model.project, Centre())
        return model

def make():
    return Adapter()
""")
    manifest = noise_corpus(tmp_path / "data", [0.4, 0.9])
    assert (
        main(["extract", f"{sensitive}:make", "--data", str(manifest), "--out", str(tmp_path / "a.h5")]) == 2
    )
    err = capsys.readouterr().err
    assert f"{sensitive}:make: padding changes layer project" in err and "utterance 'u0'" in err
    assert not (tmp_path / "a.h5").exists()


def test_the_self_check_runs_alone_only_the_most_padded_utterance_of_each_stream(tmp_path):
    """A batch of four: the encoder's most padded utterance is the shortest recording (u2), which is the one
    utterance run alone; extraction's own batches are the other calls of ``batches``."""
    from cka_probe.extract.models import extract_model
    from cka_probe.extract.models.python_adapter import load_python_adapter

    adapter = load_python_adapter(f"{EXAMPLE}:adapter")
    alone: list[str] = []
    batches = adapter.batches

    def counted(rows, batch_size, tasks):
        if len(rows) == 1:
            alone.append(rows[0]["id"])
        return batches(rows, batch_size, tasks)

    adapter.batches = counted
    manifest = noise_corpus(tmp_path / "data", [0.6, 0.9, 0.3, 0.5])
    with mock.patch("cka_probe.extract.models.resolve", lambda model: adapter):
        extract_model(f"{EXAMPLE}:adapter", manifest, tmp_path / "a.h5", batch_size=4)
    assert alone == ["u2"]
