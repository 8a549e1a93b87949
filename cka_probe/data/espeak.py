"""The espeak-ng text-to-speech program, run as a subprocess.

espeak-ng (https://github.com/espeak-ng/espeak-ng) is a formant synthesiser
with English and Korean voices. Two uses here:

- :func:`phonemize`: espeak-ng's own phoneme mnemonics for words
  (``espeak-ng -q -x --sep=_``), one list of phoneme tokens per word;
- :func:`speak`: a waveform, from text or from phonemes written ``[[...]]``.

espeak-ng writes 16-bit mono PCM at 22,050 Hz; :func:`speak` resamples it to
16 kHz with a polyphase filter, 22,050 · 320 / 441 = 16,000
(``scipy.signal.resample_poly``), and returns int16 samples. With one
espeak-ng build the output depends on the text, voice, rate and pitch only
(another build, e.g. another Debian release, may voice a text differently).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

from cka_probe.errors import CKAProbeError

SAMPLE_RATE = 16_000
ESPEAK_RATE = 22_050
INSTALL_HINT = (
    "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS)"
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng speaker: ``name`` such as ``en-us+f2``, rate ``-s`` (words/min), pitch ``-p`` (0–99)."""

    name: str
    rate: int
    pitch: int

    def args(self) -> list[str]:
        return ["-v", self.name, "-s", str(self.rate), "-p", str(self.pitch)]


@lru_cache(maxsize=1)
def espeak_binary() -> str:
    """Path of the ``espeak-ng`` executable; a clear error naming the install command if missing."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise CKAProbeError(f"espeak-ng was not found on PATH; {INSTALL_HINT}")
    return found


def _run(args: list[str], text: str) -> bytes:
    """Run espeak-ng with ``args`` on ``text`` (stdin, UTF-8); its stdout."""
    done = subprocess.run(
        [espeak_binary(), *args, "--stdin"], input=text.encode("utf-8"), capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
        raise CKAProbeError(f"espeak-ng {' '.join(args)} failed: {message}")
    return done.stdout


def phonemize(words: list[str], voice: str) -> dict[str, list[str]]:
    """Phoneme tokens of each word, as espeak-ng's mnemonics (stress marks ``'`` ``,`` kept).

    All words go through one espeak-ng call, one word a line; e.g. ``three`` →
    ``["T", "r", "'i:"]`` with ``voice="en-us"``. espeak-ng reads the list as
    running speech, so function words come out unstressed (``the`` → ``D@2``).
    """
    groups = _run(["-q", "-x", "--sep=_", "-v", voice], "\n".join(words) + "\n").decode("utf-8").split()
    if len(groups) != len(words):
        raise CKAProbeError(
            f"espeak-ng -x returned {len(groups)} phoneme groups for {len(words)} words "
            f"(voice {voice}); a word was read as several words or none"
        )
    return {word: group.split("_") for word, group in zip(words, groups)}


def speak(text: str, voice: Voice) -> np.ndarray:
    """Waveform (S,) int16 at 16 kHz of ``text`` (plain text or ``[[phonemes]]``) in ``voice``."""
    wav = _run([*voice.args(), "--stdout"], text)
    pcm = np.frombuffer(_pcm_payload(wav), dtype="<i2").astype(np.float64)
    resampled = resample_poly(pcm, 320, 441)
    return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)


def _pcm_payload(wav: bytes) -> bytes:
    """The sample bytes after the ``data`` chunk header of a WAV stream.

    espeak-ng streams to stdout with placeholder chunk sizes, so the payload is
    everything after the header rather than the size the header claims.
    """
    start = wav.find(b"data")
    if not wav.startswith(b"RIFF") or start < 0:
        raise CKAProbeError("espeak-ng did not produce a WAV stream")
    payload = wav[start + 8 :]
    return payload[: len(payload) // 2 * 2]
