"""Features, CMVN, SpecAugment and batching of the bundled ASR models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.data import (
    MIN_FRAMES,
    ManifestBatches,
    TrainBatches,
    length_grouped_batches,
    load_features,
)
from cka_probe.asr.features import fbank, load_wav
from cka_probe.asr.specaugment import spec_augment
from cka_probe.asr.tokenizer import CharTokenizer
from cka_probe.errors import CKAProbeError


def chirp(seconds: float, seed: int = 0) -> np.ndarray:
    """A rising tone plus a little noise, in [-1, 1], at 16 kHz."""
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.02 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def kaldi_fbank(wave: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank with Kaldi's defaults (povey window, 0.97, 20 Hz..Nyquist) and no dither."""
    import kaldi_native_fbank as knf  # the test extra; imported here so that only this comparison needs it

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, (wave * 32768.0).tolist())
    online.input_finished()
    return np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])


def textbook_fbank(wave: np.ndarray) -> np.ndarray:
    """Frame by frame in float64 numpy: DC removal, pre-emphasis, Povey window, |FFT|², mel triangles, log."""
    x = wave.astype(np.float64) * 32768.0
    n_frames = 1 + (len(x) - 400) // 160
    hz_to_mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = hz_to_mel(20.0), hz_to_mel(8000.0)
    step = (hi - lo) / 81
    bin_mel = hz_to_mel(np.arange(257) * 16000 / 512)
    weights = np.zeros((80, 257))
    for m in range(80):
        left, centre, right = lo + m * step, lo + (m + 1) * step, lo + (m + 2) * step
        for k in range(256):
            if left < bin_mel[k] <= centre:
                weights[m, k] = (bin_mel[k] - left) / (centre - left)
            elif centre < bin_mel[k] < right:
                weights[m, k] = (right - bin_mel[k]) / (right - centre)
    window = np.array([(0.5 - 0.5 * math.cos(2 * math.pi * n / 399)) ** 0.85 for n in range(400)])
    out = np.empty((n_frames, 80))
    for t in range(n_frames):
        frame = x[160 * t : 160 * t + 400].copy()
        frame -= frame.mean()
        frame = frame - 0.97 * np.concatenate([[frame[0]], frame[:-1]])
        spectrum = np.abs(np.fft.fft(frame * window, 512)[:257]) ** 2
        out[t] = np.log(np.maximum(weights @ spectrum, np.finfo(np.float32).eps))
    return out


@pytest.mark.parametrize("seconds", [0.5, 1.23])
def test_fbank_matches_kaldi_native_fbank(seconds):
    wave = chirp(seconds)
    ours = fbank(wave).numpy()
    reference = kaldi_fbank(wave)
    assert ours.shape == reference.shape == (1 + (len(wave) - 400) // 160, 80)
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=0)


def test_fbank_matches_textbook_formulas():
    wave = chirp(0.3, seed=1)
    np.testing.assert_allclose(fbank(wave).numpy(), textbook_fbank(wave), atol=2e-3, rtol=0)


def test_fbank_of_a_too_short_signal_has_no_frames():
    assert fbank(np.zeros(399, dtype=np.float32)).shape == (0, 80)


def test_load_wav_scales_int16_and_resamples(tmp_path):
    wave = chirp(0.5)
    pcm = np.round(wave * 32767).astype(np.int16)
    wavfile.write(tmp_path / "a.wav", 16000, pcm)
    np.testing.assert_allclose(load_wav(tmp_path / "a.wav"), pcm / 32768.0, atol=1e-7)
    t = np.arange(22050) / 22050
    wavfile.write(tmp_path / "b.wav", 22050, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    resampled = load_wav(tmp_path / "b.wav")
    assert resampled.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(resampled))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz per bin for one second at 16 kHz


def test_load_wav_of_a_broken_file_names_it(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(CKAProbeError, match="broken.wav"):
        load_wav(bad)


def test_global_cmvn_normalises_to_zero_mean_unit_variance():
    rng = np.random.default_rng(0)
    feats = [torch.from_numpy(rng.normal(3.0, 2.0, (n, 80)).astype(np.float32)) for n in (17, 40, 5)]
    cmvn = GlobalCMVN.from_features(feats)
    stacked = np.concatenate([f.numpy() for f in feats]).astype(np.float64)
    np.testing.assert_allclose(cmvn.mean.numpy(), stacked.mean(0), atol=1e-6)
    np.testing.assert_allclose(1 / cmvn.istd.numpy(), stacked.std(0), rtol=1e-6)
    normalised = torch.cat([cmvn(f) for f in feats]).double()
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(0, unbiased=False), 1, atol=1e-5)
    again = GlobalCMVN.from_dict(cmvn.to_dict())
    assert torch.equal(again(feats[0]), cmvn(feats[0]))


