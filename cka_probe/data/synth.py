"""The synthetic L2 corpus: meaning sentences, learner-style surface forms, espeak-ng audio.

For each utterance ``i`` (its own generator, seeded with ``(seed, language, i + 1)``):

1. draw a target surface–meaning edit-distance bin with probabilities
   :data:`BIN_WEIGHTS` over the paper's bins 0, 1–3, 4–10, >10;
2. draw a new meaning sentence from the template grammar (``sentences``);
3. draw the speaker's active error rules (a few for 1–3, more for 4–10, many
   for >10; for bin 0 any number, since :data:`RULE_COUNTS`' upper bound 0
   reads as "all rules", kept only if none changes the text), apply them
   (``rules_en``/``rules_ko``) and keep the result if the character
   Levenshtein distance between surface and meaning falls in the target bin
   (``cka_probe.text.cer``, the distance that ``evaluate`` bins by); otherwise
   draw again;
4. speak the surface form (English: its rewritten phonemes; Korean: its
   Hangul) with the utterance's speaker, a voice variant with its own rate and
   pitch, as 16 kHz mono 16-bit PCM.

Sentences are unique within a corpus. Splits are by utterance (80/10/10), so
every speaker occurs in every split; the test sentences never occur in
training. Audio is rendered in a process pool; files are written to temporary
names and renamed, and the manifests and ``summary.json`` are written last, so
an interrupted run never leaves a manifest that names missing audio.

The divergence dial (``divergence``, :func:`bin_weights`) moves the target-bin
probabilities from all 0 (level 0: surface = meaning) through
:data:`BIN_WEIGHTS` (level 1, the default: steps 1–4 above, unchanged) to all
>10 (level 2). Away from level 1 the sentences and speakers are still those of
level 1 and only the surface is redrawn from a second generator
(:func:`transcripts`), so every level of one seed has the same utterances.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
import wave
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
BIN_BOUNDS: dict[str, tuple[float, float]] = {
    "0": (0, 0),
    "1-3": (1, 3),
    "4-10": (4, 10),
    ">10": (11, math.inf),
}
DEFAULT_DIVERGENCE, MAX_DIVERGENCE = 1.0, 2.0  # levels of the divergence dial (bin_weights)
DIAL_STREAM = 1  # fourth seed word of the generator that draws surfaces away from the default level
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


def rule_draws(
    rng: np.random.Generator, spec: Language, words: list, target: str
) -> Iterator[dict[str, Any]]:
    """Up to :data:`MAX_RULE_DRAWS` utterances of ``words`` under rule sets drawn for bin ``target``."""
    for _ in range(MAX_RULE_DRAWS):
        yield spoken(spec, words, draw_rules(rng, spec, target))


def spoken(spec: Language, words: list, active: frozenset[str]) -> dict[str, Any]:
    """``words`` under the ``active`` rules: meaning, surface, speech input, their character edit distance."""
    meaning = " ".join(w.text for w in words)
    surface, speech = spec.surface(words, active)
    return {
        "words": words,
        "meaning": meaning,
        "surface": surface,
        "speech": speech,
        "active": active,
        "distance": char_errors(meaning, surface),
    }


def draw_utterance(rng: np.random.Generator, spec: Language, seen: set[str]) -> dict[str, Any]:
    """Meaning, surface, speech input and rules of one utterance whose edit distance hits a drawn bin.

    The default level of the dial: the bin is drawn with :data:`BIN_WEIGHTS`, and a
    sentence whose rule draws all miss it is replaced by a new sentence.
    """
    target = ED_BINS[int(rng.choice(len(ED_BINS), p=BIN_WEIGHTS))]
    for _ in range(MAX_SENTENCES):
        words = spec.sentence(rng)
        if " ".join(w.text for w in words) in seen:
            continue
        for draw in rule_draws(rng, spec, words, target):
            if ed_bin(draw["distance"]) == target:
                seen.add(draw["meaning"])
                return with_rules(spec, draw)
    raise CKAProbeError(f"could not draw a new {spec.code} sentence in edit-distance bin {target}")


def bin_weights(divergence: float) -> np.ndarray:
    """P(target bin) over :data:`ED_BINS` at level ``divergence`` of the dial (0 to :data:`MAX_DIVERGENCE`).

    Piecewise linear in the level: ``(1 − d)·[bin 0] + d·BIN_WEIGHTS`` for ``d ≤ 1``
    and ``(2 − d)·BIN_WEIGHTS + (d − 1)·[bin >10]`` for ``1 < d ≤ 2``. Level 0 gives
    no errors, level 1 today's corpus (:data:`BIN_WEIGHTS`), level 2 every
    utterance in bin >10. Each step up moves probability to higher bins only, so
    the bin distribution rises in the usual stochastic order with the level.
    """
    if not 0 <= divergence <= MAX_DIVERGENCE:
        raise CKAProbeError(f"--divergence must be from 0 to {MAX_DIVERGENCE:g}, got {divergence:g}")
    none, most, today = np.eye(len(ED_BINS))[0], np.eye(len(ED_BINS))[-1], np.array(BIN_WEIGHTS)
    if divergence <= 1:
        return (1 - divergence) * none + divergence * today
    return (2 - divergence) * today + (divergence - 1) * most


def draw_surface(
    rng: np.random.Generator, spec: Language, words: list, weights: np.ndarray
) -> dict[str, Any]:
    """A surface form of the fixed sentence ``words`` aiming at an edit-distance bin drawn with ``weights``.

    The bin is the inverse CDF of one uniform draw, so with the same ``rng`` seed
    a higher level never draws a lower bin. Bin 0 is the sentence without rules.
    The sentence cannot be replaced (it is shared across levels), so when all
    :data:`MAX_RULE_DRAWS` rule draws miss another bin the draw nearest to it is
    kept (first of equals).
    """
    cdf = np.cumsum(weights) / np.sum(weights)
    target = ED_BINS[int(np.searchsorted(cdf, rng.random(), side="right"))]
    if target == "0":
        return with_rules(spec, spoken(spec, words, frozenset()))
    low, high = BIN_BOUNDS[target]
    nearest: dict[str, Any] | None = None
    for draw in rule_draws(rng, spec, words, target):
        draw["miss"] = max(low - draw["distance"], draw["distance"] - high, 0)
        if draw["miss"] == 0:
            return with_rules(spec, draw)
        if nearest is None or draw["miss"] < nearest["miss"]:
            nearest = draw
    return with_rules(spec, nearest)


def with_rules(spec: Language, draw: dict[str, Any]) -> dict[str, Any]:
    """``draw`` with its effective ``rules`` and ``changed_words`` (meaning-word indices), as the manifest
    records them."""
    words, active = draw["words"], draw["active"]
    return draw | {
        "rules": effective_rules(spec, words, active),
        "changed_words": spec.changed(words, active),
    }


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


def transcripts(
    spec: Language, n: int, seed: int = 0, divergence: float = DEFAULT_DIVERGENCE
) -> list[dict[str, Any]]:
    """The manifest rows of ``n`` utterances before their audio (no ``duration``): :func:`synthesize`'s text.

    Utterance ``i``'s sentence and speaker come from the generator seeded with
    ``(seed, language, i + 1)`` exactly as at the default level, whatever the
    level; away from it the surface is redrawn (:func:`draw_surface`) from a
    second generator seeded with ``(seed, language, i + 1, DIAL_STREAM)``. So all
    levels of one seed share sentences, speakers and meaning transcripts, and
    differ only in surface forms.
    """
    weights = bin_weights(divergence)
    voices = speakers(spec, seed)
    seen: set[str] = set()
    rows = []
    for i in tqdm(range(n), desc=f"{spec.code} text", unit="utt", leave=False, disable=None):
        rng = np.random.default_rng([seed, LANG_CODES[spec.code], i + 1])
        utt = draw_utterance(rng, spec, seen)
        speaker = voices[int(rng.integers(len(voices)))][0]
        if divergence != DEFAULT_DIVERGENCE:
            dial = np.random.default_rng([seed, LANG_CODES[spec.code], i + 1, DIAL_STREAM])
            utt = draw_surface(dial, spec, utt["words"], weights)
        rows.append(_row(spec, f"{spec.code}-{i:06d}", utt, speaker))
    return rows


def _row(spec: Language, utt_id: str, utt: dict[str, Any], speaker: str) -> dict[str, Any]:
    """One manifest row (before its duration): transcripts, speaker, the rules that changed the surface."""
    row = {
        "id": utt_id,
        "audio": f"wav/{utt_id}.wav",
        "surface": utt["surface"],
        "meaning": utt["meaning"],
        "language": spec.code,
        "speaker": speaker,
        "rules": utt["rules"],
        "changed_words": utt["changed_words"],
    }
    if utt["speech"] != utt["surface"]:
        row["phonemes"] = utt["speech"]
    return row


def synthesize(
    *,
    lang: str,
    n: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    workers: int | None = None,
    test_n: int | None = None,
    divergence: float = DEFAULT_DIVERGENCE,
) -> dict[str, Path]:
    """Write a synthetic L2 corpus of ``n`` utterances to ``out_dir``; the manifest paths by split.

    Layout: ``wav/<id>.wav``, ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``,
    ``summary.json``. The same ``seed`` gives identical manifests and
    bitwise-identical audio. ``workers`` defaults to the number of CPUs;
    ``test_n`` sets the size of the test split (default 10 %). ``divergence``
    is the level of the dial (:func:`bin_weights`); the default level 1 is the
    corpus this function wrote before the dial existed.
    """
    splits = assign_splits(n, seed, test_n)
    bin_weights(divergence)  # a bad level fails before any output
    spec = language(lang)
    out = Path(out_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    for stale in (*(out / f"{s}.jsonl" for s in ("train", "valid", "test")), out / "summary.json"):
        stale.unlink(missing_ok=True)
    voices = speakers(spec, seed)
    rows = transcripts(spec, n, seed, divergence)
    by_id = dict(voices)
    jobs = [
        (r["surface"], r.get("phonemes", r["surface"]), by_id[r["speaker"]], out / r["audio"]) for r in rows
    ]
    durations = _map(render, jobs, workers or os.cpu_count() or 1, f"{lang} audio")
    for row, duration in zip(rows, durations):
        row["duration"] = round(duration, 4)
    return _write_outputs(out, rows, splits, spec, voices, seed, divergence)


def _write_outputs(
    out: Path,
    rows: list[dict],
    splits: list[str],
    spec: Language,
    voices: list[tuple[str, espeak.Voice]],
    seed: int,
    divergence: float,
) -> dict[str, Path]:
    """The three manifests, then ``summary.json``; prints the bin table."""
    paths = {}
    for split in ("train", "valid", "test"):
        paths[split] = write_manifest(out / f"{split}.jsonl", [r for r, s in zip(rows, splits) if s == split])
    summary = summarize(rows, splits, spec, voices, seed, divergence)
    atomic_write_text(
        out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n", point="synth:summary"
    )
    print(format_summary(summary))
    return paths


def summarize(
    rows: list[dict],
    splits: list[str],
    spec: Language,
    voices: list[tuple[str, espeak.Voice]],
    seed: int,
    divergence: float,
) -> dict[str, Any]:
    """Counts per edit-distance bin and split, rules, oracle CER, durations, speakers, the dial's level."""
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
        "divergence": divergence,
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
