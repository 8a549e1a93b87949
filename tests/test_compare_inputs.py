"""compare and compare --cross-task on hostile inputs: stores whose ids name different utterances, outputs
that are inputs, warnings, bad options and files. Each expected mistake is one line on stderr, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cka_probe.cli import main
from cka_probe.compare.stores import compare_stores
from cka_probe.errors import CKAProbeError
from cka_probe.store import StoreWriter
from cka_probe.study.load import load_representations

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import write_store  # noqa: E402

SHA_A, SHA_B = "1a2b3c" + "0" * 58, "4d5e6f" + "0" * 58


def make_store(
    path: Path,
    n: int = 8,
    *,
    sha: str | None = None,
    sources: list[str] | None = None,
    seed: int = 0,
    ids: list[str] | None = None,
) -> Path:
    """A store of ``n`` utterances ``utt0000...`` (two encoder layers of 3 rows each), with the manifest
    sha256 ``sha`` and the ``source`` column ``sources`` where given."""
    rng = np.random.default_rng(seed)
    ids = ids or [f"utt{i:04d}" for i in range(n)]
    lengths = [3] * len(ids)
    layers = {("encoder", f"enc.{k}"): (rng.normal(size=(3 * len(ids), 4)), lengths) for k in range(2)}
    attrs = {"manifest_sha256": sha, "manifest": f"/data/{sha[:6]}.jsonl"} if sha else {}
    with StoreWriter(path, attrs=attrs) as writer:
        writer.append(ids, layers, metadata={"source": sources} if sources else None)
        return writer.finish()


def wavs(folder: str, n: int = 8) -> list[str]:
    return [f"/{folder}/wav/utt{i:04d}.wav" for i in range(n)]


def one_error_line(capsys) -> str:
    """The captured stderr, asserted to be one line, without its newline."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


# -- provenance: ids must name the same utterances


