"""Seconds to encoder frames (:mod:`cka_probe.spans.frames`) against each model family's own arithmetic.

Each family's grid is built from the attributes its adapter records in a
store, then checked against the model itself: the frame count against the
lengths the model computes for the same audio, and each frame's receptive
field against the output frames that a one-sample change of the audio moves.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.resolve import resolve
from cka_probe.spans.frames import store_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import shrunk_config, untrained_checkpoint, word_manifest  # noqa: E402
from hf_models import wav2vec2_folder, whisper_folder  # noqa: E402

torch.set_num_threads(1)
LENGTHS = [400, 401, 559, 560, 1039, 1040, 1359, 1360, 1999, 2000, 16000, 24007]
"""Sample counts around the frame boundaries of the three families (and 1 s, 1.5 s)."""


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("grids")
    _, rows = word_manifest(root)
    ckpt = untrained_checkpoint(root / "so.pt", shrunk_config(1, 1), rows, "so", ("surface",))
    return {
        "bundled": resolve(ckpt),
        "whisper": resolve(whisper_folder(root / "whisper")),
        "wav2vec2": resolve(wav2vec2_folder(root / "w2v", norm="layer")),
    }


def changed_frames(outputs, wave: np.ndarray, sample: int) -> set[int]:
    """The output frames that move when one sample of ``wave`` changes; ``outputs(wave) -> (T, D)``."""
    bumped = wave.copy()
    bumped[sample] += 0.5
    before, after = outputs(wave), outputs(bumped)
    return set(np.flatnonzero((before - after).abs().amax(dim=1) > 1e-6).tolist())


# -- bundled: fbank (25 ms window, 10 ms hop) then the Conv2d subsampling


def test_bundled_frame_count_is_the_fbank_and_subsampling_lengths(adapters):
    from cka_probe.asr.features import fbank
    from cka_probe.asr.nn.subsampling import subsampled_lengths

    grid = store_grid(adapters["bundled"].attrs())
    for n in LENGTHS:
        feats = fbank(np.zeros(n, dtype=np.float32))
        assert grid.count(n) == max(int(subsampled_lengths(torch.tensor(feats.shape[0]))), 0)  # none: 0
    assert (grid.stride, grid.rate) == (640, 16000)  # 4 x 10 ms


def test_bundled_receptive_field_is_the_samples_that_move_a_subsampled_frame(adapters):
    from cka_probe.asr.features import fbank
    from cka_probe.asr.nn.subsampling import Conv2dSubsampling4

    torch.manual_seed(0)
    embed = Conv2dSubsampling4(80, 8, 16, nn.Identity()).eval()
    grid = store_grid(adapters["bundled"].attrs())
    wave = np.random.default_rng(0).normal(size=8000).astype(np.float32) * 0.1
    with torch.no_grad():
        outputs = lambda w: embed(fbank(w)[None])[0]  # noqa: E731
        for sample in (3000, 3333, 5119):
            # frame t covers fbank frames 4t .. 4t + 6: samples [640 t, 640 t + 6 * 160 + 400)
            want = {t: (640 * t, 640 * t + 1360) for t in range(grid.count(len(wave)))}
            assert changed_frames(outputs, wave, sample) == {
                t for t, (a, b) in want.items() if a <= sample < b
            }
            # the grid's centre is the middle of that field
            for t, (a, b) in want.items():
                assert grid.centre + t * grid.stride == (a + b) / 2


# -- Whisper: 20 ms frames of its window


def test_whisper_frame_count_is_the_adapters_and_every_counted_frame_has_its_centre_in_the_audio(adapters):
    adapter = adapters["whisper"]
    grid = store_grid(adapter.attrs())
    for n in LENGTHS:
        assert grid.count(n) == math.ceil(n / 320)  # the adapter's enc_lens: ceil(samples / (2 * hop))
        # frames centred in [0, n / 16000): frame i at 20 i ms
        assert grid.frames(0.0, n / 16000, 10_000) == (0, sum(0.02 * i < n / 16000 for i in range(2000)))


def test_whisper_receptive_field_is_centred_on_20ms_steps(adapters):
    adapter = adapters["whisper"]
    grid = store_grid(adapter.attrs())
    model = adapter.build("cpu")
    encoder = model.model.encoder
    wave = np.random.default_rng(1).normal(size=8000).astype(np.float32) * 0.1

    def outputs(w):
        feats = adapter.features(w, sampling_rate=16000, return_tensors="pt")["input_features"]
        x = torch.nn.functional.gelu(encoder.conv1(feats))
        return torch.nn.functional.gelu(encoder.conv2(x))[0].T[:25]  # (T, D)

    with torch.no_grad():
        for sample in (3000, 3333, 4159):
            moved = changed_frames(outputs, wave, sample)
            # mel frame j: STFT window of 400 centred on sample 160 j; encoder frame i: mel 2i-2 .. 2i+2
            field = {i for i in range(25) if 320 * i - 520 <= sample < 320 * i + 520}
            assert moved and moved <= field
            nearest = round(sample / 320)
            assert nearest in moved and grid.centre + nearest * grid.stride == 320 * nearest


# -- wav2vec2 family: the CNN's kernels and strides


def test_wav2vec2_frame_count_is_the_models_own_output_lengths(adapters):
    adapter = adapters["wav2vec2"]
    adapter.ready(adapter.build("cpu"))
    grid = store_grid(adapter.attrs())
    assert [grid.count(n) for n in LENGTHS] == adapter.output_lengths(torch.tensor(LENGTHS)).tolist()


def test_wav2vec2_receptive_field_is_the_samples_that_move_a_cnn_frame(adapters):
    adapter = adapters["wav2vec2"]
    model = adapter.ready(adapter.build("cpu"))
    grid = store_grid(adapter.attrs())
    wave = np.random.default_rng(2).normal(size=2000).astype(np.float32)
    outputs = lambda w: model.feature_extractor(torch.from_numpy(w)[None])[0].T  # noqa: E731
    # kernels (10, 3, 3), strides (5, 2, 2): 20 samples per frame, frame t over samples [20 t, 20 t + 40)
    with torch.no_grad():
        for sample in (500, 517, 1239):
            want = {t for t in range(grid.count(len(wave))) if 20 * t <= sample < 20 * t + 40}
            assert changed_frames(outputs, wave, sample) == want
    assert (grid.stride, grid.centre) == (20, 20.0)


def test_a_wav2vec2_store_whose_config_changed_cannot_map_times(adapters, tmp_path):
    """A store that records its CNN maps times by it; one that does not (written before it did) reads the
    folder's config.json, refused when it is not the one extracted with."""
    attrs = adapters["wav2vec2"].attrs()
    recorded = store_grid(attrs, "s.h5")
    attrs = {k: v for k, v in attrs.items() if k not in ("conv_kernel", "conv_stride")}
    assert store_grid(attrs, "s.h5") == recorded
    folder = Path(attrs["hf_folder"])
    config = json.loads((folder / "config.json").read_text())
    attrs["hf_folder"] = str(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config | {"conv_stride": [5, 2, 1]}))
    with pytest.raises(CKAProbeError, match=r"^s\.h5: the store does not record its CNN's conv_kernel"):
        store_grid(attrs, "s.h5")
    with pytest.raises(CKAProbeError, match=r"^s\.h5: word times map to the frames of bundled, Whisper"):
        store_grid({"adapter": "python"}, "s.h5")


