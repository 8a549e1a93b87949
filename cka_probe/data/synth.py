"""The synthetic L2 corpus: meaning sentences, learner-style surface forms, espeak-ng audio.

For each utterance ``i`` (its own generator, seeded with ``(seed, language, i)``):

1. draw a target surface–meaning edit-distance bin with probabilities
   :data:`BIN_WEIGHTS` over the paper's bins 0, 1–3, 4–10, >10;
2. draw a new meaning sentence from the template grammar (``sentences``);
3. draw the speaker's active error rules (none for bin 0, a few for 1–3, more
   for 4–10, many for >10), apply them (``rules_en``/``rules_ko``) and keep the
   result if the character Levenshtein distance between surface and meaning
   falls in the target bin (``cka_probe.text.cer``, the distance that
   ``evaluate`` bins by); otherwise draw again;
4. speak the surface form (English: its rewritten phonemes; Korean: its
   Hangul) with the utterance's speaker, a voice variant with its own rate and
   pitch, as 16 kHz mono 16-bit PCM.

Sentences are unique within a corpus. Splits are by utterance (80/10/10), so
every speaker occurs in every split; the test sentences never occur in
training. Audio is rendered in a process pool; files are written to temporary
names and renamed, and the manifests and ``summary.json`` are written last, so
an interrupted run never leaves a manifest that names missing audio.
"""

from __future__ import annotations

import json
import os
import unicodedata
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cka_probe.atomic import atomic_output, atomic_write_text
from cka_probe.data import espeak, rules_en, rules_ko, sentences
from cka_probe.data.manifest import write_manifest
from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import ED_BINS, char_errors, corpus_cer, ed_bin

BIN_WEIGHTS: tuple[float, ...] = (0.20, 0.35, 0.30, 0.15)  # P(bin) for bins 0, 1-3, 4-10, >10
RULE_COUNTS: dict[str, tuple[int, int | None]] = {
    "0": (0, 0),
    "1-3": (1, 2),
    "4-10": (2, 6),
    ">10": (6, None),
}
SPLITS: tuple[tuple[str, float], ...] = (("test", 0.1), ("valid", 0.1))  # the rest is train
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
N_SPEAKERS = 12
MIN_FRAMES_PER_CHAR = 1.1  # encoder frames (100 Hz / 4) per character, NFD for Korean
MAX_SENTENCES, MAX_RULE_DRAWS = 200, 30
LANG_CODES = {"en": 1, "ko": 2}


@dataclass(frozen=True)
class Language:
    """What the corpus needs from one language: voice, grammar, rules, speech rates."""

    code: str
    voice: str
    sentence: Callable[[np.random.Generator], list]
    surface: Callable[[list, frozenset[str]], tuple[str, str]]
    changed: Callable[[list, frozenset[str]], list[int]]
    rules: dict[str, str]
    exclusive: tuple[frozenset[str], ...]
    rates: tuple[int, int]  # espeak-ng -s range, words per minute


def language(lang: str) -> Language:
    """The :class:`Language` for ``en`` or ``ko`` (English phonemises its vocabulary once)."""
    if lang == "en":
        lexicon = espeak.phonemize(sentences.english_words(), "en-us")
        return Language(
            "en",
            "en-us",
            sentences.english_sentence,
            partial(rules_en.surface, lexicon=lexicon),
            partial(rules_en.changed_words, lexicon=lexicon),
            rules_en.RULES,
            rules_en.EXCLUSIVE,
            (130, 165),
        )
    if lang == "ko":
        return Language(
            "ko",
            "ko",
            sentences.korean_sentence,
            rules_ko.surface,
            rules_ko.changed_words,
            rules_ko.RULES,
            rules_ko.EXCLUSIVE,
            (140, 180),
        )
    raise CKAProbeError(f"unknown language {lang!r}: choose en or ko")


def speakers(spec: Language, seed: int) -> list[tuple[str, espeak.Voice]]:
    """``N_SPEAKERS`` (id, voice) pairs: distinct variants, rates and pitches drawn from ``seed``."""
    rng = np.random.default_rng([seed, LANG_CODES[spec.code], 0])
    variants = rng.permutation(len(VARIANTS))
    return [
        (
            f"{spec.code}-s{j:02d}",
            espeak.Voice(
                f"{spec.voice}+{VARIANTS[variants[j]]}",
                int(rng.integers(*spec.rates, endpoint=True)),
                int(rng.integers(30, 71)),
            ),
        )
        for j in range(N_SPEAKERS)
    ]


