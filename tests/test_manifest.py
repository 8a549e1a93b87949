"""Manifests: round trips, path resolution, and one-line FILE:LINE errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cka_probe.data.manifest import read_manifest, write_manifest
from cka_probe.errors import CKAProbeError


def _row(i: int, **extra) -> dict:
    return {
        "id": f"u{i}",
        "audio": f"wav/u{i}.wav",
        "surface": "he go to park",
        "meaning": "he goes to the park",
        "language": "en",
        "speaker": "s1",
        **extra,
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (tmp_path / "wav").mkdir()
    for i in range(3):
        (tmp_path / "wav" / f"u{i}.wav").write_bytes(b"RIFF")
    return tmp_path


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_relative_audio_resolves_against_manifest_folder(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    path = write_manifest(corpus / "train.jsonl", [_row(0), _row(1)])
    monkeypatch.chdir(tmp_path.parent)  # resolution must not depend on the working directory
    rows = read_manifest(path)
    assert [r["audio"] for r in rows] == [str((corpus / "wav" / f"u{i}.wav").resolve()) for i in (0, 1)]
    assert rows[0]["meaning"] == "he goes to the park"


def test_round_trip_keeps_extra_fields_and_korean_text(corpus: Path) -> None:
    korean = _row(
        2,
        surface="철수가 사과을 먹어요",
        meaning="철수가 사과를 먹어요",
        language="ko",
        duration=1.25,
        rules=["particle_form"],
    )
    first = read_manifest(write_manifest(corpus / "a.jsonl", [_row(0), korean]))
    second = read_manifest(write_manifest(corpus / "b.jsonl", first))
    assert first == second
    assert second[1]["rules"] == ["particle_form"] and second[1]["duration"] == 1.25
    text = (corpus / "b.jsonl").read_text(encoding="utf-8")
    assert "사과을" in text and '"wav/u2.wav"' in text  # UTF-8, not escaped; relative path again


def test_missing_speaker_is_none_and_blank_lines_are_skipped(corpus: Path) -> None:
    row = {k: v for k, v in _row(0).items() if k != "speaker"}
    path = _write_lines(corpus / "m.jsonl", [json.dumps(row), "", "  "])
    assert read_manifest(path)[0]["speaker"] is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "u1", "audio": ', "invalid JSON"),
        ('["u1"]', "expected a JSON object"),
        (json.dumps({k: v for k, v in _row(1).items() if k != "meaning"}), "missing field 'meaning'"),
        (json.dumps(_row(1, surface=3)), "field 'surface' must be a non-empty string"),
        (json.dumps(_row(1, language="")), "field 'language' must be a non-empty string"),
        (json.dumps(_row(0)), "duplicate id 'u0' (first on line 1)"),
        (json.dumps(_row(7)), "audio file not found"),
    ],
)
def test_bad_line_names_file_and_line(corpus: Path, line: str, message: str) -> None:
    path = _write_lines(corpus / "manifest.jsonl", [json.dumps(_row(0)), line])
    with pytest.raises(CKAProbeError) as err:
        read_manifest(path)
    assert f"manifest.jsonl:2: {message}" in str(err.value)
    assert "\n" not in str(err.value)


def test_check_audio_false_accepts_missing_audio(corpus: Path) -> None:
    path = _write_lines(corpus / "m.jsonl", [json.dumps(_row(9))])
    assert read_manifest(path, check_audio=False)[0]["id"] == "u9"


def test_missing_and_empty_manifests(corpus: Path) -> None:
    with pytest.raises(CKAProbeError, match="manifest not found"):
        read_manifest(corpus / "nope.jsonl")
    with pytest.raises(CKAProbeError, match="no utterances"):
        read_manifest(_write_lines(corpus / "empty.jsonl", [""]))


def test_failed_write_leaves_previous_manifest_untouched(corpus: Path) -> None:
    path = write_manifest(corpus / "train.jsonl", [_row(0)])
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_manifest(path, [_row(1), _row(2, duration=object())])
    assert path.read_bytes() == before
    assert sorted(p.name for p in corpus.iterdir()) == ["train.jsonl", "wav"]