def test_spec_augment_masks_only_valid_frames_and_is_seeded():
    feats = torch.randn(3, 50, 80) + 10.0
    lens = torch.tensor([50, 30, 12])
    cfg = dict(freq_masks=2, freq_width=10, time_masks=2, time_width=40, max_time_fraction=0.2)
    a = spec_augment(feats, lens, torch.Generator().manual_seed(1), **cfg)
    b = spec_augment(feats, lens, torch.Generator().manual_seed(1), **cfg)
    assert torch.equal(a, b)
    for i, n in enumerate(lens.tolist()):
        assert torch.equal(a[i, n:], feats[i, n:])  # padding untouched
        zero_frames = (a[i, :n] == 0).all(dim=1).sum().item()
        assert zero_frames <= 2 * int(0.2 * n)
        zero_bins = (a[i, :n] == 0).all(dim=0).sum().item()
        assert zero_bins <= 20
    assert (a == 0).any()


def test_length_grouped_batches_cover_all_and_group_by_length():
    lengths = [int(x) for x in np.random.default_rng(0).integers(10, 500, 103)]
    batches = length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(103))
    ranges = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))  # non-overlapping
    assert batches == length_grouped_batches(lengths, 8, seed=3, epoch=0)
    assert batches != length_grouped_batches(lengths, 8, seed=3, epoch=1)


def write_corpus(folder, seconds=(0.6, 0.3, 0.45)):
    rows = []
    for i, s in enumerate(seconds):
        wavfile.write(folder / f"u{i}.wav", 16000, np.round(chirp(s, seed=i) * 32767).astype(np.int16))
        rows.append(
            {
                "id": f"u{i}",
                "audio": f"u{i}.wav",
                "surface": f"ze {i}",
                "meaning": f"the {i}",
                "language": "en",
            }
        )
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_manifest_batches_carry_ids_normalised_feats_and_sos_prefixed_targets(tmp_path):
    rows = write_corpus(tmp_path)
    for r in rows:
        r["audio"] = str(tmp_path / r["audio"])
    feats = load_features(
        rows, {"sample_rate": 16000, "n_mels": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0}
    )
    cmvn = GlobalCMVN.from_features(feats)
    toks = {t: CharTokenizer.build([r[t] for r in rows], language="en") for t in ("surface", "meaning")}
    ckpt = {
        "config": {
            "features": {"sample_rate": 16000, "n_mels": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0}
        },
        "tokenizers": toks,
        "cmvn": cmvn,
        "tasks": ["surface", "meaning"],
    }
    batches = list(ManifestBatches(tmp_path / "m.jsonl", ckpt, batch_size=2))
    assert [b["ids"] for b in batches] == [["u0", "u1"], ["u2"]]
    first = batches[0]
    assert first["feats"].shape == (2, feats[0].shape[0], 80)
    assert first["feat_lens"].tolist() == [feats[0].shape[0], feats[1].shape[0]]
    torch.testing.assert_close(first["feats"][1, : feats[1].shape[0]], cmvn(feats[1]))
    tok = toks["meaning"]
    assert first["ys_in"]["meaning"][0].tolist() == [tok.sos_eos, *tok.encode("the 0")]
    assert first["ys_in_lens"]["meaning"].tolist() == [6, 6]
    assert len(list(ManifestBatches(tmp_path / "m.jsonl", ckpt, batch_size=2, limit=1))) == 1


def test_train_batches_are_seeded_and_padded_with_ignore_id(tmp_path):
    rows = write_corpus(tmp_path, seconds=(0.6, 0.3, 0.45, 0.2))
    feats = [torch.randn(n, 80) for n in (58, 28, 43, 18)]
    toks = {"surface": CharTokenizer.build([r["surface"] for r in rows], language="en")}
    cmvn = GlobalCMVN.from_features(feats)
    spec = dict(freq_masks=1, freq_width=5, time_masks=1, time_width=5, max_time_fraction=0.2)
    make = lambda: TrainBatches(rows, feats, toks, cmvn, 2, seed=7, spec_augment=spec)  # noqa: E731
    one, two = list(make().epoch(0)), list(make().epoch(0))
    assert len(one) == len(make()) == 2
    for a, b in zip(one, two):
        assert a["ids"] == b["ids"] and torch.equal(a["feats"], b["feats"])
    for batch in one:
        targets, lens = batch["targets"]["surface"], batch["target_lens"]["surface"]
        for row, n in zip(targets, lens.tolist()):
            assert (row[n:] == CharTokenizer.ignore_id).all() and (row[:n] >= 2).all()


def test_too_short_utterance_is_named(tmp_path):
    wavfile.write(tmp_path / "short.wav", 16000, np.zeros(400 + 160 * (MIN_FRAMES - 2), dtype=np.int16))
    row = {"id": "tiny-one", "audio": str(tmp_path / "short.wav")}
    with pytest.raises(CKAProbeError, match="tiny-one"):
        load_features(
            [row], {"sample_rate": 16000, "n_mels": 80, "frame_length_ms": 25.0, "frame_shift_ms": 10.0}
        )
