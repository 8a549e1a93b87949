"""The corpus end to end: espeak-ng audio, manifests, determinism, interrupted runs, the CLI."""

from __future__ import annotations

import io
import json
import math
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from cka_probe.cli import main
from cka_probe.data import espeak, synth
from cka_probe.data.manifest import read_manifest
from cka_probe.errors import CKAProbeError


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def korean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ko")
    assert (
        main(["synth", "--lang", "ko", "--n", "10", "--out", str(out), "--seed", "5", "--workers", "2"]) == 0
    )
    return out


def test_same_seed_gives_identical_files_and_another_seed_does_not(korean: Path, tmp_path: Path) -> None:
    synth.synthesize(lang="ko", n=10, out_dir=tmp_path / "same", seed=5, workers=1)
    synth.synthesize(lang="ko", n=10, out_dir=tmp_path / "other", seed=6, workers=1)
    assert _files(tmp_path / "same") == _files(korean)  # pool vs inline: bitwise identical
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (korean / "train.jsonl").read_bytes()


def test_manifests_split_the_corpus_and_point_at_16khz_mono_pcm(korean: Path) -> None:
    rows = {s: read_manifest(korean / f"{s}.jsonl") for s in ("train", "valid", "test")}
    assert [len(rows[s]) for s in ("train", "valid", "test")] == [8, 1, 1]
    ids = [r["id"] for split in rows.values() for r in split]
    assert sorted(ids) == [f"ko-{i:06d}" for i in range(10)]
    for row in (r for split in rows.values() for r in split):
        with wave.open(row["audio"]) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() / 16000 == pytest.approx(row["duration"], abs=1e-4)
            assert wav.getnframes() * 100 / 160 / 4 >= 1.1 * len(row["surface"])  # CTC has room
        assert row["language"] == "ko" and row["speaker"].startswith("ko-s")


def test_summary_counts_every_utterance_once(korean: Path) -> None:
    summary = json.loads((korean / "summary.json").read_text(encoding="utf-8"))
    assert sum(sum(b.values()) for b in summary["bins"].values()) == summary["n"] == 10
    assert summary["seed"] == 5 and set(summary["rules"]) == set(summary["rule_descriptions"])
    assert 0 <= summary["oracle_cer"] <= 100
    bounds = {"0": (0, 0), "1-3": (1, 3), "4-10": (4, 10), ">10": (11, math.inf)}
    for b, mean in summary["mean_distance"].items():
        count = sum(summary["bins"][s][b] for s in summary["bins"])
        assert (mean is None) == (count == 0)
        assert mean is None or bounds[b][0] <= mean <= bounds[b][1]


def test_english_audio_is_spoken_from_rewritten_phonemes(tmp_path: Path) -> None:
    paths = synth.synthesize(lang="en", n=4, out_dir=tmp_path, seed=1, workers=1)
    rows = [r for p in paths.values() for r in read_manifest(p)]
    assert all(r["id"].startswith("en-") and r["duration"] > 0.5 for r in rows)
    voice = espeak.Voice("en-us", 150, 50)
    text = espeak.speak("the three brothers", voice)
    phonemes = espeak.speak("[[D@2 Tr'i: br'VD3z]]", voice)
    altered = espeak.speak("[[d@2 sr'i: bl'Vd3z]]", voice)
    assert len(text) == len(phonemes) and np.array_equal(text, phonemes)  # [[...]] is what espeak-ng says
    assert not np.array_equal(phonemes, altered)


def test_pcm_payload_and_resampling_against_the_wave_module() -> None:
    samples = (np.sin(np.arange(22050) / 7.0) * 8000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(22050)
        wav.writeframes(samples.tobytes())
    assert np.array_equal(np.frombuffer(espeak._pcm_payload(buffer.getvalue()), "<i2"), samples)
    with pytest.raises(CKAProbeError, match="WAV"):
        espeak._pcm_payload(b"not a wav")


def test_speak_resamples_22050_to_16000_hz() -> None:
    voice = espeak.Voice("en-us", 150, 50)
    raw = subprocess.run(
        ["espeak-ng", *voice.args(), "--stdout", "hello"], capture_output=True, check=True
    ).stdout
    n_raw = len(espeak._pcm_payload(raw)) // 2
    assert len(espeak.speak("hello", voice)) == math.ceil(n_raw * 16000 / 22050)


def test_interrupted_run_leaves_no_manifest(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "train.jsonl").write_text("stale\n")
    calls = []

    def failing_speak(text, voice):
        calls.append(text)
        if len(calls) == 3:
            raise CKAProbeError("synthesis failed")
        return np.zeros(10 * 16000, dtype=np.int16)

    monkeypatch.setattr(espeak, "speak", failing_speak)
    with pytest.raises(CKAProbeError, match="synthesis failed"):
        synth.synthesize(lang="ko", n=6, out_dir=tmp_path, seed=0, workers=1)
    assert not list(tmp_path.glob("*.jsonl")) and not (tmp_path / "summary.json").exists()
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 2 and not list((tmp_path / "wav").glob(".*"))


def test_missing_espeak_names_the_install_command(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(espeak.shutil, "which", lambda name: None)
    espeak.espeak_binary.cache_clear()
    try:
        assert main(["synth", "--lang", "en", "--n", "5", "--out", str(tmp_path)]) == 2
    finally:
        espeak.espeak_binary.cache_clear()
    assert "apt-get install espeak-ng" in capsys.readouterr().err


def test_bad_arguments_fail_before_any_output(tmp_path: Path) -> None:
    with pytest.raises(CKAProbeError, match="at least 3"):
        synth.synthesize(lang="en", n=2, out_dir=tmp_path / "a")
    with pytest.raises(CKAProbeError, match="unknown language 'fr'"):
        synth.synthesize(lang="fr", n=5, out_dir=tmp_path / "b")
    assert not list(tmp_path.iterdir())
