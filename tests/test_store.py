"""The HDF5 store: round trips, chunked reading, alignment, shards, and clear errors on bad files."""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest
from helpers import BATCH_LAYERS, random_batches, write_batches
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore, StoreWriter, align_ids, describe, merge_stores, partial_path


def utterance_rows(batches) -> dict[tuple[str, str, str], np.ndarray]:
    """Independent split of each batch's rows by utterance: (stream, layer, id) -> (L, D)."""
    rows = {}
    for ids, acts, _ in batches:
        for (stream, layer), (data, lengths) in acts.items():
            for uid, piece in zip(ids, np.split(data, np.cumsum(lengths)[:-1])):
                rows[(stream, layer, uid)] = piece
    return rows


@pytest.fixture
def store_path(tmp_path):
    batches = random_batches()
    return write_batches(tmp_path / "acts.h5", batches), batches


def test_round_trip_rows_means_layers_metadata(store_path):
    path, batches = store_path
    rows = utterance_rows(batches)
    with ActivationStore(path) as store:
        assert store.streams() == ["encoder", "decoder/surface"]
        assert store.layers("encoder") == ["enc.1", "enc.0"]
        assert store.attrs["tasks"] == ["surface", "meaning"] and store.attrs["config"] == {"d": 3}
        assert store.attrs["complete"] is True and store.attrs["n_utterances"] == 12
        assert list(store.metadata.columns) == ["index", "speaker"]
        assert store.metadata.loc["u2-3", "speaker"] == "spk1"
        for stream, layer in BATCH_LAYERS:
            data, offsets = store.frames(stream, layer)
            for i, uid in enumerate(store.ids):
                want = rows[(stream, layer, uid)]
                np.testing.assert_array_equal(data[offsets[i] : offsets[i + 1]], want)
                assert store.means(stream, layer, [uid])[0].dtype == np.float32
                np.testing.assert_allclose(
                    store.means(stream, layer, [uid])[0],
                    want.astype(np.float64).mean(0),
                    rtol=1e-6,
                    atol=1e-7,
                )


def test_selected_ids_come_back_in_the_requested_order(store_path):
    path, batches = store_path
    rows = utterance_rows(batches)
    ids = ["u2-1", "u0-0", "u0-1", "u1-3"]
    with ActivationStore(path) as store:
        data, offsets = store.frames("encoder", "enc.0", ids)
        np.testing.assert_array_equal(data, np.concatenate([rows[("encoder", "enc.0", u)] for u in ids]))
        np.testing.assert_array_equal(np.diff(offsets), store.row_counts("encoder", "enc.0", ids))
        np.testing.assert_array_equal(
            store.means("encoder", "enc.0", ids), store.means("encoder", "enc.0")[[9, 0, 1, 7]]
        )
        with pytest.raises(CKAProbeError, match="no utterance 'nope'"):
            store.means("encoder", "enc.0", ["nope"])
        with pytest.raises(CKAProbeError, match="no layer 'enc.9'"):
            store.frames("encoder", "enc.9")


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(1, 40), subset=st.lists(st.integers(0, 11), unique=True, min_size=1))
def test_iter_frames_equals_frames_for_any_chunk_size(tmp_path_factory, chunk, subset):
    path = tmp_path_factory.getbasetemp() / "iter.h5"
    if not path.exists():
        write_batches(path, random_batches())
    with ActivationStore(path) as store:
        ids = [store.ids[i] for i in subset]
        chunks = list(store.iter_frames("encoder", "enc.1", ids, chunk_rows=chunk))
        assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
        np.testing.assert_array_equal(np.concatenate(chunks), store.frames("encoder", "enc.1", ids)[0])


