"""Append utterances to an activation store batch by batch, resumably.

Crash safety (a run killed at any moment, SIGKILL included, resumes from the
last committed batch and ends with the same arrays as an uninterrupted run):

1. the store is written to ``<out>.partial`` and renamed to ``<out>`` only
   when complete, so ``<out>`` never holds half-written output;
2. finished batches are held in memory until they total ``commit_bytes``
   (default 32 MiB; 0 commits every batch), then written together: their rows
   are written and flushed, then ``n_utterances`` and ``n_batches`` are
   recorded in the root attributes and flushed again (the commit). Closing the
   writer, on an error too, commits what it holds;
3. resuming validates the partial file's layout against its committed counts
   (root attributes, every column's and layer's datasets, the offsets) and
   copies the committed rows into a fresh file that replaces it; reading them
   back checks their Fletcher-32 checksums. Nothing a kill tore beyond the
   commit (a chunk, the chunk index, the heap of the id strings) is written
   to again. A file that cannot be read or validated (a kill before the
   first commit, a torn flush, a truncated file) is discarded with a
   one-line warning and the extraction starts again;
4. a partial file marked complete (killed between finishing and the rename)
   is only renamed; a rerun over a complete store of the same settings does
   nothing, so rerunning a command after any kill finishes it.

Each write, flush and rename is a crash point (:mod:`cka_probe.faults`) at
which the crash-safety tests kill the process (or make the write fail).

One writer per store: the writer holds :func:`cka_probe.locks.output_lock` on
``<out>`` from before it looks at a partial file until it is closed, so a
second run on the same ``--out`` is refused with one line naming the first,
and a partial file another run is writing is never read, resumed or deleted.

A failed write (a full disk, a quota, an I/O error) is one line naming the
partial file and, on a full disk, about the space the block being written
needs (:func:`cka_probe.errors.write_error`). The HDF5 file is then closed
without being written to again (its chunk cache is off, so a failed write
fails in the call that makes it, not later in a flush or a close), the
committed blocks stay in ``<out>.partial`` (a partial file that holds no
commit yet is removed) and nothing is published at ``<out>``; rerunning the
same command after freeing space resumes from the last commit. At finish the
sha256 of the ids and of each layer's offsets are recorded
(:mod:`cka_probe.store.schema`) for the reader to check.

Committing in blocks keeps the HDF5 calls per batch (a resize and a write per
dataset, two flushes) from costing as much as a small model's forward pass;
a kill loses at most ``commit_bytes`` of finished batches, which a resumed run
computes again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import h5py
import numpy as np

from cka_probe.atomic import make_folder
from cka_probe.errors import CKAProbeError, write_error
from cka_probe.faults import crash_point
from cka_probe.locks import output_lock
from cka_probe.store.schema import (
    COMPRESSIONS,
    FORMAT,
    IDS_DIGEST,
    LIBVER,
    OFFSETS_DIGEST,
    SCHEMA_VERSION,
    check_dtype,
    chunk_rows,
    decode_attrs,
    encode_attrs,
    ids_digest,
    layer_group,
    offsets_digest,
    partial_path,
)

LayerKey = tuple[str, str]
"""``(stream, layer)``, e.g. ``("encoder", "encoder.layers.3")``."""

COMMIT_BYTES = 32 << 20
"""Finished batches held in memory before they are written and committed together."""


COPY_BYTES = 64 << 20
"""Rows copied at a time when a resumed run rebuilds its committed part."""


def default_commit_bytes() -> int:
    """:data:`COMMIT_BYTES`, or ``CKA_PROBE_COMMIT_BYTES`` where set (a hook of the crash-safety tests)."""
    return int(os.environ.get("CKA_PROBE_COMMIT_BYTES") or COMMIT_BYTES)


def utterance_means(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-utterance mean of concatenated rows, in float64: ``(rows, D) -> (B, D)``."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.add.reduceat(rows, starts, axis=0, dtype=np.float64) / lengths[:, None]


def _versions() -> dict:
    from cka_probe._version import __version__

    found = {"cka_probe_version": __version__}
    for package in ("torch", "h5py", "numpy"):
        try:
            found[f"{package}_version"] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            found[f"{package}_version"] = "unknown"
    return found


def _column_dtype(values: Sequence):
    kind = np.asarray(values).dtype.kind
    if kind in "iub":
        return np.dtype(np.int64)
    if kind == "f":
        return np.dtype(np.float64)
    return h5py.string_dtype("utf-8")


class _WriteFailed(Exception):
    """A write to a store file failed; ``error`` is the ``OSError`` behind it."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


