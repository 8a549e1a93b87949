"""Audio files as the models need them: mono float32 at the model's rate, optionally one segment.

Files are read with soundfile (libsndfile): WAV, FLAC, OGG/Vorbis, and MP3
where the installed libsndfile supports it (1.1 and later). Integer PCM
becomes floats in [−1, 1) as libsndfile scales it (``x / 2^(bits−1)``), so a
FLAC file decodes to exactly the samples of the WAV it was made from. A
segment ``[start, end)`` (seconds) is cut at the file's own rate, samples
``round(start·rate)`` to ``round(end·rate)``, before any resampling; several
channels are averaged; another rate is converted with a polyphase filter
(``scipy.signal.resample_poly``, Kaiser window), in float64.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from cka_probe.errors import CKAProbeError


def segment_bounds(
    start: float | None, end: float | None, rate: int, frames: int, path: str | Path
) -> tuple[int, int]:
    """Sample indices ``[first, stop)`` of the segment ``[start, end)`` seconds in a file of ``frames``
    samples."""
    first = 0 if start is None else round(float(start) * rate)
    stop = frames if end is None else round(float(end) * rate)
    if not 0 <= first < stop <= frames:
        raise CKAProbeError(
            f"{path}: segment start={start}, end={end} s is not inside the recording "
            f"(0 to {frames / rate:.3f} s) or is empty"
        )
    return first, stop


def load_audio(
    path: str | Path,
    sample_rate: int,
    start: float | None = None,
    end: float | None = None,
    *,
    utterance: str | None = None,
) -> np.ndarray:
    """Mono float32 samples ``(S,)`` of ``path`` (or of its segment ``[start, end)`` s) at ``sample_rate``.

    An unreadable file, a segment outside the recording and NaN or infinite samples
    (float WAV, FLAC never) are errors naming ``path`` and, when given, the ``utterance`` id.
    """
    culprit = f"{path} (utterance {utterance})" if utterance else f"{path}"
    try:
        with soundfile.SoundFile(str(path)) as f:
            rate = f.samplerate
            first, stop = segment_bounds(start, end, rate, f.frames, culprit)
            f.seek(first)
            data = f.read(stop - first, dtype="float64", always_2d=True)  # (S, channels)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise CKAProbeError(f"{culprit}: not a readable audio file ({' '.join(str(err).split())})") from None
    if not np.isfinite(data).all():
        raise CKAProbeError(f"{culprit}: has non-finite samples (NaN or Inf); re-export the recording")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        g = math.gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // g, rate // g)
    return wave.astype(np.float32)


def audio_length(
    path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None
) -> int:
    """The sample count :func:`load_audio` returns, from the file's header alone (``resample_poly``
    makes ``⌈n·up/down⌉`` samples of ``n``)."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise CKAProbeError(f"{path}: not a readable audio file ({' '.join(str(err).split())})") from None
    first, stop = segment_bounds(start, end, info.samplerate, info.frames, path)
    g = math.gcd(info.samplerate, sample_rate)
    return -(-(stop - first) * (sample_rate // g) // (info.samplerate // g))
