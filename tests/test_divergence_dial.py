"""The divergence dial of ``synth``: level 1 is the corpus from before the dial, levels share utterances,
level 0 has no errors, and edit distance and oracle CER rise with the level."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cka_probe.cli import main
from cka_probe.data import synth
from cka_probe.data.manifest import read_manifest
from cka_probe.errors import CKAProbeError
from cka_probe.text.cer import char_errors, corpus_cer

FIXTURE = Path(__file__).parent / "data" / "synth_default_rows.json"
"""Rows (seed 3, 40 per language) drawn by ``synth`` at commit 75f5de1, before the dial existed."""
LEVELS = (0.0, 0.5, 1.0, 1.5, 2.0)


@pytest.fixture(scope="module")
def korean() -> synth.Language:
    return synth.language("ko")


@pytest.fixture(scope="module")
def english() -> synth.Language:
    return synth.language("en")


def _espeak_version() -> str:
    return subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.split()[3]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_the_default_level_draws_the_corpus_from_before_the_dial(lang, korean, english) -> None:
    before = json.loads(FIXTURE.read_text(encoding="utf-8"))
    if lang == "en" and _espeak_version() != before["espeak_ng"]:
        pytest.skip(f"English spellings follow espeak-ng {before['espeak_ng']}'s phonemes")
    spec = english if lang == "en" else korean
    for rows in (synth.transcripts(spec, 40, 3), synth.transcripts(spec, 40, 3, divergence=1.0)):
        now = [
            {
                "meaning": r["meaning"],
                "surface": r["surface"],
                "speech": r.get("phonemes", r["surface"]),
                "rules": r["rules"],
                "changed_words": r["changed_words"],
                "speaker": r["speaker"],
            }
            for r in rows
        ]
        assert now == before[lang]["rows"]


def test_levels_share_sentences_and_speakers_and_differ_in_surfaces(korean) -> None:
    shared = ("id", "audio", "meaning", "language", "speaker")
    corpora = [synth.transcripts(korean, 40, 7, divergence=d) for d in LEVELS]
    for rows in corpora[1:]:
        assert [{k: r[k] for k in shared} for r in rows] == [{k: r[k] for k in shared} for r in corpora[0]]
    surfaces = {tuple(r["surface"] for r in rows) for rows in corpora}
    assert len(surfaces) == len(LEVELS)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_level_zero_says_what_was_meant(lang, korean, english) -> None:
    rows = synth.transcripts(english if lang == "en" else korean, 40, 2, divergence=0)
    assert all(r["surface"] == r["meaning"] and r["rules"] == r["changed_words"] == [] for r in rows)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_edit_distance_and_oracle_cer_rise_with_the_level(lang, korean, english) -> None:
    spec = english if lang == "en" else korean
    mean_ed, oracle = [], []
    for level in LEVELS:
        rows = synth.transcripts(spec, 60, 11, divergence=level)
        mean_ed.append(np.mean([char_errors(r["meaning"], r["surface"]) for r in rows]))
        oracle.append(corpus_cer((r["surface"], r["meaning"]) for r in rows))  # meaning scored on surface
    assert mean_ed[0] == oracle[0] == 0
    assert np.all(np.diff(mean_ed) > 0) and np.all(np.diff(oracle) > 0), (mean_ed, oracle)
    assert mean_ed[-1] > 2 * mean_ed[LEVELS.index(1.0)]  # well beyond the default


def test_bin_probabilities_move_up_in_stochastic_order() -> None:
    grid = np.linspace(0, synth.MAX_DIVERGENCE, 41)
    weights = np.array([synth.bin_weights(d) for d in grid])
    assert np.allclose(weights.sum(axis=1), 1) and np.all(weights >= 0)
    survival = 1 - np.cumsum(weights, axis=1)[:, :-1]  # P(bin above b) for each level
    assert np.all(np.diff(survival, axis=0) >= -1e-12) and np.all(survival[-1] > survival[0])
    assert np.array_equal(synth.bin_weights(1), synth.BIN_WEIGHTS)
    assert synth.bin_weights(0)[0] == synth.bin_weights(2)[-1] == 1


def test_a_level_off_the_dial_fails_before_any_output(tmp_path: Path, capsys) -> None:
    with pytest.raises(CKAProbeError, match="--divergence must be from 0 to 2"):
        synth.synthesize(lang="ko", n=5, out_dir=tmp_path / "a", divergence=2.5)
    assert not list(tmp_path.iterdir())
    for bad in ("-0.1", f"{synth.MAX_DIVERGENCE + 0.01}", "nan", "high"):
        with pytest.raises(SystemExit) as exit_:
            main(["synth", "--lang", "ko", "--n", "5", "--out", str(tmp_path / "b"), "--divergence", bad])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "argument --divergence" in err
    assert not list(tmp_path.iterdir())


def test_cli_default_is_level_one_and_level_zero_is_recorded(tmp_path: Path) -> None:
    def run(name: str, *level: str) -> Path:
        argv = ["synth", "--lang", "ko", "--n", "4", "--seed", "1", "--workers", "1", "--out"]
        assert main([*argv, str(tmp_path / name), *level]) == 0
        return tmp_path / name

    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    plain, one, zero = run("plain"), run("one", "--divergence", "1"), run("zero", "--divergence", "0")
    assert files(plain) == files(one)
    assert json.loads((zero / "summary.json").read_text(encoding="utf-8"))["divergence"] == 0
    rows = [r for s in ("train", "valid", "test") for r in read_manifest(zero / f"{s}.jsonl")]
    assert len(rows) == 4 and all(r["surface"] == r["meaning"] and r["duration"] > 0 for r in rows)