def _os_error(err: BaseException) -> OSError:
    """``err`` as an ``OSError`` with an errno: its own, the one HDF5 names in its message, or EIO."""
    if isinstance(err, _WriteFailed):
        return err.error
    if isinstance(err, OSError) and err.errno:
        return err
    found = re.search(r"errno = (\d+)", str(err))
    code = int(found.group(1)) if found else errno.EIO
    return OSError(code, os.strerror(code))


@contextlib.contextmanager
def _write_step() -> Iterator[None]:
    """Raise :class:`_WriteFailed` for whatever h5py (or a crash point) raises in the block."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        raise _WriteFailed(_os_error(err)) from None


def _new_file(path: Path) -> h5py.File:
    """A new HDF5 file at ``path`` with no chunk cache, so that a failed write fails in its own call."""
    with _write_step():
        return h5py.File(path, "w", libver=LIBVER, rdcc_nbytes=0)


def _grow(ds: h5py.Dataset, at: int, values: np.ndarray) -> None:
    """Write ``values`` at row ``at`` and make it the dataset's end (half, then the rest: a torn-write
    point)."""
    with _write_step():
        crash_point("store:write")
        ds.resize(at + len(values), axis=0)
        half = len(values) // 2
        ds[at : at + half] = values[:half]
        crash_point("store:write:torn")
        ds[at + half :] = values[half:]


def _flush(f: h5py.File) -> None:
    with _write_step():
        crash_point("store:flush")
        f.flush()
        crash_point("store:flushed")


def _size(path: Path) -> int | None:
    """The bytes of ``path``, None when it is not there."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def _cut_off(f: h5py.File | None) -> None:
    """Point ``f``'s file descriptor at a read-only ``/dev/null``, so that HDF5 writes nothing more to it:
    closing it then leaves the file as its last flush did, as a kill would (the resume starts from there)."""
    if f is None or not f.id.valid:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, f.id.get_vfd_handle())
    finally:
        os.close(null)


def _quietly_close(f: h5py.File | None) -> None:
    """Close ``f`` after a failed write; what HDF5 says about it then is the same failure again."""
    with contextlib.suppress(Exception):
        if f is not None and f.id.valid:
            f.close()


class _Invalid(Exception):
    """A partial store that does not hold what its committed counts say."""


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise _Invalid(what)


def validate_committed(f: h5py.File) -> int:
    """Check the layout of a partial store against its committed counts; returns their number ``n``.

    Every column holds at least ``n`` rows; every layer's offsets start at 0
    and grow by at least one row per utterance, and its data and means hold
    the rows they point to. Raises ``_Invalid`` (or whatever h5py raises on a
    damaged file) otherwise; the rows themselves are checked when they are
    read back (their Fletcher-32 checksums).
    """
    attrs = decode_attrs(f.attrs)
    _require(attrs.get("format") == FORMAT, "not an activation store")
    n, streams = int(attrs["n_utterances"]), attrs["streams"]
    _require("ids" in f["utterances"] and (n == 0 or streams), "no utterance ids or no streams")
    for column in f["utterances"].values():
        _require(column.shape[0] >= n, f"{column.name} has {column.shape[0]} of {n} committed rows")
    for stream in streams:
        for layer in decode_attrs(f[stream].attrs)["layers"]:
            g = f[layer_group(stream, layer)]
            offsets = g["offsets"][: n + 1]
            _require(
                len(offsets) == n + 1 and offsets[0] == 0 and bool(np.all(np.diff(offsets) >= 1)),
                f"{g.name}: bad offsets",
            )
            _require(g["data"].shape[0] >= offsets[-1] and g["mean"].shape[0] >= n, f"{g.name} is too short")
            _require(
                "tokens" not in g or g["tokens"].shape[0] >= offsets[-1], f"{g.name}/tokens is too short"
            )
    return n


