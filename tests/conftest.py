"""Fixtures shared by the test modules (plain helpers are in ``helpers.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import NOISE_TEXTS, SPEECH_UTTERANCES, manifest_row, shrunk_config, untrained_checkpoint
from scipy.io import wavfile

from cka_probe.data.espeak import Voice, speak
from cka_probe.data.manifest import write_manifest


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a shared 2-core machine, 2 threads can be many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    """4 English utterances spoken from their surface text (:data:`helpers.SPEECH_UTTERANCES`); valid = the
    first one."""
    folder = tmp_path_factory.mktemp("corpus")
    rows = []
    for i, (surface, meaning, _) in enumerate(SPEECH_UTTERANCES):
        wavfile.write(folder / f"u{i}.wav", 16000, speak(surface, Voice("en-us", 170, 50)))
        rows.append(manifest_row(i, f"u{i}.wav", surface, meaning, speaker="s0"))
    return {
        "train": write_manifest(folder / "train.jsonl", rows),
        "valid": write_manifest(folder / "valid.jsonl", rows[:1]),
        "rows": rows,
        "folder": folder,
    }


@pytest.fixture(scope="module")
def noise_checkpoint(tmp_path_factory):
    """``(checkpoint, manifest, rows)``: a DO checkpoint trained for 0 steps (tiny config, shrunk) and an
    8-utterance manifest of noise (:data:`helpers.NOISE_TEXTS`)."""
    root = tmp_path_factory.mktemp("asr")
    rng = np.random.default_rng(0)
    rows = []
    for i, (surface, meaning) in enumerate(NOISE_TEXTS):
        wav = root / f"u{i}.wav"
        wavfile.write(
            wav, 16000, (rng.normal(size=int(16000 * rng.uniform(0.2, 0.6))) * 3000).astype(np.int16)
        )
        rows.append(manifest_row(i, wav.name, surface, meaning, speaker=f"s{i % 3}"))
    manifest = root / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ckpt = untrained_checkpoint(root / "do.pt", shrunk_config(2, 2), rows, "do", ("surface", "meaning"))
    return ckpt, manifest, rows
