"""A damaged, foreign or concurrently written store is one line naming it, never a traceback or wrong number.

Stores are written with the writer, then damaged with plain h5py the way a
hostile or unlucky user would: virtual datasets over missing files, external
links and external raw storage, broken root attributes, a missing layer,
corrupted offsets or ids, non-finite values. Every case is checked through
``cka-probe info`` (exit 2, one line on stderr naming the store) or through
``ActivationStore``.
"""

from __future__ import annotations

import errno
import multiprocessing
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cka_probe.atomic import atomic_write_text, partial_file
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore, StoreWriter, partial_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import random_batches, write_batches  # noqa: E402

LAYER = "encoder/enc.1"


@pytest.fixture
def store(tmp_path) -> Path:
    """A complete store of three batches of four utterances."""
    return write_batches(tmp_path / "acts.h5", random_batches())


def info_error(path: Path, capsys) -> str:
    """The one stderr line of ``cka-probe info path``, which must exit with status 2."""
    capsys.readouterr()
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    assert str(path) in lines[0]
    return lines[0]


def refused(path: Path, capsys, expected: str) -> None:
    """``info`` and ``ActivationStore`` both refuse ``path`` with one line matching ``expected``."""
    assert expected in info_error(path, capsys)
    with pytest.raises(CKAProbeError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        ActivationStore(path)


# -- rows that live in other files


def test_store_with_virtual_dataset_is_refused(store, tmp_path, capsys):
    with h5py.File(store, "r+") as f:
        data = f[f"{LAYER}/data"][()]
        with h5py.File(tmp_path / "rows.h5", "w") as source:
            source["rows"] = data
        layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
        layout[:] = h5py.VirtualSource(str(tmp_path / "rows.h5"), "rows", shape=data.shape)
        del f[f"{LAYER}/data"]
        f[LAYER].create_virtual_dataset("data", layout, fillvalue=0)
    (tmp_path / "rows.h5").unlink()  # the missing rows would read as zeros
    refused(store, capsys, f"/{LAYER}/data is a virtual dataset (its rows live in other files)")


def test_store_with_external_link_is_refused(store, tmp_path, capsys):
    with h5py.File(tmp_path / "other.h5", "w") as other, h5py.File(store, "r+") as f:
        other["mean"] = f[f"{LAYER}/mean"][()]
        del f[f"{LAYER}/mean"]
        f[f"{LAYER}/mean"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/mean")
    refused(store, capsys, f"/{LAYER}/mean is an external link")


def test_store_with_external_raw_storage_is_refused(store, tmp_path, capsys):
    with h5py.File(store, "r+") as f:
        mean = f[f"{LAYER}/mean"][()]
        del f[f"{LAYER}/mean"]
        raw = tmp_path / "mean.bin"
        f[LAYER].create_dataset("mean", data=mean, external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
    refused(store, capsys, f"/{LAYER}/mean keeps its rows in external raw files")


# -- attributes and layout


@pytest.mark.parametrize(
    "attr, value, expected",
    [
        ("n_utterances", None, "root attribute 'n_utterances' is missing"),
        ("n_utterances", "twelve", "root attribute 'n_utterances' is 'twelve', expected a count"),
        ("schema_version", 0, "root attribute 'schema_version' is '0', expected a schema version"),
        ("dtype", "int8", "root attribute 'dtype' is 'int8', expected one of float32, float16"),
        ("complete", "yes", "root attribute 'complete' is 'yes', expected true or false"),
        ("streams", "[not json", "attribute 'streams' is not valid JSON"),
        ("json_attrs", "{", "attribute 'json_attrs' is not valid JSON"),
        ("streams", '["encoder", "decoder/meaning"]', "stream 'decoder/meaning' is listed"),
    ],
)
def test_store_with_broken_root_attribute_is_one_line(store, capsys, attr, value, expected):
    with h5py.File(store, "r+") as f:
        if value is None:
            del f.attrs[attr]
        else:
            f.attrs[attr] = value
    line = info_error(store, capsys)
    assert expected in line and line.endswith("re-extract it")


def test_store_with_listed_layer_missing_is_refused(store, capsys):
    with h5py.File(store, "r+") as f:
        del f[f"{LAYER}/offsets"]
    refused(store, capsys, f"{LAYER}/offsets is missing; re-extract it")


def test_store_with_mean_of_other_width_is_refused(store, capsys):
    with h5py.File(store, "r+") as f:
        mean = f[f"{LAYER}/mean"][()]
        del f[f"{LAYER}/mean"]
        f[LAYER]["mean"] = mean[:, :2]
    refused(store, capsys, "layer 'enc.1' of stream 'encoder': data (")


# -- checksums of offsets and ids


def test_store_with_corrupted_offsets_is_refused_by_their_checksum(store, capsys):
    with h5py.File(store, "r+") as f:
        offsets = f[f"{LAYER}/offsets"]
        assert offsets[2] - offsets[1] > 1  # still a valid layout after the change below
        offsets[2] -= 1
    refused(
        store, capsys, "layer 'enc.1' of stream 'encoder': its offsets do not match their recorded sha256"
    )


def test_store_with_corrupted_ids_is_refused_by_their_checksum(store, capsys):
    with h5py.File(store, "r+") as f:
        f["utterances/ids"][3] = "u9-9"
    refused(store, capsys, "utterances/ids do not match their recorded sha256")


def test_store_without_checksums_still_reads(store):
    """Stores written before the checksums were recorded have none; they read as before."""
    with ActivationStore(store) as fresh:
        want = fresh.frames("encoder", "enc.1")
    with h5py.File(store, "r+") as f:
        del f.attrs["ids_sha256"]
        for layer in ("enc.0", "enc.1"):
            del f[f"encoder/{layer}"].attrs["offsets_sha256"]
    with ActivationStore(store) as old:
        rows, offsets = old.frames("encoder", "enc.1")
    assert np.array_equal(rows, want[0]) and np.array_equal(offsets, want[1])


@pytest.mark.parametrize("change", ["start", "decrease", "past_data"])
def test_store_with_inconsistent_offsets_is_refused_without_checksum(store, capsys, change):
    with h5py.File(store, "r+") as f:
        del f[LAYER].attrs["offsets_sha256"]
        offsets = f[f"{LAYER}/offsets"]
        if change == "start":
            offsets[0] = 1
        elif change == "decrease":
            offsets[3] = offsets[2] - 1
        else:
            offsets[-1] += 5
    expected = "data has 36 rows, expected 41" if change == "past_data" else "its offsets do not start at 0"
    line = info_error(store, capsys)
    assert expected in line and "re-extract it" in line


# -- values


def test_non_finite_mean_names_layer_and_utterance(store):
    with h5py.File(store, "r+") as f:
        f[f"{LAYER}/mean"][5, 1] = np.nan
    with ActivationStore(store) as s:
        with pytest.raises(
            CKAProbeError, match=r"layer 'enc.1' of stream 'encoder' has non-finite values \(utterance u1-1\)"
        ):
            s.means("encoder", "enc.1")
        assert np.isfinite(s.means("encoder", "enc.0")).all()


def test_non_finite_frame_names_layer_and_utterance(store):
    with h5py.File(store, "r+") as f:
        last_row_of_u1_2 = int(f[f"{LAYER}/offsets"][7]) - 1
        f[f"{LAYER}/data"][last_row_of_u1_2, 0] = np.inf
    message = r"layer 'enc.1' of stream 'encoder' has non-finite values \(utterance u1-2\)"
    with ActivationStore(store) as s:
        with pytest.raises(CKAProbeError, match=message):
            s.frames("encoder", "enc.1")
        with pytest.raises(CKAProbeError, match=message):
            list(s.iter_frames("encoder", "enc.1", chunk_rows=3))
        rows, _ = s.frames("encoder", "enc.1", ids=["u0-0", "u2-3"])  # the other utterances read
        assert np.isfinite(rows).all()


# -- one writer per store


def _hold_writer(out: str, opened, release) -> None:
    """Open a writer on ``out``, append one batch and wait until ``release`` is set (a forked child)."""
    ids, acts, meta = random_batches(1)[0]
    with StoreWriter(out, commit_bytes=0) as writer:
        writer.append(ids, acts, metadata=meta)
        opened.set()
        release.wait(30)


def test_second_writer_on_one_out_is_refused_and_leaves_the_partial_alone(tmp_path):
    out = tmp_path / "acts.h5"
    context = multiprocessing.get_context("fork")
    opened, release = context.Event(), context.Event()
    child = context.Process(target=_hold_writer, args=(str(out), opened, release))
    child.start()
    try:
        assert opened.wait(30)
        before = partial_path(out).read_bytes()
        with pytest.raises(
            CKAProbeError, match=rf"{out}: another cka-probe run \(pid {child.pid} on .*\) is writing it"
        ):
            StoreWriter(out, overwrite=True)
        assert partial_path(out).read_bytes() == before and not out.exists()
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
    with StoreWriter(out) as writer:  # released: the next run resumes the committed batch
        assert writer.n_batches == 1


# -- atomic files


def test_atomic_write_that_fails_names_the_target_and_leaves_no_partial(tmp_path, monkeypatch):
    from cka_probe import faults

    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("CKA_PROBE_FAIL_AT", "table:torn:1")
    target = tmp_path / "cka.csv"
    with pytest.raises(
        CKAProbeError, match=rf"^{target}: No space left on device while writing \(about 2.0 KiB"
    ):
        atomic_write_text(target, "x" * 2048, point="table")
    assert not target.exists() and not partial_file(target).exists()


def test_atomic_write_under_a_file_names_the_file_in_the_way(tmp_path):
    (tmp_path / "tables").write_text("not a folder")
    with pytest.raises(CKAProbeError, match=rf"^{tmp_path / 'tables'}: is a file, not a folder"):
        atomic_write_text(tmp_path / "tables" / "cka.csv", "x")


def test_fail_point_raises_enospc(monkeypatch):
    from cka_probe import faults

    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("CKA_PROBE_FAIL_AT", "a:2")
    faults.crash_point("a:one")
    faults.crash_point("b:other")
    with pytest.raises(OSError) as raised:
        faults.crash_point("a:two")
    assert raised.value.errno == errno.ENOSPC