def test_stores_from_different_manifests_with_colliding_ids_are_refused(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5", sha=SHA_A, sources=wavs("x"))
    b = make_store(tmp_path / "b.h5", sha=SHA_B, sources=wavs("y"), seed=1)
    with pytest.raises(CKAProbeError, match="id utt0000 names different audio there"):
        compare_stores(a, b)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    assert one_error_line(capsys) == (
        f"cka-probe compare: error: {a} and {b} come from different manifests (sha256 1a2b3c… and 4d5e6f…) "
        "and id utt0000 names different audio there (/x/wav/utt0000.wav, /y/wav/utt0000.wav); compare "
        "stores of one manifest, or pass --allow-different-manifests if the ids name the same utterances"
    )
    assert not (tmp_path / "t.csv").exists()


def test_different_manifests_without_audio_sources_are_refused(tmp_path):
    a = make_store(tmp_path / "a.h5", sha=SHA_A)
    b = make_store(tmp_path / "b.h5", sha=SHA_B, seed=1)
    with pytest.raises(CKAProbeError, match=r"and neither records the audio .* what id utt0000 names"):
        compare_stores(a, b)
    c = make_store(tmp_path / "c.h5", sha=SHA_B, sources=wavs("x"), seed=1)
    with pytest.raises(CKAProbeError, match=r"and .*a\.h5 does not record the audio"):
        compare_stores(c, a)


def test_one_store_with_provenance_against_one_without_is_refused(tmp_path):
    a = make_store(tmp_path / "a.h5", sha=SHA_A, sources=wavs("x"))
    b = make_store(tmp_path / "b.h5", seed=1)
    with pytest.raises(CKAProbeError, match=r"\(sha256 1a2b3c… and none recorded\)"):
        compare_stores(a, b)


def test_different_manifests_naming_the_same_audio_are_compared(tmp_path):
    a = make_store(tmp_path / "a.h5", sha=SHA_A, sources=wavs("x"))
    b = make_store(tmp_path / "b.h5", n=12, sha=SHA_B, sources=wavs("x", 12), seed=1)
    with pytest.warns(UserWarning, match="4 only in the second"):
        table = compare_stores(a, b)
    assert table.attrs["alignment"] == "same audio" and table.attrs["n_utterances"] == 8


def test_one_manifest_is_compared_and_recorded(tmp_path):
    a = make_store(tmp_path / "a.h5", sha=SHA_A)
    b = make_store(tmp_path / "b.h5", sha=SHA_A, seed=1)
    assert compare_stores(a, b).attrs["alignment"] == "same manifest"


def test_allow_different_manifests_is_recorded(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5", sha=SHA_A, sources=wavs("x"))
    b = make_store(tmp_path / "b.h5", sha=SHA_B, sources=wavs("y"), seed=1)
    out = tmp_path / "t.csv"
    assert main(["compare", str(a), str(b), "--allow-different-manifests", "--out", str(out)]) == 0
    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar["allow_different_manifests"] is True
    assert sidecar["alignment"].startswith(f"allowed: {a} and {b} come from different manifests")
    err = capsys.readouterr().err
    assert (
        err.startswith("cka-probe compare: warning: ") and "compared anyway" in err and err.count("\n") == 1
    )


def role_stores(folder: Path, shas: dict[str, str]) -> list[Path]:
    """SSO, MSO and DO stores of one language, each recording the manifest sha256 ``shas[role]``."""
    folder.mkdir(exist_ok=True)
    paths = []
    for k, role in enumerate(("sso", "mso", "do")):
        path = write_store(folder / f"{role}.h5", role, "en", encoder_seed=k, seed=k)
        with h5py.File(path, "a") as f:
            f.attrs["manifest_sha256"] = shas[role]
        paths.append(path)
    return paths


CROSS = ["--n-boot", "5", "--n-perm", "0"]


def test_cross_task_stores_of_different_manifests_are_refused(tmp_path, capsys):
    stores = role_stores(tmp_path / "acts", {"sso": SHA_A, "mso": SHA_A, "do": SHA_B})
    with pytest.raises(CKAProbeError, match=r"sso\.h5 and .*do\.h5 come from different manifests"):
        load_representations(stores)
    tables = tmp_path / "tables"
    assert main(["compare", "--cross-task", *map(str, stores), "--tables", str(tables), *CROSS]) == 2
    assert "come from different manifests (sha256 1a2b3c… and 4d5e6f…)" in one_error_line(capsys)
    assert not tables.exists()


def test_cross_task_allow_different_manifests_is_recorded(tmp_path, capsys):
    stores = role_stores(tmp_path / "acts", {"sso": SHA_A, "mso": SHA_A, "do": SHA_B})
    tables = tmp_path / "tables"
    args = ["compare", "--cross-task", *map(str, stores), "--tables", str(tables), *CROSS]
    assert main([*args, "--allow-different-manifests"]) == 0
    record = json.loads((tables / "manifests.json").read_text())
    assert record["allow_different_manifests"] is True
    assert record["stores"][str(stores[2])]["manifest_sha256"] == SHA_B
    notes = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]  # not the progress
    assert notes and all(line.startswith("cka-probe compare: warning: ") for line in notes)
    assert any("do.h5 come from different manifests" in line for line in notes)


def test_cross_task_stores_of_one_manifest_write_no_manifest_record(tmp_path):
    role_stores(tmp_path / "acts", {"sso": SHA_A, "mso": SHA_A, "do": SHA_A})
    tables = tmp_path / "t"
    assert main(["compare", "--cross-task", str(tmp_path / "acts"), "--tables", str(tables), *CROSS]) == 0
    assert (tables / "cross_task.csv").is_file() and not (tables / "manifests.json").exists()


# -- outputs that are inputs


def npz_pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(tmp_path / f"{name}.npz", l0=rng.normal(size=(10, 3)), l1=rng.normal(size=(10, 2)))
    return tmp_path / "a.npz", tmp_path / "b.npz"


@pytest.mark.parametrize("target", [0, 1])
def test_out_equal_to_input_is_refused_before_writing(tmp_path, capsys, target):
    inputs = npz_pair(tmp_path)
    before = [p.read_bytes() for p in inputs]
    assert main(["compare", *map(str, inputs), "--out", str(inputs[target])]) == 2
    line = one_error_line(capsys)
    assert line == (
        f"cka-probe compare: error: --out {inputs[target]} is an input of this command ({inputs[target]}); "
        "choose another path"
    )
    assert [p.read_bytes() for p in inputs] == before
    assert not Path(f"{inputs[target]}.json").exists()


def test_out_equal_to_an_input_store_is_refused_through_another_spelling(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    b = make_store(tmp_path / "b.h5", seed=1)
    before = a.read_bytes()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "sub" / ".." / "a.h5")]) == 2
    assert "is an input of this command" in one_error_line(capsys)
    assert a.read_bytes() == before


