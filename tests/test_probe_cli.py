"""``cka-probe probe`` end to end on a small store, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

from cka_probe.cli import main
from cka_probe.probe import probe_store
from cka_probe.probe.simulate import planted_words
from cka_probe.store.writer import StoreWriter

LEAD = 1  # frames before the first word of an utterance
WIDTH = 2  # frames per word


@pytest.fixture(autouse=True)
def one_thread():
    with threadpool_limits(1):  # small fits on a shared machine: threads only contend
        yield


WHISPER = {"adapter": "whisper", "preprocessor": {"sampling_rate": 16000, "hop_length": 160}}
"""Store attributes that give the encoder Whisper's grid: one frame per 320 samples (20 ms)."""


def write_inputs(
    folder, *, preference=1.0, n_frames_extra=0, all_identical=False, diverge=0.3, attrs=None, metadata=None
):
    """A store whose layer 0 holds planted word representations (2 frames a word) and layer 1 noise, its
    word-span sidecar and manifest; returns the store's path. ``attrs`` are added to the store's; with
    ``metadata(n_frames) -> dict``, per-utterance metadata of the frame counts are recorded."""
    table, x = planted_words(0, preference, dim=64, diverge=diverge)
    rng = np.random.default_rng(0)
    utterances = list(dict.fromkeys(table.utterance))
    records, rows, frames = [], [], []
    for uid in utterances:
        at = np.flatnonzero(table.utterance == uid)
        surface = table.meaning[at] if all_identical else table.surface[at]
        op = np.where(surface == table.meaning[at], "identical", "substituted")
        words = [
            {
                "index": k,
                "word": str(w),
                "start": LEAD + WIDTH * k,
                "end": LEAD + WIDTH * (k + 1),
                "op": str(o),
                "meaning_index": k,
            }
            for k, (w, o) in enumerate(zip(surface, op))
        ]
        n = LEAD + WIDTH * len(at)
        records.append({"id": uid, "n_frames": n + n_frames_extra, "words": words})
        rows.append(
            {
                "id": uid,
                "audio": f"{uid}.wav",
                "surface": " ".join(surface),
                "meaning": " ".join(table.meaning[at]),
                "language": "en",
            }
        )
        block = np.concatenate([rng.standard_normal((LEAD, x.shape[1])), np.repeat(x[at], WIDTH, axis=0)])
        frames.append(block + 0.01 * rng.standard_normal(block.shape))
    lengths = np.array([len(f) for f in frames])
    layers = {
        ("encoder", "encoder.layers.0"): (np.concatenate(frames).astype(np.float32), lengths),
        ("encoder", "encoder.layers.1"): (
            rng.standard_normal((lengths.sum(), 8)).astype(np.float32),
            lengths,
        ),
    }
    path = folder / "do.h5"
    attrs = {"arch": "do", "tasks": ["surface", "meaning"], "language": "en"} | (attrs or {})
    with StoreWriter(path, attrs=attrs) as writer:
        writer.append(utterances, layers, metadata=metadata(lengths) if metadata else None)
        writer.finish()
    (folder / "do.h5.words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_probe_writes_a_table_of_each_layer_with_its_sidecar(tmp_path, capsys):
    store = write_inputs(tmp_path)
    out = tmp_path / "probe.csv"
    argv = [
        str(store),
        "--data",
        str(tmp_path / "test.jsonl"),
        "--out",
        str(out),
        "--folds",
        "3",
        "--n-boot",
        "200",
    ]
    assert main(["probe", *argv, "--layers", "*.0"]) == 0
    table = pd.read_csv(out).set_index("layer")
    assert list(table.index) == ["encoder.layers.0"]
    planted = table.loc["encoder.layers.0"]
    assert planted["surface_preference_lo"] > 0.8
    assert planted["surface_selectivity_lo"] > 0.5 and planted["n_surface_selectivity"] > 50
    info = json.loads((tmp_path / "probe.csv.json").read_text())
    assert info["words"] == "divergent" and info["n_splits"] == 3 and "scikit-learn" in info["versions"]
    assert info["spans"] == f"{store}.words.jsonl" and info["n_groups"] == 30  # 30 sentences said twice
    assert len(info["regularisers"]["encoder.layers.0"]["ridge_alpha"]) == 3
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "options, message",
    [
        ({"all_identical": True}, "no divergent words"),
        ({"n_frames_extra": 1}, "word spans cover"),
        ({}, "layer 'nope' is not in"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, options, message):
    store = write_inputs(tmp_path, **options)
    argv = [
        str(store),
        "--data",
        str(tmp_path / "test.jsonl"),
        "--out",
        str(tmp_path / "p.csv"),
        "--layers",
        "nope" if not options else "*",
    ]
    assert main(["probe", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("cka-probe probe: error:")
    assert not (tmp_path / "p.csv").exists()


def test_too_few_identical_words_is_one_line(tmp_path, capsys):
    store = write_inputs(tmp_path, diverge=1.0)
    argv = [str(store), "--data", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "p.csv")]
    assert main(["probe", *argv]) == 2
    err = capsys.readouterr().err
    assert "too few identical words" in err and err.count("\n") == 1


def test_spans_of_other_utterances_are_one_line(tmp_path, capsys):
    store = write_inputs(tmp_path)
    records = (tmp_path / "do.h5.words.jsonl").read_text().splitlines()
    (tmp_path / "few.jsonl").write_text("\n".join(records[:2]) + "\n")
    argv = [str(store), "--spans", str(tmp_path / "few.jsonl"), "--data", str(tmp_path / "test.jsonl")]
    assert main(["probe", *argv, "--out", str(tmp_path / "p.csv")]) == 2
    assert "has no word spans" in capsys.readouterr().err


def test_a_ctm_of_the_same_words_gives_the_sidecars_table_through_whisper_frames(tmp_path):
    """Word times in a CTM, mapped by Whisper's 20 ms frames, select the frames the sidecar names: the
    probes' table is the same."""
    store = write_inputs(tmp_path, attrs=WHISPER, metadata=lambda n: {"n_samples": (320 * n).tolist()})
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in (tmp_path / "do.h5.words.jsonl").read_text().splitlines()]
    for row, record in zip(rows, records):
        sf.write(tmp_path / row["audio"], np.zeros(320 * record["n_frames"]), 16000)
    ctm = "".join(
        f"{r['id']} 1 {0.02 * w['start'] - 0.005:.3f} {0.02 * (w['end'] - w['start']):.3f} {w['word']}\n"
        for r in records
        for w in r["words"]
    )
    (tmp_path / "words.ctm").write_text(ctm)
    options = {"manifest": tmp_path / "test.jsonl", "layers": ["*.0"], "n_splits": 3, "n_boot": 100}
    from_sidecar = probe_store(store, **options)
    from_ctm = probe_store(store, tmp_path / "words.ctm", **options)
    pd.testing.assert_frame_equal(from_ctm, from_sidecar)
    assert from_ctm.attrs["spans"] == str(tmp_path / "words.ctm")