def test_align_ids_keeps_a_order_and_warns_with_counts(tmp_path):
    a = write_batches(tmp_path / "a.h5", random_batches(2))
    b = write_batches(tmp_path / "b.h5", random_batches(3, seed=1)[:0:-1])
    c = write_batches(tmp_path / "c.h5", random_batches(1, prefix="other"))
    with ActivationStore(a) as sa, ActivationStore(b) as sb, ActivationStore(c) as sc:
        with pytest.warns(
            UserWarning, match="4 in common, dropped 4 only in the first and 4 only in the second"
        ):
            common = align_ids(sa, sb)
        assert common == ["u1-0", "u1-1", "u1-2", "u1-3"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert align_ids(sa, sa) == sa.ids
        with pytest.raises(CKAProbeError, match="share no utterance ids"):
            align_ids(sa, sc)


def test_shards_read_as_one_store_and_merge_to_the_same_arrays(tmp_path):
    batches = random_batches(4)
    whole = write_batches(tmp_path / "whole.h5", batches)
    shards = [write_batches(tmp_path / "s0.h5", batches[:1]), write_batches(tmp_path / "s1.h5", batches[1:])]
    merged = merge_stores(shards, tmp_path / "merged.h5")
    with ActivationStore(whole) as w, ActivationStore.open_many(shards) as s, ActivationStore(merged) as m:
        assert w.ids == s.ids == m.ids
        assert w.metadata.equals(s.metadata) and w.metadata.equals(m.metadata)
        for stream, layer in BATCH_LAYERS:
            for other in (s, m):
                np.testing.assert_array_equal(other.frames(stream, layer)[0], w.frames(stream, layer)[0])
                np.testing.assert_array_equal(other.frames(stream, layer)[1], w.frames(stream, layer)[1])
                np.testing.assert_array_equal(other.means(stream, layer), w.means(stream, layer))
            ids = [w.ids[i] for i in (13, 2, 5)]
            np.testing.assert_array_equal(s.frames(stream, layer, ids)[0], w.frames(stream, layer, ids)[0])
        assert m.attrs["config"] == w.attrs["config"]


def test_shards_with_repeated_ids_or_other_layers_are_refused(tmp_path):
    a = write_batches(tmp_path / "a.h5", random_batches(1))
    with pytest.raises(CKAProbeError, match="'u0-0' occurs more than once"):
        ActivationStore.open_many([a, a])
    with StoreWriter(
        tmp_path / "b.h5", attrs={"arch": "do", "tasks": ["surface", "meaning"], "config": {"d": 3}}
    ) as writer:
        ids, acts, meta = random_batches(1, prefix="v")[0]
        writer.append(ids, {BATCH_LAYERS[0]: acts[BATCH_LAYERS[0]]}, metadata=meta)
        b = writer.finish()
    with pytest.raises(CKAProbeError, match="b.h5: streams differ"):
        ActivationStore.open_many([a, b])


def test_existing_store_needs_overwrite(store_path):
    path, batches = store_path
    with pytest.raises(CKAProbeError, match="already exists; pass --overwrite"):
        write_batches(path, batches)
    write_batches(path, batches[:1], overwrite=True)
    with ActivationStore(path) as store:
        assert len(store.ids) == 4


def test_missing_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(CKAProbeError, match="nothing.h5: no such store"):
        ActivationStore(tmp_path / "nothing.h5")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(CKAProbeError, match="foreign.h5: not a cka-probe activation store"):
        ActivationStore(tmp_path / "foreign.h5")
    (tmp_path / "text.h5").write_text("id,value\n")
    with pytest.raises(CKAProbeError, match="text.h5: not a readable HDF5 file"):
        ActivationStore(tmp_path / "text.h5")


def test_truncated_file_is_a_clear_error(store_path, tmp_path):
    path, _ = store_path
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CKAProbeError, match="cut.h5: not a readable HDF5 file, truncated or corrupt"):
        ActivationStore(cut)


