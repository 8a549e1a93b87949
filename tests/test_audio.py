"""Audio through soundfile: formats, resampling, downmixing, segments; manifests with only id and audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from cka_probe.data.audio import audio_length, load_audio
from cka_probe.data.manifest import AUDIO_FIELDS, read_manifest
from cka_probe.errors import CKAProbeError


def sine(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def test_stereo_8k_is_downmixed_and_resampled_to_the_sine_at_16k(tmp_path):
    x, y = sine(8000, 0.5), sine(8000, 0.5, 1000.0) * 0.3
    soundfile.write(tmp_path / "st.wav", np.stack([x + y, x - y], axis=1), 8000, subtype="FLOAT")
    wave = load_audio(tmp_path / "st.wav", 16000)
    assert wave.dtype == np.float32 and len(wave) == 16000 // 2
    inner = slice(200, -200)  # away from the filter's edge effects
    np.testing.assert_allclose(wave[inner], sine(16000, 0.5)[inner], atol=2e-3)


@pytest.mark.parametrize(
    ("rate", "start", "end"),
    [(16000, None, None), (44100, 0.1, 0.73), (22050, 0.0, 0.05), (8000, 0.31, None)],
)
def test_audio_length_from_the_header_equals_the_loaded_length(tmp_path, rate, start, end):
    soundfile.write(tmp_path / "a.flac", (sine(rate, 0.8) * 20000).astype(np.int16), rate, subtype="PCM_16")
    assert audio_length(tmp_path / "a.flac", 16000, start, end) == len(
        load_audio(tmp_path / "a.flac", 16000, start, end)
    )


def test_flac_decodes_to_the_samples_of_its_wav(tmp_path):
    pcm = (np.random.default_rng(0).normal(size=5000) * 4000).astype(np.int16)
    soundfile.write(tmp_path / "a.wav", pcm, 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "a.flac", pcm, 16000, subtype="PCM_16")
    flac, wav = load_audio(tmp_path / "a.flac", 16000), load_audio(tmp_path / "a.wav", 16000)
    assert np.array_equal(flac, wav) and np.array_equal(wav, (pcm / 32768).astype(np.float32))


@pytest.mark.parametrize(("fmt", "suffix"), [("OGG", ".ogg"), ("MP3", ".mp3")])
def test_lossy_formats_read_at_their_length(tmp_path, fmt, suffix):
    if fmt not in soundfile.available_formats():
        pytest.skip(f"this libsndfile ({soundfile.__libsndfile_version__}) has no {fmt}")
    path = tmp_path / f"a{suffix}"
    soundfile.write(path, sine(16000, 1.0), 16000, format=fmt)
    wave = load_audio(path, 16000)
    assert abs(len(wave) - 16000) <= 1152 and 0.3 < np.abs(wave).max() < 0.7


def test_a_segment_outside_the_recording_and_a_non_audio_file_are_one_line_errors(tmp_path):
    soundfile.write(tmp_path / "a.wav", sine(16000, 0.5), 16000)
    with pytest.raises(CKAProbeError, match=r"a\.wav: segment start=0.2, end=0.9 s is not inside"):
        load_audio(tmp_path / "a.wav", 16000, 0.2, 0.9)
    (tmp_path / "b.wav").write_bytes(b"not audio at all")
    with pytest.raises(CKAProbeError, match=r"b\.wav: not a readable audio file"):
        load_audio(tmp_path / "b.wav", 16000)


def test_manifest_of_id_and_audio_suffices_for_audio_fields(tmp_path):
    soundfile.write(tmp_path / "a.wav", sine(16000, 0.5), 16000)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": "a.wav", "start": 0.1, "end": 0.3}) + "\n")
    assert read_manifest(path, require=AUDIO_FIELDS)[0]["start"] == 0.1
    with pytest.raises(CKAProbeError, match=r"m\.jsonl:1: missing field 'surface'"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"start": "0.1"}, "'start' must be a non-negative number"),
        ({"end": -1}, "'end' must be a non-negative number"),
        ({"start": 0.5, "end": 0.5}, "start 0.5 s is not before its end"),
    ],
)
def test_bad_segment_bounds_name_the_line(tmp_path, extra, message):
    soundfile.write(tmp_path / "a.wav", sine(16000, 0.5), 16000)
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"id": "x", "audio": "a.wav"})
        + "\n"
        + json.dumps({"id": "a", "audio": "a.wav", **extra})
        + "\n"
    )
    with pytest.raises(CKAProbeError, match=rf"m\.jsonl:2: .*{message}"):
        read_manifest(path, require=AUDIO_FIELDS)


def test_a_manifest_that_is_not_utf8_names_file_and_line(tmp_path):
    soundfile.write(tmp_path / "a.wav", sine(16000, 0.5), 16000)
    path = tmp_path / "m.jsonl"
    path.write_bytes(
        json.dumps({"id": "a", "audio": "a.wav"}).encode()
        + b"\n"
        + '{"id": "b", "audio": "a.wav", "surface": "café"}'.encode("latin-1")
        + b"\n"
    )
    with pytest.raises(CKAProbeError, match=r"m\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 46\)"):
        read_manifest(path, require=AUDIO_FIELDS)