def test_out_sidecar_equal_to_the_word_span_file_is_refused(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    spans = tmp_path / "t.csv.json"
    spans.write_text("{}\n")
    args = ["compare", str(a), str(a), "--pool", "words", "--word-spans", str(spans)]
    assert main([*args, "--out", str(tmp_path / "t.csv")]) == 2
    assert "--out's sidecar" in one_error_line(capsys) and spans.read_text() == "{}\n"


def test_cross_task_tables_that_are_inputs_are_refused(tmp_path, capsys):
    stores = role_stores(tmp_path / "acts", {"sso": SHA_A, "mso": SHA_A, "do": SHA_A})
    tables = tmp_path / "tables"
    tables.mkdir()
    cer = tables / "cer.csv"
    cer.write_text("id,language\n")
    args = ["compare", "--cross-task", *map(str, stores), "--cer", str(cer), "--tables", str(tables), *CROSS]
    assert main(args) == 2
    assert "--tables" in one_error_line(capsys) and cer.read_text() == "id,language\n"
    assert sorted(p.name for p in tables.iterdir()) == ["cer.csv"]
    before = stores[0].read_bytes()
    assert main(["compare", "--cross-task", *map(str, stores), "--tables", str(stores[0]), *CROSS]) == 2
    assert "--tables" in one_error_line(capsys) and stores[0].read_bytes() == before


# -- warnings


def test_warnings_go_to_stderr(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    b = make_store(tmp_path / "b.h5", n=10, seed=1)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.csv")]) == 0
    captured = capsys.readouterr()
    assert "warning:" not in captured.out
    assert captured.err == (
        f"cka-probe compare: warning: aligning {a} with {b} by utterance id: 8 in common, dropped 0 only in "
        "the first and 2 only in the second\n"
    )


# -- bad stores, streams, spans and options


def test_a_file_that_is_not_a_store_is_one_line(tmp_path, capsys):
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all")
    b = make_store(tmp_path / "b.h5")
    assert main(["compare", str(fake), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    assert one_error_line(capsys).startswith(f"cka-probe compare: error: {fake}: not a readable HDF5 file")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    assert main(["compare", str(tmp_path / "plain.h5"), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    assert "plain.h5: not a cka-probe activation store" in one_error_line(capsys)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--stream", "decoder/nope"], "no stream 'decoder/nope'"),
        (["--stream-b", "nope"], "b.h5: no stream 'nope'"),
    ],
)
def test_a_stream_that_does_not_exist_is_one_line(tmp_path, capsys, option, message):
    a = make_store(tmp_path / "a.h5")
    b = make_store(tmp_path / "b.h5", seed=1)
    assert main(["compare", str(a), str(b), *option, "--out", str(tmp_path / "t.csv")]) == 2
    assert message in one_error_line(capsys)


def test_stores_with_no_shared_ids_are_one_line(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    b = make_store(tmp_path / "b.h5", ids=[f"other{i}" for i in range(8)])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    assert one_error_line(capsys) == f"cka-probe compare: error: {a} and {b} share no utterance ids"


@pytest.mark.parametrize("shared", [1, 3])
def test_stores_with_fewer_than_four_shared_ids_are_refused(tmp_path, capsys, shared):
    a = make_store(tmp_path / "a.h5")
    b = make_store(tmp_path / "b.h5", ids=[f"utt{i:04d}" for i in range(shared)] + ["x0", "x1", "x2", "x3"])
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.csv")]) == 2
    line = one_error_line(capsys)
    assert f"{a} and {b} share {shared} utterance id(s)" in line and "needs at least 4" in line
    assert not (tmp_path / "t.csv").exists()


def test_pool_words_without_spans_or_with_a_malformed_line_names_the_file(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    base = ["compare", str(a), str(a), "--pool", "words", "--out", str(tmp_path / "t.csv")]
    assert main(base) == 2
    assert f"{a}.words.jsonl: no word-span file" in one_error_line(capsys)
    spans = tmp_path / "spans.jsonl"
    spans.write_text('{"id": "utt0000", "n_frames": 3, "words": []}\nnot json\n')
    assert main([*base, "--word-spans", str(spans)]) == 2
    assert f"{spans}:2: not a word-span record" in one_error_line(capsys)


def test_word_spans_missing_an_utterance_are_one_line(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    spans = tmp_path / "spans.jsonl"
    words = [{"start": 0, "end": 2, "op": "identical"}]
    spans.write_text(
        "".join(json.dumps({"id": f"utt{i:04d}", "n_frames": 3, "words": words}) + "\n" for i in range(3))
    )
    args = ["compare", str(a), str(a), "--pool", "words", "--word-spans", str(spans)]
    assert main([*args, "--out", str(tmp_path / "t.csv")]) == 2
    assert "utterance utt0003 has no word spans" in one_error_line(capsys)


@pytest.mark.parametrize(
    "option",
    [
        ["--sigma", "0"],
        ["--sigma", "-1"],
        ["--sigma", "nan"],
        ["--ridge", "-1"],
        ["--ridge", "inf"],
        ["--n-boot", "0"],
        ["--n-perm", "-1"],
        ["--n-perm", "1e400"],
        ["--seed", "-1"],
        ["--device", "cuda:99"],
        ["--device", "gpu"],
    ],
)
def test_bad_numeric_options_and_devices_are_one_usage_line(tmp_path, capsys, option):
    inputs = npz_pair(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["compare", *map(str, inputs), *option, "--out", str(tmp_path / "t.csv")])
    assert exit_.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith(f"cka-probe compare: error: argument {option[0]}: ")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize(
    "start, end, bad", [(0.5, 2, "start 0.5"), (0, 2.5, "end 2.5"), (False, True, "start False")]
)
def test_word_spans_that_are_not_frame_indices_name_the_file_and_utterance(tmp_path, capsys, start, end, bad):
    a = make_store(tmp_path / "a.h5")
    spans = tmp_path / "spans.jsonl"
    words = [{"start": start, "end": end, "op": "x"}]
    records = [{"id": f"utt{i:04d}", "n_frames": 3, "words": words} for i in range(8)]
    spans.write_text("".join(json.dumps(record) + "\n" for record in records))
    args = ["compare", str(a), str(a), "--pool", "words", "--word-spans", str(spans)]
    assert main([*args, "--out", str(tmp_path / "t.csv")]) == 2
    key, value = bad.split()
    assert one_error_line(capsys) == (
        f"cka-probe compare: error: {spans}:1: utterance utt0000, word 0: {key} must be a whole frame index, "
        f"not {value}"
    )


def test_fewer_than_four_words_are_refused(tmp_path, capsys):
    a = make_store(tmp_path / "a.h5")
    spans = tmp_path / "spans.jsonl"
    word = {"start": 0, "end": 2, "op": "identical"}
    records = [{"id": f"utt{i:04d}", "n_frames": 3, "words": [word] if i < 3 else []} for i in range(8)]
    spans.write_text("".join(json.dumps(record) + "\n" for record in records))
    args = ["compare", str(a), str(a), "--pool", "words", "--word-spans", str(spans)]
    assert main([*args, "--out", str(tmp_path / "t.csv")]) == 2
    assert "3 word(s) selected, CKA needs at least 4" in one_error_line(capsys)