def test_corrupted_rows_fail_their_checksum(store_path, tmp_path):
    path, _ = store_path
    with h5py.File(path, "r") as f:
        where = f["encoder/enc.1/data"].id.get_chunk_info(0).byte_offset
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    raw = bytearray(bad.read_bytes())
    raw[where + 8 : where + 16] = bytes(8)
    bad.write_bytes(bytes(raw))
    with ActivationStore(bad) as store:
        with pytest.raises(CKAProbeError, match="bad.h5: cannot read encoder/enc.1/data .*corrupt"):
            store.frames("encoder", "enc.1")


def test_incomplete_store_is_refused_but_described(tmp_path):
    path = tmp_path / "acts.h5"
    writer = StoreWriter(path, attrs={"arch": "so"})
    ids, acts, meta = random_batches(1)[0]
    writer.append(ids, acts, metadata=meta)
    writer.close()
    assert partial_path(path).exists() and not path.exists()
    with pytest.raises(CKAProbeError, match="acts.h5: incomplete store .*rerun the same cka-probe extract"):
        ActivationStore(path)
    with pytest.raises(CKAProbeError, match="acts.h5.partial: incomplete store"):
        ActivationStore(partial_path(path))
    text = describe(path)
    assert "INCOMPLETE (1 batches written), 4 utterances" in text and "enc.0" in text


def test_describe_lists_streams_layers_and_provenance(store_path):
    path, _ = store_path
    text = describe(path)
    assert ": complete, 12 utterances" in text
    assert "stream decoder/surface: 1 layers" in text
    assert "arch: do" in text and 'tasks: ["surface", "meaning"]' in text
    rows = sum(len(r) for (s, layer, _), r in utterance_rows(random_batches()).items() if layer == "enc.1")
    assert f"rows {rows:>9}  dim     5" in text


def test_bad_batches_are_refused_before_writing(tmp_path):
    ids, acts, meta = random_batches(1)[0]
    with StoreWriter(tmp_path / "a.h5") as writer:
        rows, lengths = acts[BATCH_LAYERS[0]]
        with pytest.raises(CKAProbeError, match="u0-2 has no rows in layer encoder/enc.1"):
            writer.append(ids, {BATCH_LAYERS[0]: (rows[: lengths[:2].sum()], np.r_[lengths[:2], 0, 0])})
        with pytest.raises(CKAProbeError, match="storage dtype must be one of float32, float16"):
            StoreWriter(tmp_path / "b.h5", dtype="int8")


def batch_bytes(acts) -> int:
    """What the writer holds for one batch: float32 rows plus float32 means, independently counted."""
    return sum(4 * d.size + 4 * len(lengths) * d.shape[1] for d, lengths in acts.values())


def test_batches_are_committed_in_blocks_and_on_close(tmp_path):
    batches = random_batches(5)
    sizes = [batch_bytes(acts) for _, acts, _ in batches]
    assert 2 * min(sizes) > max(sizes)  # so that any two batches, and no single one, fill a block
    path = tmp_path / "acts.h5"
    writer = StoreWriter(path, commit_bytes=max(sizes) + 1)
    committed = []
    for ids, acts, meta in batches:
        writer.append(ids, acts, metadata=meta)
        committed.append(writer.n_batches)
    assert committed == [0, 2, 2, 4, 4]
    writer.close()  # the fifth batch is committed on close
    with h5py.File(partial_path(path), "r") as f:
        assert f.attrs["n_batches"] == 5 and f.attrs["n_utterances"] == 20
    with StoreWriter(path) as resumed:
        assert resumed.n_batches == 5
        resumed.finish()
    blocked, single = (
        ActivationStore(path),
        ActivationStore(write_batches(tmp_path / "one.h5", batches, commit_bytes=0)),
    )
    with blocked, single:
        assert blocked.ids == single.ids
        for stream, layer in BATCH_LAYERS:
            assert np.array_equal(blocked.frames(stream, layer)[0], single.frames(stream, layer)[0])
            assert np.array_equal(blocked.means(stream, layer), single.means(stream, layer))
