"""Seconds to a model's encoder frames, by the model's own frame arithmetic.

Frame ``t`` of an encoder stream is centred at ``(centre + t · stride) / rate``
seconds of its utterance, where ``stride`` is the samples between frames and
``centre`` the centre of frame 0's receptive field (in samples). A word
``[start_s, end_s)`` gets the frames whose centre falls inside it, and at least
one: the frame nearest its midpoint when no centre does (a word shorter than a
frame). Per family (read from the store's attributes, :func:`store_grid`):

- bundled models: the fbank (``frame_length_ms`` window, ``frame_shift_ms``
  hop; 25 ms and 10 ms) then the Conv2d subsampling's two kernel-3,
  stride-2 convolutions (:mod:`cka_probe.asr.nn.subsampling`): a stack of
  convolutions in samples, 40 ms per frame, receptive field 85 ms;
- Whisper: 2 × ``hop_length`` samples (20 ms) per encoder frame; the log-mel
  frames are centred on their hop (``center=True`` STFT) and the two
  convolutions (kernel 3, padding 1, strides 1 and 2) keep encoder frame
  ``i`` centred on mel frame ``2i``: ``centre = 0``;
- the wav2vec2 family: the CNN feature encoder's ``conv_kernel`` and
  ``conv_stride`` (Baevski et al. 2020; 20 ms per frame, 25 ms receptive field
  in the base models).

A stack of convolutions (kernel ``k_i``, stride ``s_i`` in outputs of the
layer before, no padding) has
``stride = Π s_i``, receptive field ``R = 1 + Σ_i (k_i − 1) Π_{j<i} s_j``
samples, frame ``t`` covering samples ``[t · stride, t · stride + R)`` and so
``centre = R / 2``; ``L`` samples give ``⌊(L − k) / s⌋ + 1`` outputs per
layer (:meth:`FrameGrid.count`), the lengths the models themselves report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cka_probe.errors import CKAProbeError

SUBSAMPLING = ((3, 2), (3, 2))
"""The bundled Conv2d subsampling's time convolutions, ``(kernel, stride)`` in fbank frames: a stack's kernel
and stride count the outputs of the layer before."""
ROUNDING = 6
"""Decimals a frame position is rounded to before ``ceil``, so that a boundary on a centre is not lost to
float error."""


@dataclass(frozen=True)
class FrameGrid:
    """Where an encoder's frames lie in time: frame ``t`` centred at ``(centre + t · stride) / rate`` s.

    ``convs``: ``(kernel, stride)`` in samples of the convolution stack that makes the frames (their
    count per :meth:`count`), or empty for a family whose count is ``⌈samples / stride⌉`` (Whisper).
    """

    family: str
    rate: int
    stride: int
    centre: float
    convs: tuple[tuple[int, int], ...] = ()

    def count(self, samples: int) -> int:
        """Frames of an utterance of ``samples`` samples."""
        if not self.convs:
            return -(-samples // self.stride)
        for kernel, stride in self.convs:
            samples = max((samples - kernel) // stride + 1, 0)
        return samples

    def position(self, seconds: float) -> float:
        """``seconds`` in frame units: frame ``t``'s centre is at position ``t``."""
        return round((seconds * self.rate - self.centre) / self.stride, ROUNDING)

    def frames(self, start_s: float, end_s: float, n_frames: int) -> tuple[int, int]:
        """``[start, end)``: the frames of ``0 .. n_frames − 1`` centred in ``[start_s, end_s)``, else the one
        nearest the word's midpoint (the later one of two as near)."""
        start = min(max(math.ceil(self.position(start_s)), 0), n_frames)
        end = min(max(math.ceil(self.position(end_s)), 0), n_frames)
        if end > start:
            return start, end
        nearest = min(max(math.floor(self.position((start_s + end_s) / 2) + 0.5), 0), n_frames - 1)
        return nearest, nearest + 1

    def seconds(self, start: int, end: int) -> tuple[float, float]:
        """The times of frames ``[start, end)``: from halfway between frame ``start − 1``'s centre and frame
        ``start``'s (0 at the least) to halfway after frame ``end − 1``'s; :meth:`frames` maps them back."""
        at = lambda position: (self.centre + position * self.stride) / self.rate  # noqa: E731
        return max(at(start - 0.5), 0.0), at(end - 0.5)


def conv_grid(family: str, rate: int, convs: tuple[tuple[int, int], ...]) -> FrameGrid:
    """The grid of a stack of convolutions ``(kernel, stride)`` in samples (module docstring)."""
    stride, field = 1, 1
    for kernel, step in convs:
        field += (kernel - 1) * stride
        stride *= step
    return FrameGrid(family, rate, stride, field / 2, tuple(convs))


def bundled_grid(config: dict[str, Any]) -> FrameGrid:
    """A bundled model's grid from its config's ``features`` (as :func:`cka_probe.asr.features.fbank`
    frames the audio)."""
    features = config["features"]
    rate = int(features["sample_rate"])
    length = int(rate * features["frame_length_ms"] / 1000)
    shift = int(rate * features["frame_shift_ms"] / 1000)
    return conv_grid("bundled", rate, ((length, shift), *SUBSAMPLING))


def whisper_grid(preprocessor: dict[str, Any]) -> FrameGrid:
    """Whisper's grid from its feature extractor's settings (``sampling_rate``, ``hop_length``)."""
    return FrameGrid("whisper", int(preprocessor["sampling_rate"]), 2 * int(preprocessor["hop_length"]), 0.0)


def wav2vec2_convs(attrs: dict[str, Any], path: Path) -> tuple[tuple[int, int], ...]:
    """The CNN's ``(kernel, stride)`` per layer: the store's ``conv_kernel``/``conv_stride`` if it records
    them, else the model folder's ``config.json`` when its sha256 is still the one the store recorded."""
    config = attrs
    if "conv_kernel" not in attrs:
        from cka_probe.paths import file_sha256

        file = Path(attrs.get("hf_folder", "")) / "config.json"
        if not file.is_file() or file_sha256(file) != attrs.get("config_sha256"):
            raise CKAProbeError(
                f"{path}: the store does not record its CNN's conv_kernel/conv_stride and {file} is "
                "missing or changed since extraction; the word frames cannot be computed"
            )
        config = json.loads(file.read_text())
    return tuple(zip(map(int, config["conv_kernel"]), map(int, config["conv_stride"])))


def store_grid(attrs: dict[str, Any], path: str | Path = "store") -> FrameGrid:
    """The encoder grid of a store extracted by a bundled, Whisper or wav2vec2-family adapter, from its
    attributes; any other adapter is a one-line error naming ``path``."""
    adapter = attrs.get("adapter")
    if adapter == "bundled":
        return bundled_grid(attrs["config"])
    if adapter == "whisper":
        return whisper_grid(attrs["preprocessor"])
    if adapter == "wav2vec2":
        rate = int(attrs["preprocessor"]["sampling_rate"])
        return conv_grid(attrs.get("arch", "wav2vec2"), rate, wav2vec2_convs(attrs, Path(path)))
    raise CKAProbeError(
        f"{path}: word times map to the frames of bundled, Whisper and wav2vec2-family stores, not of a "
        f"{adapter!r} store; give word spans in its frames (a .jsonl with start/end and n_frames)"
    )