@dataclass
class _Batch:
    """One appended batch, checked and cast, waiting for its commit."""

    columns: dict[str, list]  # "ids" and metadata fields -> B values
    # rows (R, D), lengths (B,), means (B, D)
    layers: dict[LayerKey, tuple[np.ndarray, np.ndarray, np.ndarray]]
    tokens: dict[LayerKey, np.ndarray]  # decoder layers: input token id per row (R,)

    @property
    def widths(self) -> dict[LayerKey, int]:
        return {key: rows.shape[1] for key, (rows, _, _) in self.layers.items()}

    @property
    def nbytes(self) -> int:
        return sum(rows.nbytes + means.nbytes for rows, _, means in self.layers.values()) + sum(
            t.nbytes for t in self.tokens.values()
        )


class StoreWriter:
    """Writes one store (the schema of docs/design.md); resumes an interrupted ``.partial`` file.

    ``attrs`` is the provenance (checkpoint sha256, config, arch, tasks, ...);
    a resumed run must pass the same attrs, dtype and compression.
    A store already at ``path`` is an error unless ``overwrite`` (replace it)
    or ``keep_complete`` (keep it if it is complete and of the same settings:
    then :attr:`done` is true and there is nothing to append).
    Use as a context manager and call :meth:`finish` at the end.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        attrs: Mapping | None = None,
        dtype: str = "float32",
        compression: str | None = None,
        overwrite: bool = False,
        commit_bytes: int | None = None,
        keep_complete: bool = False,
    ):
        self.path = Path(path)
        self.keep_complete = keep_complete
        self.commit_bytes = default_commit_bytes() if commit_bytes is None else commit_bytes
        self._pending: list[_Batch] = []
        self.partial = partial_path(self.path)
        self.dtype = check_dtype(dtype)
        if compression not in COMPRESSIONS:
            raise CKAProbeError(f"compression must be gzip, lzf or none, not {compression!r}")
        self.compression = compression
        run_attrs = {**(attrs or {}), "dtype": self.dtype.name, "compression": compression or ""}
        self._run_attrs = decode_attrs(encode_attrs(run_attrs))
        self._file: h5py.File | None = None
        self._durable = False  # whether the partial file on disk holds a commit that a rerun resumes
        self._token_layers: set[LayerKey] = set()  # the decoder layers whose rows carry token ids
        self._lock = self._take_lock()
        try:
            if overwrite:
                self._remove(self.partial)
                self._remove(self.path)
            self._file = self._open()
            self._layers = self._stored_layers() if self._file is not None else {}
        except _WriteFailed as failed:
            self._give_up()
            raise write_error(failed.error, self.partial, needed=_size(self.partial)) from None
        except BaseException:
            self._give_up()
            raise

    def _take_lock(self) -> contextlib.ExitStack:
        """Hold the output lock of ``path`` (refused with one line while another run writes it)."""
        make_folder(self.path.parent)
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(output_lock(self.path))
        except OSError as err:
            raise write_error(err, self.path) from None
        return lock

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise CKAProbeError(f"{path}: cannot remove it ({os.strerror(err.errno)})") from None

    def _give_up(self, *, failed: bool = False) -> None:
        """Close the file (after a ``failed`` write, without writing to it again) and release the lock."""
        f, self._file, self._pending = self._file, None, []
        if failed:
            _cut_off(f)
        _quietly_close(f)
        self._lock.close()

    @property
    def done(self) -> bool:
        """Whether ``path`` already holds the complete store of these settings (nothing to do)."""
        return self.path.exists()

    def _check_complete(self) -> None:
        """A store already at ``path`` must be complete and of the same settings; a partial beside it goes."""
        try:
            with h5py.File(self.path, "r") as f:
                stored, complete = decode_attrs(f.attrs), bool(f.attrs.get("complete"))
        except (OSError, KeyError) as err:
            raise CKAProbeError(
                f"{self.path}: already exists and is not a readable store ({err}); "
                "pass --overwrite to replace it"
            ) from None
        why = self._changed_setting(stored) or (None if complete else "it is not marked complete")
        if why:
            raise CKAProbeError(f"{self.path}: already exists ({why}); pass --overwrite to replace it")
        self._remove(self.partial)

    def _changed_setting(self, stored: dict) -> str | None:
        """``"key: 'old' there, 'new' now"`` for the first run setting that ``stored`` holds otherwise."""
        for key, value in self._run_attrs.items():
            if stored.get(key) != value:
                return f"{key}: {stored.get(key)!r} there, {value!r} now"
        return None

    # -- opening ---------------------------------------------------------
    def _open(self) -> h5py.File | None:
        """The file to append to: a resumed or a new partial; None when ``path`` is already complete."""
        if self.path.exists():
            if not self.keep_complete:
                raise CKAProbeError(f"{self.path}: already exists; pass --overwrite to replace it")
            self._check_complete()
            return None
        resumed = self._resume()
        return None if self.path.exists() else resumed or self._create()

    def _create(self) -> h5py.File:
        self._durable = False
        f = _new_file(self.partial)
        f.attrs.update(
            encode_attrs(
                {
                    **self._run_attrs,
                    **_versions(),
                    "format": FORMAT,
                    "schema_version": SCHEMA_VERSION,
                    "complete": False,
                    "n_utterances": 0,
                    "n_batches": 0,
                    "streams": [],
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
        )
        f.create_dataset(
            "utterances/ids", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=h5py.string_dtype("utf-8")
        )
        return f

    @property
    def _rebuild_path(self) -> Path:
        """Where a resumed run rebuilds the committed part of the partial file."""
        return self.partial.with_name(self.path.name + ".resume.partial")

    def _resume(self) -> h5py.File | None:
        """Rebuild an interrupted run's committed part in a fresh partial file; None to start afresh.

        The committed rows are copied, not truncated in place: whatever a kill
        left in the old file beyond them (a torn chunk, index or heap) is left
        behind with it, and reading every committed row back checks its
        Fletcher-32 checksum. A file that fails is discarded.
        """
        if not self.partial.exists():
            return None
        try:
            with h5py.File(self.partial, "r", libver=LIBVER) as old:
                self._check_settings(decode_attrs(old.attrs))
                n, batches, complete = (
                    validate_committed(old),
                    int(old.attrs["n_batches"]),
                    bool(old.attrs["complete"]),
                )
                fresh = self._rebuild(old, n) if batches and not complete else None
        except (CKAProbeError, _WriteFailed):
            self._remove(self._rebuild_path)
            raise
        except Exception as err:  # noqa: BLE001 -- h5py raises OSError, KeyError, ValueError, RuntimeError
            self._remove(self._rebuild_path)
            return self._discard(f"unreadable ({type(err).__name__}: {' '.join(str(err).split())})")
        if not batches:
            return self._discard(None)
        if complete:
            self._publish()
            return None
        try:
            with _write_step():
                crash_point("store:rebuilt")
                os.replace(self._rebuild_path, self.partial)
        except _WriteFailed:
            _quietly_close(fresh)
            self._remove(self._rebuild_path)
            raise
        self._durable = True
        return fresh

    def _rebuild(self, old: h5py.File, n: int) -> h5py.File:
        """A new file at :attr:`_rebuild_path` holding the attributes and first ``n`` utterances of
        ``old`` (the ids' sha256 aside: it is recorded again at finish)."""
        fresh = _new_file(self._rebuild_path)
        try:
            self._copy_committed(old, fresh, n)
        except BaseException:
            _quietly_close(fresh)
            raise
        return fresh

    def _copy_committed(self, old: h5py.File, fresh: h5py.File, n: int) -> None:
        """Copy the attributes, columns and layers of the first ``n`` utterances of ``old`` into ``fresh``."""
        fresh.attrs.update({key: value for key, value in old.attrs.items() if key != IDS_DIGEST})
        for name, column in old["utterances"].items():
            fresh.create_dataset(
                f"utterances/{name}", shape=(0,), maxshape=(None,), chunks=(4096,), dtype=column.dtype
            )
            _grow(fresh["utterances"][name], 0, column[:n])
        for stream in decode_attrs(old.attrs)["streams"]:
            layers = decode_attrs(old[stream].attrs)["layers"]
            for layer in layers:
                source = old[layer_group(stream, layer)]
                rows = int(source["offsets"][n])
                target = self._create_layer(
                    fresh, layer_group(stream, layer), source["data"].shape[1], "tokens" in source
                )
                _grow(target["offsets"], 0, source["offsets"][: n + 1])
                _grow(target["mean"], 0, source["mean"][:n])
                step = max(1, COPY_BYTES // (source["data"].shape[1] * source["data"].dtype.itemsize))
                for start in range(0, rows, step):
                    _grow(target["data"], start, source["data"][start : min(rows, start + step)])
                if "tokens" in source:
                    _grow(target["tokens"], 0, source["tokens"][:rows])
            fresh[stream].attrs.update(dict(old[stream].attrs))
        _flush(fresh)

    def _check_settings(self, stored: dict) -> None:
        why = self._changed_setting(stored)
        if why:
            raise CKAProbeError(
                f"{self.partial}: an interrupted extraction with other settings ({why}); "
                "pass --overwrite to start again"
            )

    def _discard(self, why: str | None) -> None:
        """Delete the partial file (warning ``why``), so that the run starts again."""
        if why:
            warnings.warn(f"{self.partial}: {why}; starting the extraction again", stacklevel=5)
        self._remove(self.partial)
        return None

    def _stored_layers(self) -> dict[LayerKey, int]:
        """(stream, layer) -> width of the layers already in the file."""
        keys = {}
        for stream in decode_attrs(self._file.attrs)["streams"]:
            for layer in decode_attrs(self._file[stream].attrs)["layers"]:
                g = self._file[layer_group(stream, layer)]
                keys[(stream, layer)] = g["data"].shape[1]
                if "tokens" in g:
                    self._token_layers.add((stream, layer))
        return keys

    # -- state -------------------------------------------------------------
    @property
    def n_utterances(self) -> int:
        """Utterances committed so far."""
        return int(self._file.attrs["n_utterances"])

    @property
    def n_batches(self) -> int:
        """Batches committed so far (those a resumed run skips)."""
        return int(self._file.attrs["n_batches"])

    @property
    def ids(self) -> list[str]:
        """Ids of the committed utterances."""
        return list(self._file["utterances/ids"].asstr()[:])

    # -- appending ---------------------------------------------------------
    def append(
        self,
        ids: Sequence[str],
        acts: Mapping[LayerKey, tuple[np.ndarray, np.ndarray]],
        metadata: Mapping[str, Sequence] | None = None,
        means: Mapping[LayerKey, np.ndarray] | None = None,
        tokens: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add one batch; it is committed with the next block (see the module docstring).

        ``acts[(stream, layer)] = (rows (sum(lengths), D), lengths (B,))``: the
        valid rows of the batch's utterances, concatenated in ``ids`` order.
        ``means`` (``(B, D)`` per layer) is given only when copying a store;
        otherwise they are computed here in float64 before any float16 cast.
        ``tokens[stream]`` (``(R,)`` int) is the input token id of each row of a
        decoder stream, stored with every layer of that stream.
        A bad batch is refused here, before anything of it is held or written.
        """
        columns = {"ids": list(ids), **{k: list(v) for k, v in (metadata or {}).items()}}
        self._check_batch(columns, acts)
        layer_tokens = {key: np.asarray(tokens[key[0]], np.int64) for key in acts if key[0] in (tokens or {})}
        self._check_tokens(acts, layer_tokens)
        layers = {}
        for key, (rows, lengths) in acts.items():
            rows, lengths = np.asarray(rows), np.asarray(lengths, np.int64)
            mean = utterance_means(rows, lengths) if means is None else means[key]
            layers[key] = (rows.astype(self.dtype, copy=False), lengths, mean.astype(np.float32))
        self._pending.append(_Batch(columns, layers, layer_tokens))
        if sum(b.nbytes for b in self._pending) >= self.commit_bytes:
            self.commit()

    def _check_batch(
        self, columns: Mapping[str, list], acts: Mapping[LayerKey, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Same layers and widths as the first batch, rows matching lengths, >= 1 row each, same metadata."""
        n = len(columns["ids"])
        known = self._layers or (self._pending[0].widths if self._pending else None)
        if known is not None and set(acts) != set(known):
            raise CKAProbeError(
                f"{self.path}: batch {self._batch_index} has layers "
                f"{sorted(set(acts) ^ set(known))} that differ from the first batch"
            )
        for key, (rows, lengths) in acts.items():
            name, rows, lengths = layer_group(*key), np.asarray(rows), np.asarray(lengths)
            if lengths.shape != (n,) or rows.ndim != 2 or rows.shape[0] != lengths.sum():
                raise CKAProbeError(
                    f"{self.path}: layer {name}: {rows.shape} rows do not match "
                    f"lengths {lengths.tolist()} of {n} utterances"
                )
            if known is not None and rows.shape[1] != known[key]:
                raise CKAProbeError(
                    f"{self.path}: layer {name} has width {rows.shape[1]} in batch "
                    f"{self._batch_index}, {known[key]} before"
                )
            if (lengths < 1).any():
                raise CKAProbeError(
                    f"{self.path}: utterance {columns['ids'][int(np.argmin(lengths))]} "
                    f"has no rows in layer {name}"
                )
        self._check_columns(columns)

    def _check_tokens(
        self, acts: Mapping[LayerKey, tuple[np.ndarray, np.ndarray]], tokens: Mapping[LayerKey, np.ndarray]
    ) -> None:
        """One token id per row, and token ids for the same layers as the first batch."""
        known = (
            self._token_layers if self._layers else (set(self._pending[0].tokens) if self._pending else None)
        )
        if known is not None and set(tokens) != known:
            raise CKAProbeError(
                f"{self.path}: batch {self._batch_index} has token ids for other layers than the first batch"
            )
        for key, ids in tokens.items():
            if ids.shape != (len(acts[key][0]),):
                raise CKAProbeError(
                    f"{self.path}: layer {layer_group(*key)}: {ids.shape} token ids for "
                    f"{len(acts[key][0])} rows"
                )

    def _check_columns(self, columns: Mapping[str, list]) -> None:
        stored = set(self._file["utterances"]) if self.n_utterances else None
        first = stored or (set(self._pending[0].columns) if self._pending else set(columns))
        if set(columns) != first:
            raise CKAProbeError(
                f"{self.path}: batch {self._batch_index} has metadata fields "
                f"{sorted(columns)}, the store has {sorted(first)}"
            )
        for name, values in columns.items():
            if len(values) != len(columns["ids"]):
                raise CKAProbeError(
                    f"{self.path}: metadata field {name!r} has {len(values)} values "
                    f"for {len(columns['ids'])} utterances"
                )

    @property
    def _batch_index(self) -> int:
        """The index of the batch being appended, counting committed and held ones."""
        return self.n_batches + len(self._pending)

    # -- committing --------------------------------------------------------
    def commit(self) -> None:
        """Write the held batches as one block and record them as done (no-op when none are held)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        with self._writing(needed=sum(b.nbytes for b in pending)):
            self._write_block(pending)

    @contextlib.contextmanager
    def _writing(self, needed: int | None) -> Iterator[None]:
        """Turn a failed write in the block into the one line naming the partial file (``needed``: the
        bytes the block writes); the file is then closed and the lock released, nothing is written again."""
        try:
            yield
        except (_WriteFailed, OSError, RuntimeError) as err:
            self._give_up(failed=True)
            if not self._durable:  # nothing committed: a file that was never flushed is no use to a rerun
                self._remove(self.partial)
            raise write_error(_os_error(err), self.partial, needed=needed) from None

    def _write_block(self, pending: list[_Batch]) -> None:
        """Write the held batches' rows, flush, then record their counts and flush again (the commit)."""
        n0 = self.n_utterances
        if not self._layers:
            self._create_layers(pending[0].widths, set(pending[0].tokens))
        self._append_columns(
            n0, {name: [v for b in pending for v in b.columns[name]] for name in pending[0].columns}
        )
        for key in self._layers:
            rows, lengths, means = (np.concatenate([b.layers[key][i] for b in pending]) for i in range(3))
            tokens = np.concatenate([b.tokens[key] for b in pending]) if key in self._token_layers else None
            self._append_layer(key, n0, rows, lengths, means, tokens)
        _flush(self._file)
        crash_point("store:commit")
        self._file.attrs["n_utterances"] = n0 + sum(len(b.columns["ids"]) for b in pending)
        self._file.attrs["n_batches"] = self.n_batches + len(pending)
        _flush(self._file)
        self._durable = True

    def _create_layers(self, widths: Mapping[LayerKey, int], token_layers: set[LayerKey]) -> None:
        streams: dict[str, list[str]] = {}
        for (stream, layer), dim in widths.items():
            streams.setdefault(stream, []).append(layer)
            self._create_layer(self._file, layer_group(stream, layer), dim, (stream, layer) in token_layers)
        for stream, layers in streams.items():
            self._file[stream].attrs.update(encode_attrs({"layers": layers}))
        self._file.attrs["streams"] = json.dumps(list(streams))
        self._layers, self._token_layers = dict(widths), set(token_layers)

    def _create_layer(self, f: h5py.File, group: str, dim: int, with_tokens: bool = False) -> h5py.Group:
        """The empty ``data``, ``mean``, ``offsets`` (and, for a decoder layer, ``tokens``) of one layer in
        ``f``."""
        filters = {
            "compression": self.compression,
            "fletcher32": True,
            "shuffle": self.compression is not None,
        }
        g = f.create_group(group)
        g.create_dataset(
            "data",
            shape=(0, dim),
            maxshape=(None, dim),
            dtype=self.dtype,
            chunks=(chunk_rows(dim, self.dtype.itemsize), dim),
            **filters,
        )
        g.create_dataset(
            "mean",
            shape=(0, dim),
            maxshape=(None, dim),
            dtype=np.float32,
            chunks=(chunk_rows(dim, 4), dim),
            **filters,
        )
        g.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(16384,))
        if with_tokens:
            g.create_dataset("tokens", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(16384,))
        return g

    def _append_columns(self, n0: int, columns: Mapping[str, list]) -> None:
        group = self._file["utterances"]
        for name, values in columns.items():
            if name not in group:
                group.create_dataset(
                    name, shape=(0,), maxshape=(None,), chunks=(4096,), dtype=_column_dtype(values)
                )
            column = np.asarray(values, dtype=object if group[name].dtype.kind == "O" else group[name].dtype)
            _grow(group[name], n0, column)

    def _append_layer(
        self,
        key: LayerKey,
        n0: int,
        rows: np.ndarray,
        lengths: np.ndarray,
        means: np.ndarray,
        tokens: np.ndarray | None,
    ) -> None:
        g = self._file[layer_group(*key)]
        start = int(g["offsets"][n0])
        _grow(g["offsets"], n0 + 1, start + np.cumsum(lengths))
        _grow(g["data"], start, rows)
        _grow(g["mean"], n0, means)
        if tokens is not None:
            _grow(g["tokens"], start, tokens)

    # -- ending ------------------------------------------------------------
    def finish(self) -> Path:
        """Commit what is held, record the checksums, mark the store complete and move it to its final path;
        the output lock is released."""
        if self.done:
            self.close()
            return self.path
        self.commit()
        if self.n_utterances == 0:
            self.close()
            raise CKAProbeError(f"{self.path}: no utterances were written")
        with self._writing(needed=None):
            self._record_digests()
            crash_point("store:complete")
            self._file.attrs["complete"] = True
            _flush(self._file)
            self._file.close()
            self._file = None
        try:
            self._publish()
        finally:
            self._lock.close()
        return self.path

    def _record_digests(self) -> None:
        """The sha256 of the ids (root) and of each layer's offsets (its group), for the reader to check."""
        self._file.attrs[IDS_DIGEST] = ids_digest(self.ids)
        for key in self._layers:
            g = self._file[layer_group(*key)]
            g.attrs[OFFSETS_DIGEST] = offsets_digest(g["offsets"][:])

    def _publish(self) -> None:
        """Rename the complete partial file to ``path``."""
        try:
            crash_point("store:rename")
            os.replace(self.partial, self.path)
            crash_point("store:renamed")
        except OSError as err:
            raise write_error(err, self.path) from None

    def close(self) -> None:
        """Commit what is held and close without finishing: the ``.partial`` file stays for a resume; the
        output lock is released."""
        try:
            if self._file is not None and self._file.id.valid:
                self.commit()
        finally:
            self._give_up()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
