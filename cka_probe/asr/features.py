"""Kaldi-style log-mel filterbank features in torch (Povey 2011, ``compute-fbank-feats``).

For each 25 ms frame (400 samples at 16 kHz) taken every 10 ms (160 samples),
frames lying wholly inside the signal (Kaldi's ``snip_edges``):

1. remove the DC offset: ``x ← x − mean(x)``;
2. pre-emphasis: ``x[n] ← x[n] − 0.97·x[n−1]`` (``x[−1] = x[0]``);
3. Povey window ``w[n] = (0.5 − 0.5·cos(2πn/(N−1)))^0.85``;
4. power spectrum ``|FFT_512(x·w)|²`` (257 bins);
5. triangular filters equally spaced on the mel scale ``m(f) = 1127·ln(1 + f/700)``
   between 20 Hz and the Nyquist frequency (Davis & Mermelstein 1980);
6. ``log(max(E, ε))`` with ε the float32 machine epsilon.

Waveforms are floats in [−1, 1]; they are scaled to the 16-bit range
(``× 32768``) as Kaldi reads them, so that the log floor acts the same way.
No dither: one machine gives the same features for the same audio every time (another CPU may
differ in the last bits). Dtype: the output is float32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from cka_probe.data.audio import load_audio

SAMPLE_RATE = 16000
N_FFT = 512
PREEMPHASIS = 0.97
LOW_FREQ = 20.0


def load_wav(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    start: float | None = None,
    end: float | None = None,
    *,
    utterance: str | None = None,
) -> np.ndarray:
    """Mono float32 in [−1, 1] at ``sample_rate``, ``(S,)``: any format soundfile reads (see
    :func:`cka_probe.data.audio.load_audio`), optionally the segment ``[start, end)`` seconds; an error
    names ``path`` and, when given, the ``utterance`` id."""
    return load_audio(path, sample_rate, start, end, utterance=utterance)


def mel(freq: torch.Tensor) -> torch.Tensor:
    """Kaldi's mel scale: ``1127·ln(1 + f/700)``."""
    return 1127.0 * torch.log1p(freq / 700.0)


@lru_cache(maxsize=4)
def mel_banks(n_mels: int = 80, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> torch.Tensor:
    """Triangular mel filters ``(n_mels, n_fft/2 + 1)``, zero on the Nyquist bin as in Kaldi."""
    edges = torch.linspace(
        float(mel(torch.tensor(LOW_FREQ))), float(mel(torch.tensor(sample_rate / 2))), n_mels + 2
    )
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = mel(torch.arange(n_fft // 2, dtype=torch.float64) * sample_rate / n_fft).float()
    up = (bins - left) / (centre - left)
    down = (right - bins) / (right - centre)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.cat([banks, torch.zeros(n_mels, 1)], dim=1)


@lru_cache(maxsize=4)
def povey_window(length: int) -> torch.Tensor:
    """``(0.5 − 0.5·cos(2πn/(N−1)))^0.85``, shape ``(N,)``."""
    return torch.hann_window(length, periodic=False, dtype=torch.float64).pow(0.85).float()


def frames(wave: torch.Tensor, length: int, shift: int) -> torch.Tensor:
    """Frames wholly inside the signal: ``(S,) -> (T, length)``, ``T = 1 + (S − length) // shift``."""
    if wave.numel() < length:
        return wave.new_zeros(0, length)
    return wave.unfold(0, length, shift)


def fbank(
    wave: np.ndarray | torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = 80,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform ``(S,)`` in [−1, 1]; returns ``(T, n_mels)`` float32."""
    length = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    x = frames(torch.as_tensor(wave, dtype=torch.float32) * 32768.0, length, shift)  # (T, N)
    if x.shape[0] == 0:
        return x.new_zeros(0, n_mels)
    x = x - x.mean(dim=1, keepdim=True)
    x = torch.cat([x[:, :1] * (1 - PREEMPHASIS), x[:, 1:] - PREEMPHASIS * x[:, :-1]], dim=1)
    power = torch.fft.rfft(x * povey_window(length), n=N_FFT).abs().pow(2)  # (T, N_FFT/2 + 1)
    energies = power @ mel_banks(n_mels, sample_rate, N_FFT).T  # (T, n_mels)
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()