# -- a word's frames: those centred inside it, at least one


def test_a_words_frames_are_those_centred_inside_it():
    from cka_probe.spans.frames import FrameGrid

    whisper = FrameGrid("whisper", 16000, 320, 0.0)  # centres at 0, 20, 40, ... ms
    assert whisper.frames(0.05, 0.11, 50) == (3, 6)  # 60, 80, 100 ms
    assert whisper.frames(0.06, 0.10, 50) == (3, 5)  # 60 ms in, 100 ms is the end: out
    assert whisper.frames(0.061, 0.075, 50) == (3, 4)  # no centre inside: the one nearest its 68 ms middle
    assert whisper.frames(0.061, 0.079, 50) == (4, 5)  # a middle halfway (70 ms): the later frame
    assert whisper.frames(0.95, 1.5, 50) == (48, 50)  # clipped to the utterance's 50 frames
    bundled = FrameGrid("bundled", 16000, 640, 680.0)  # centres at 42.5, 82.5, 122.5, ... ms
    assert bundled.frames(0.08, 0.16, 40) == (1, 3)


def test_ctc_frames_as_seconds_map_back_to_the_same_frames(adapters):
    grid = store_grid(adapters["bundled"].attrs())
    for start in range(0, 12):
        for end in range(start + 1, 14):
            assert grid.frames(*grid.seconds(start, end), 14) == (start, end)
