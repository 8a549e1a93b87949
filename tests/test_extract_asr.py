"""Bundled checkpoints end to end: extract, layers, info, and torchrun with 2 ranks against 1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import assert_store_matches_single_forwards

from cka_probe.asr import load_checkpoint
from cka_probe.cli import main
from cka_probe.store import ActivationStore

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def test_extract_checkpoint_matches_single_utterance_forwards(noise_checkpoint, tmp_path):
    from cka_probe.asr.data import ManifestBatches
    from cka_probe.extract.asr import default_layers, extract_checkpoint, teacher_forced

    ckpt_path, manifest, rows = noise_checkpoint
    out = extract_checkpoint(ckpt_path, manifest, tmp_path / "do.h5", batch_size=3, limit=7)
    model, ckpt = load_checkpoint(ckpt_path)
    with ActivationStore(out) as store:
        assert store.streams() == ["encoder", "decoder/surface", "decoder/meaning"]
        assert store.layers("encoder") == ["encoder.embed", "encoder.layers.0", "encoder.layers.1"]
        assert store.layers("decoder/meaning") == ["decoders.meaning.layers.0", "decoders.meaning.layers.1"]
        attrs = store.attrs
        assert attrs["checkpoint_sha256"] == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
        assert attrs["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
        assert (attrs["arch"], attrs["tasks"], attrs["language"]) == ("do", ["surface", "meaning"], "en")
        assert attrs["config"] == ckpt["config"]
        assert store.ids == [r["id"] for r in rows[:7]]
        assert list(store.metadata["meaning"]) == [r["meaning"] for r in rows[:7]]
        batches = [
            {**b, "tasks": list(model.tasks)} for b in ManifestBatches(manifest, ckpt, batch_size=3, limit=7)
        ]
        assert_store_matches_single_forwards(
            store, model, batches, default_layers(model.tasks), teacher_forced, 1e-4, 1e-5
        )
        surface_len = store.row_counts("decoder/surface", "decoders.surface.layers.1", ["u3"])[0]
        assert surface_len == len("they was late") + 1
        tok = ckpt["tokenizers"]["surface"]
        # one input token id per row: <sos>, then the transcript
        for layer in store.layers("decoder/surface"):
            assert store.tokens("decoder/surface", layer, ["u3"])[0].tolist() == [
                tok.sos_eos,
                *tok.encode("they was late"),
            ]
        assert not store.has_tokens("encoder", "encoder.layers.0")
        assert attrs["tokenizer"]["surface"]["symbols"] == tok.symbols


def test_layers_and_info_commands(noise_checkpoint, tmp_path, capsys):
    ckpt_path, manifest, _ = noise_checkpoint
    assert main(["layers", str(ckpt_path)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert any(line.split()[:2] == ["*", "encoder.layers.1"] for line in listed)
    assert any(line.startswith("  encoder.layers.1.") for line in listed)
    out = tmp_path / "so.h5"
    argv = [
        "extract",
        str(ckpt_path),
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--tasks",
        "meaning",
        "--layers",
        "encoder.layers.*",
        "decoders.meaning.layers.1",
        "--limit",
        "2",
    ]
    assert main(argv) == 0
    assert main(argv) == 0  # rerunning a finished extraction keeps the store
    assert "so.h5: already complete" in capsys.readouterr().err
    assert main([*argv, "--dtype", "float16"]) == 2
    assert (
        "so.h5: already exists (dtype: 'float32' there, 'float16' now); pass --overwrite"
        in capsys.readouterr().err
    )
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "complete, 2 utterances" in text and "stream decoder/meaning: 1 layers" in text
    assert "decoder/surface" not in text and "arch: do" in text
    assert (
        main(
            [
                "extract",
                str(ckpt_path),
                "--data",
                str(manifest),
                "--out",
                str(tmp_path / "x.h5"),
                "--layers",
                "decoders.nothing.*",
            ]
        )
        == 2
    )
    assert "'decoders.nothing.*' matches no module" in capsys.readouterr().err


def test_torchrun_two_ranks_equal_one_process(noise_checkpoint, tmp_path):
    ckpt_path, manifest, _ = noise_checkpoint
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    common = ["-m", "cka_probe", "extract", str(ckpt_path), "--data", str(manifest), "--batch-size", "2"]
    one = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "one.h5")], env=env, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *common,
            "--out",
            str(tmp_path / "two.h5"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "two.h5"]
    with ActivationStore(tmp_path / "one.h5") as a, ActivationStore(tmp_path / "two.h5") as b:
        assert a.ids == b.ids and a.metadata.equals(b.metadata)
        assert a.attrs["checkpoint_sha256"] == b.attrs["checkpoint_sha256"]
        for stream in a.streams():
            assert a.layers(stream) == b.layers(stream)
            for layer in a.layers(stream):
                np.testing.assert_array_equal(a.frames(stream, layer)[0], b.frames(stream, layer)[0])
                np.testing.assert_array_equal(a.frames(stream, layer)[1], b.frames(stream, layer)[1])
                np.testing.assert_array_equal(a.means(stream, layer), b.means(stream, layer))
                if stream != "encoder":  # the merge copies the token ids with the rows
                    np.testing.assert_array_equal(a.tokens(stream, layer)[0], b.tokens(stream, layer)[0])