def draw_rules(rng: np.random.Generator, spec: Language, target: str) -> frozenset[str]:
    """A random set of active rules, as many as :data:`RULE_COUNTS` allows for bin ``target``."""
    low, high = RULE_COUNTS[target]
    names = sorted(spec.rules)
    k = int(rng.integers(low, (high or len(names)) + 1))
    active: set[str] = set()
    for name in (names[j] for j in rng.permutation(len(names))[:k]):
        if not any(name in group and active & group for group in spec.exclusive):
            active.add(name)
    return frozenset(active)


def effective_rules(spec: Language, words: list, active: frozenset[str]) -> list[str]:
    """The active rules whose removal would change the surface transcript."""
    text = spec.surface(words, active)[0]
    return sorted(r for r in active if spec.surface(words, active - {r})[0] != text)


def draw_utterance(rng: np.random.Generator, spec: Language, seen: set[str]) -> dict[str, Any]:
    """Meaning, surface, speech input and rules of one utterance whose edit distance hits a drawn bin."""
    target = ED_BINS[int(rng.choice(len(ED_BINS), p=BIN_WEIGHTS))]
    for _ in range(MAX_SENTENCES):
        words = spec.sentence(rng)
        meaning = " ".join(w.text for w in words)
        if meaning in seen:
            continue
        for _ in range(MAX_RULE_DRAWS):
            active = draw_rules(rng, spec, target)
            surface, speech = spec.surface(words, active)
            if ed_bin(char_errors(meaning, surface)) == target:
                seen.add(meaning)
                return {
                    "meaning": meaning,
                    "surface": surface,
                    "speech": speech,
                    "rules": effective_rules(spec, words, active),
                    "changed_words": spec.changed(words, active),
                }
    raise CKAProbeError(f"could not draw a new {spec.code} sentence in edit-distance bin {target}")


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono 16-bit PCM WAV, written to a temporary name and renamed."""
    with atomic_output(path, point="synth:wav") as tmp, wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(espeak.SAMPLE_RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def render(job: tuple[str, str, espeak.Voice, Path]) -> float:
    """Speak one utterance (``surface``, ``speech``, ``voice``, ``path``); its duration in seconds.

    If the audio has fewer than :data:`MIN_FRAMES_PER_CHAR` encoder frames per
    character (10 ms frames, 4× subsampling), it is spoken again 15% slower.
    """
    surface, speech, voice, path = job
    units = len(unicodedata.normalize("NFD", surface))
    for _ in range(4):
        samples = espeak.speak(speech, voice)
        duration = len(samples) / espeak.SAMPLE_RATE
        if duration * 100 / 4 >= MIN_FRAMES_PER_CHAR * units:
            break
        voice = replace(voice, rate=int(voice.rate * 0.85))
    _write_wav(path, samples)
    return duration


def assign_splits(n: int, seed: int, test_n: int | None = None) -> list[str]:
    """Split name of each of ``n`` utterances: 10% test (or ``test_n``), 10% valid (at least one each), the
    rest train."""
    if n < 3:
        raise CKAProbeError(f"--n must be at least 3 (one utterance per split), got {n}")
    if test_n is not None and not 1 <= test_n <= n - 2:
        raise CKAProbeError(f"the test split must hold 1 to n − 2 = {n - 2} utterances, got {test_n}")
    order = np.random.default_rng([seed, 0, 0]).permutation(n)
    names, start = ["train"] * n, 0
    for split, share in SPLITS:
        size = test_n if split == "test" and test_n is not None else max(1, round(share * n))
        for i in order[start : start + size]:
            names[i] = split
        start += size
    return names


def _map(function: Callable, jobs: Sequence, workers: int, desc: str) -> list:
    """``[function(j) for j in jobs]`` in a process pool of ``workers``, with a progress bar."""
    bar = partial(tqdm, total=len(jobs), desc=desc, unit="utt", leave=False)
    if workers <= 1:
        return [function(j) for j in bar(jobs)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(bar(pool.map(function, jobs, chunksize=8)))


def synthesize(
    *,
    lang: str,
    n: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    workers: int | None = None,
    test_n: int | None = None,
) -> dict[str, Path]:
    """Write a synthetic L2 corpus of ``n`` utterances to ``out_dir``; the manifest paths by split.

    Layout: ``wav/<id>.wav``, ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``,
    ``summary.json``. The same ``seed`` gives identical manifests and
    bitwise-identical audio. ``workers`` defaults to the number of CPUs;
    ``test_n`` sets the size of the test split (default 10 %).
    """
    splits = assign_splits(n, seed, test_n)
    spec = language(lang)
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    for stale in (*(out / f"{s}.jsonl" for s in ("train", "valid", "test")), out / "summary.json"):
        stale.unlink(missing_ok=True)
    voices = speakers(spec, seed)
    seen: set[str] = set()
    rows, jobs = [], []
    for i in tqdm(range(n), desc=f"{lang} text", unit="utt", leave=False, disable=None):
        rng = np.random.default_rng([seed, LANG_CODES[lang], i + 1])
        utt = draw_utterance(rng, spec, seen)
        speaker, voice = voices[int(rng.integers(len(voices)))]
        utt_id = f"{lang}-{i:06d}"
        rows.append(
            {
                "id": utt_id,
                "audio": f"wav/{utt_id}.wav",
                "surface": utt["surface"],
                "meaning": utt["meaning"],
                "language": lang,
                "speaker": speaker,
                "rules": utt["rules"],
                "changed_words": utt["changed_words"],
            }
        )
        if utt["speech"] != utt["surface"]:
            rows[-1]["phonemes"] = utt["speech"]
        jobs.append((utt["surface"], utt["speech"], voice, out / "wav" / f"{utt_id}.wav"))
    durations = _map(render, jobs, workers or os.cpu_count() or 1, f"{lang} audio")
    for row, duration in zip(rows, durations):
        row["duration"] = round(duration, 4)
    return _write_outputs(out, rows, splits, spec, voices, seed)


def _write_outputs(
    out: Path,
    rows: list[dict],
    splits: list[str],
    spec: Language,
    voices: list[tuple[str, espeak.Voice]],
    seed: int,
) -> dict[str, Path]:
    """The three manifests, then ``summary.json``; prints the bin table."""
    paths = {}
    for split in ("train", "valid", "test"):
        paths[split] = write_manifest(out / f"{split}.jsonl", [r for r, s in zip(rows, splits) if s == split])
    summary = summarize(rows, splits, spec, voices, seed)
    atomic_write_text(
        out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n", point="synth:summary"
    )
    print(format_summary(summary))
    return paths


def summarize(
    rows: list[dict], splits: list[str], spec: Language, voices: list[tuple[str, espeak.Voice]], seed: int
) -> dict[str, Any]:
    """Counts per edit-distance bin and split, rule usage, oracle CER, durations, speakers."""
    bins = {s: Counter() for s in ("train", "valid", "test")}
    distances: dict[str, list[int]] = {b: [] for b in ED_BINS}
    for row, split in zip(rows, splits):
        distance = char_errors(row["meaning"], row["surface"])
        bins[split][ed_bin(distance)] += 1
        distances[ed_bin(distance)].append(distance)
    frames = [r["duration"] * 25 / len(unicodedata.normalize("NFD", r["surface"])) for r in rows]
    return {
        "language": spec.code,
        "n": len(rows),
        "seed": seed,
        "bins": {s: {b: bins[s][b] for b in ED_BINS} for s in bins},
        "mean_distance": {b: float(np.mean(d)) if d else None for b, d in distances.items()},
        "oracle_cer": corpus_cer((r["meaning"], r["surface"]) for r in rows),
        "rules": {name: sum(name in r["rules"] for r in rows) for name in sorted(spec.rules)},
        "rule_descriptions": dict(sorted(spec.rules.items())),
        "duration_s": {
            "mean": float(np.mean([r["duration"] for r in rows])),
            "total": float(np.sum([r["duration"] for r in rows])),
        },
        "min_encoder_frames_per_char": float(min(frames)),
        "speakers": {sid: {"voice": v.name, "rate": v.rate, "pitch": v.pitch} for sid, v in voices},
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text table of utterances per edit-distance bin and split, with the oracle CER."""
    splits = list(summary["bins"])
    lines = [
        f"{'bin':>6} " + " ".join(f"{s:>7}" for s in splits) + f" {'all':>7} {'share':>7} {'mean ED':>8}"
    ]
    total = summary["n"]
    for b in ED_BINS:
        counts = [summary["bins"][s][b] for s in splits]
        mean = summary["mean_distance"][b]
        lines.append(
            f"{b:>6} "
            + " ".join(f"{c:>7}" for c in counts)
            + f" {sum(counts):>7} {100 * sum(counts) / total:>6.1f}% "
            + (f"{mean:>8.1f}" if mean is not None else f"{'-':>8}")
        )
    lines.append(
        f"{summary['language']}: {total} utterances, mean {summary['duration_s']['mean']:.2f} s, "
        f"oracle CER (surface vs meaning) {summary['oracle_cer']:.1f}%"
    )
    return "\n".join(lines)
