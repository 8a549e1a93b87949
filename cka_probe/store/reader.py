"""Read activation stores: one file, or the rank shards of one extraction as one store.

Every array comes back as stored (``data`` float32 or float16, ``mean``
float32); consumers cast to float64 where precision matters. Rows are read
range by range, so :meth:`ActivationStore.iter_frames` never holds a whole
layer in memory.

A store is checked when it is opened, so that a damaged one is a one-line
error naming it instead of a traceback or a wrong number later:

- every dataset's rows live in the file itself: a virtual dataset (whose
  rows a missing source file would turn into zeros), an external link or a
  dataset with external raw storage is refused;
- the root attributes: the format marker, a ``schema_version`` this reader
  knows, ``complete``, ``n_utterances``, ``n_batches``, ``streams``,
  ``dtype`` and ``compression`` with their types, every JSON attribute
  decodable;
- every stream and layer the attributes list is present, with ``data`` and
  ``mean`` of one width, offsets that start at 0, grow by at least one row
  per utterance and end at the rows of ``data`` (exactly, in a complete
  store), and every column holding a row per utterance;
- the ids and each layer's offsets match the sha256 recorded when the store
  was finished (a store written before they were recorded has none and is
  read without them).

Values are checked as they are read: a non-finite mean or row is an error
naming the layer, the stream and the utterance.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.store.schema import (
    FORMAT,
    IDS_DIGEST,
    OFFSETS_DIGEST,
    SCHEMA_VERSION,
    STORAGE_DTYPES,
    decode_attrs,
    ids_digest,
    layer_group,
    offsets_digest,
    partial_path,
)

SHARD_KEYS = ("format", "schema_version", "streams", "dtype", "checkpoint_sha256", "config", "arch", "tasks")
"""Attributes that every shard of one store must share."""


@dataclass
class _Part:
    """One HDF5 file of a store: its root attributes and stream -> layers, decoded once
    (JSON attributes are slow to parse per call), each layer's offsets and the ids, read when it is
    opened."""

    path: Path
    file: h5py.File
    n: int
    attrs: dict
    layout: dict[str, list[str]]
    offsets: dict[str, np.ndarray] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def read(self, name: str, selection=slice(None)) -> np.ndarray:
        try:
            return self.file[name][selection]
        except (OSError, KeyError) as err:
            raise CKAProbeError(
                f"{self.path}: cannot read {name} ({' '.join(str(err).split())}); the file is corrupt"
            ) from None


def _resolve(path: Path, allow_incomplete: bool) -> Path:
    if path.exists():
        return path
    if partial_path(path).exists():
        if allow_incomplete:
            return partial_path(path)
        raise CKAProbeError(
            f"{path}: incomplete store (only {partial_path(path).name} exists: the "
            "extraction was interrupted; rerun the same cka-probe extract to resume)"
        )
    raise CKAProbeError(f"{path}: no such store")


def _open_part(path: str | Path, allow_incomplete: bool = False) -> _Part:
    """Open one store file and check it (see the module docstring); raises one line naming it."""
    path = _resolve(Path(path), allow_incomplete)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CKAProbeError(
            f"{path}: not a readable HDF5 file, truncated or corrupt ({' '.join(str(err).split())})"
        ) from None
    try:
        return _checked_part(path, f, allow_incomplete)
    except CKAProbeError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as err:  # h5py on a damaged file
        f.close()
        raise _damaged(path, f"its layout cannot be read ({' '.join(str(err).split())})") from None


def _checked_part(path: Path, f: h5py.File, allow_incomplete: bool) -> _Part:
    _refuse_foreign_rows(path, f)
    attrs = _root_attrs(path, f)
    if not attrs["complete"] and not allow_incomplete:
        raise CKAProbeError(
            f"{path}: incomplete store ({attrs['n_utterances']} utterances written "
            "before the extraction stopped); rerun cka-probe extract to resume"
        )
    layout = {stream: _stream_layers(path, f, stream) for stream in attrs["streams"]}
    part = _Part(path, f, attrs["n_utterances"], attrs, layout)
    _check_structure(part, exact=attrs["complete"])
    return part


def _damaged(path: Path, what: str) -> CKAProbeError:
    """The one-line error for a store whose layout or attributes are wrong."""
    return CKAProbeError(f"{path}: {what}; re-extract it")


def _refuse_foreign_rows(path: Path, f: h5py.File) -> None:
    """Refuse external links, virtual datasets and external raw storage anywhere in the file."""
    found = f.visititems_links(lambda name, link: _foreign(f, name, link))  # the first one stops the visit
    if found:
        raise CKAProbeError(f"{path}: {found}; cka-probe reads self-contained stores only")


def _foreign(f: h5py.File, name: str, link) -> str | None:
    """What makes the link ``name`` point outside the file, None when it does not."""
    if isinstance(link, h5py.ExternalLink):
        return f"/{name} is an external link (to {link.filename}:{link.path})"
    obj = f.get(name) if isinstance(link, h5py.HardLink) else None
    if isinstance(obj, h5py.Dataset) and obj.is_virtual:
        return f"/{name} is a virtual dataset (its rows live in other files)"
    if isinstance(obj, h5py.Dataset) and obj.external:
        return f"/{name} keeps its rows in external raw files ({obj.external[0][0]!s})"
    return None


def _decoded(path: Path, raw, where: str) -> dict:
    """The attributes of one object (``where``, for the message), JSON decoded."""
    try:
        return decode_attrs(raw)
    except (OSError, TypeError, ValueError) as err:
        raise _damaged(path, f"{where}: {err}") from None


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _root_attrs(path: Path, f: h5py.File) -> dict:
    """The root attributes, decoded, with the format's attributes present and of their types."""
    attrs = _decoded(path, f.attrs, "root")
    if attrs.get("format") != FORMAT:
        raise CKAProbeError(f"{path}: not a cka-probe activation store (no format={FORMAT!r} attribute)")
    version = attrs.get("schema_version")
    if _is_count(version) and version > SCHEMA_VERSION:
        raise CKAProbeError(
            f"{path}: schema version {version} is newer than this cka-probe reads ({SCHEMA_VERSION}); "
            "upgrade cka-probe"
        )
    expected = {
        "schema_version": (lambda v: _is_count(v) and v >= 1, "a schema version 1 or later"),
        "complete": (lambda v: isinstance(v, bool), "true or false"),
        "n_utterances": (_is_count, "a count"),
        "n_batches": (_is_count, "a count"),
        "streams": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a JSON list"),
        "dtype": (lambda v: v in STORAGE_DTYPES, f"one of {', '.join(STORAGE_DTYPES)}"),
        "compression": (lambda v: isinstance(v, str), "a string"),
    }
    for key, (ok, what) in expected.items():
        if key not in attrs:
            raise _damaged(path, f"root attribute {key!r} is missing")
        if not ok(attrs[key]):
            raise _damaged(path, f"root attribute {key!r} is {str(attrs[key])[:40]!r}, expected {what}")
    return attrs


def _stream_layers(path: Path, f: h5py.File, stream: str) -> list[str]:
    """The layer names that the group of ``stream`` lists."""
    group = f.get(stream)
    if not isinstance(group, h5py.Group):
        raise _damaged(path, f"stream {stream!r} is listed in the attributes but its group is missing")
    layers = _decoded(path, group.attrs, f"stream {stream!r}").get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(name, str) for name in layers):
        raise _damaged(path, f"stream {stream!r} has no JSON list of layers (its 'layers' attribute)")
    return layers


def _check_structure(part: _Part, exact: bool) -> None:
    """Ids, columns and every layer hold a row per committed utterance (exactly, in a complete store)."""
    utterances = part.file.get("utterances")
    if not isinstance(utterances, h5py.Group) or "ids" not in utterances:
        raise _damaged(part.path, "utterances/ids is missing")
    for name in utterances:
        _check_rows(part, _dataset(part, f"utterances/{name}", 1), part.n, exact)
    part.ids = _read_ids(part)
    for stream, layers in part.layout.items():
        for layer in layers:
            _check_layer(part, stream, layer, exact)


def _dataset(part: _Part, name: str, ndim: int) -> h5py.Dataset:
    """The dataset ``name``, which must exist with ``ndim`` dimensions."""
    dataset = part.file.get(name)
    if not isinstance(dataset, h5py.Dataset):
        raise _damaged(part.path, f"{name} is missing")
    if dataset.ndim != ndim:
        raise _damaged(part.path, f"{name} has shape {dataset.shape}, expected {ndim} dimensions")
    return dataset


def _check_rows(part: _Part, dataset: h5py.Dataset, rows: int, exact: bool) -> None:
    """``dataset`` has at least ``rows`` rows (exactly ``rows`` when ``exact``)."""
    have = dataset.shape[0]
    if have < rows or (exact and have != rows):
        raise _damaged(part.path, f"{dataset.name.lstrip('/')} has {have} rows, expected {rows}")


def _read_ids(part: _Part) -> list[str]:
    """The committed utterance ids, checked against their recorded sha256 where there is one."""
    try:
        ids = list(part.file["utterances/ids"].asstr()[: part.n])
    except (OSError, TypeError, ValueError) as err:
        reason = " ".join(str(err).split())
        raise _damaged(part.path, f"utterances/ids cannot be read as text ({reason})") from None
    recorded = part.attrs.get(IDS_DIGEST)
    if recorded is not None and recorded != ids_digest(ids):
        raise _damaged(part.path, "utterances/ids do not match their recorded sha256 (the ids are corrupt)")
    return ids


def _check_layer(part: _Part, stream: str, layer: str, exact: bool) -> None:
    """``data`` and ``mean`` of one width, offsets consistent with ``data`` and their recorded sha256."""
    g, where = layer_group(stream, layer), f"layer {layer!r} of stream {stream!r}"
    data, mean = _dataset(part, f"{g}/data", 2), _dataset(part, f"{g}/mean", 2)
    offsets_ds = _dataset(part, f"{g}/offsets", 1)
    if data.dtype.kind != "f" or mean.shape[1] != data.shape[1]:
        raise _damaged(part.path, f"{where}: data {data.shape} {data.dtype} and mean {mean.shape} disagree")
    _check_rows(part, mean, part.n, exact)
    _check_rows(part, offsets_ds, part.n + 1, exact)
    offsets = part.read(f"{g}/offsets", slice(0, part.n + 1))  # (n+1,)
    if offsets.dtype.kind not in "iu" or offsets[0] != 0 or np.any(np.diff(offsets) < 1):
        raise _damaged(part.path, f"{where}: its offsets do not start at 0 and grow with every utterance")
    _check_rows(part, data, int(offsets[-1]), exact)
    if f"{g}/tokens" in part.file:
        _check_rows(part, _dataset(part, f"{g}/tokens", 1), int(offsets[-1]), exact)
    recorded = part.file[g].attrs.get(OFFSETS_DIGEST)
    if recorded is not None and recorded != offsets_digest(offsets):
        raise _damaged(
            part.path, f"{where}: its offsets do not match their recorded sha256 (they are corrupt)"
        )
    part.offsets[g] = offsets.astype(np.int64)


class ActivationStore:
    """A complete store opened read-only (the schema of docs/design.md); a context manager.

    ``ActivationStore.open_many(paths)`` reads the rank shards of one
    extraction as one store, utterances in the order of ``paths``.
    """

    def __init__(self, path: str | Path, *, allow_incomplete: bool = False):
        self._init([_open_part(path, allow_incomplete)])

    @classmethod
    def open_many(cls, paths: Sequence[str | Path]) -> ActivationStore:
        if not paths:
            raise CKAProbeError("open_many needs at least one store path")
        parts = []
        try:
            for path in paths:
                parts.append(_open_part(path))
            _check_shards(parts)
        except CKAProbeError:
            for part in parts:
                part.file.close()
            raise
        store = cls.__new__(cls)
        store._init(parts)
        return store

    def _init(self, parts: list[_Part]) -> None:
        self._parts = parts
        self.path = parts[0].path if len(parts) == 1 else [p.path for p in parts]
        self._ids = [uid for p in parts for uid in p.ids]
        self._part_of = np.repeat(np.arange(len(parts)), [p.n for p in parts])
        self._local = np.concatenate([np.arange(p.n) for p in parts])
        self._index = {uid: i for i, uid in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            seen = set()
            dup = next(uid for uid in self._ids if uid in seen or seen.add(uid))
            raise CKAProbeError(f"{self.path}: utterance id {dup!r} occurs more than once")

    # -- description -------------------------------------------------------
    @property
    def attrs(self) -> dict:
        """Provenance: arch, tasks, language, checkpoint, checkpoint_sha256, config, ..."""
        attrs = copy.deepcopy(self._parts[0].attrs)
        attrs["n_utterances"] = len(self._ids)
        if len(self._parts) > 1:
            attrs["shards"] = [str(p.path) for p in self._parts]
        return attrs

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def metadata(self) -> pd.DataFrame:
        """Per-utterance metadata fields, index = ids."""
        columns = {}
        for name in self._parts[0].file["utterances"]:
            if name != "ids":
                values = [self._column(p, name) for p in self._parts]
                columns[name] = np.concatenate(values)
        return pd.DataFrame(columns, index=pd.Index(self._ids, name="id"))

    @staticmethod
    def _column(part: _Part, name: str) -> np.ndarray:
        ds = part.file["utterances"][name]
        return (ds.asstr() if ds.dtype.kind == "O" else ds)[: part.n]

    def streams(self) -> list[str]:
        return list(self._parts[0].layout)

    def layers(self, stream: str) -> list[str]:
        """Layer names of ``stream`` in model order."""
        layout = self._parts[0].layout
        if stream not in layout:
            raise CKAProbeError(f"{self.path}: no stream {stream!r} (streams: {', '.join(self.streams())})")
        return list(layout[stream])

    def dim(self, stream: str, layer: str) -> int:
        return int(self._parts[0].file[self._group(stream, layer)]["data"].shape[1])

    def _group(self, stream: str, layer: str) -> str:
        if layer not in self.layers(stream):
            raise CKAProbeError(f"{self.path}: stream {stream!r} has no layer {layer!r}")
        return layer_group(stream, layer)

    # -- selection ---------------------------------------------------------
    def _indices(self, ids: Sequence[str] | None) -> np.ndarray:
        if ids is None:
            return np.arange(len(self._ids))
        missing = [uid for uid in ids if uid not in self._index]
        if missing:
            raise CKAProbeError(
                f"{self.path}: no utterance {missing[0]!r} ({len(missing)} ids not in the store)"
            )
        return np.fromiter((self._index[uid] for uid in ids), np.int64, len(ids))

    def row_counts(self, stream: str, layer: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Valid rows per utterance, ``(N,)`` int64."""
        starts, stops = self._row_ranges(self._group(stream, layer), self._indices(ids))[1:]
        return stops - starts

    def _row_ranges(self, group: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For global utterance indices: (part, first row, end row) per utterance."""
        parts, local = self._part_of[idx], self._local[idx]
        starts, stops = np.empty(len(idx), np.int64), np.empty(len(idx), np.int64)
        for p, part in enumerate(self._parts):
            sel = parts == p
            offsets = part.offsets[group]
            starts[sel], stops[sel] = offsets[local[sel]], offsets[local[sel] + 1]
        return parts, starts, stops

    def _read_ranges(
        self, stream: str, layer: str, idx: np.ndarray, max_rows: int, dataset: str = "data"
    ) -> Iterator[np.ndarray]:
        """Rows of ``dataset`` for the utterances ``idx`` in order, adjacent ranges merged, ``max_rows`` at
        most per read; ``data`` rows are checked to be finite."""
        group = self._group(stream, layer)
        parts, starts, stops = self._row_ranges(group, idx)
        new_run = np.ones(len(idx), bool)
        new_run[1:] = (parts[1:] != parts[:-1]) | (starts[1:] != stops[:-1])
        firsts = np.flatnonzero(new_run)
        lasts = np.append(firsts[1:], len(idx)) - 1
        for first, last in zip(firsts, lasts):
            part = self._parts[parts[first]]
            for lo in range(starts[first], stops[last], max_rows):
                rows = part.read(f"{group}/{dataset}", slice(lo, min(lo + max_rows, stops[last])))
                if dataset == "data":
                    bad = _first_nonfinite(rows)
                    if bad is not None:
                        utterance = np.searchsorted(part.offsets[group], lo + bad, side="right") - 1
                        raise self._nonfinite(stream, layer, part.ids[utterance])
                yield rows

    def _nonfinite(self, stream: str, layer: str, uid: str) -> CKAProbeError:
        return CKAProbeError(
            f"{self.path}: layer {layer!r} of stream {stream!r} has non-finite values (utterance {uid}); "
            "re-extract it"
        )

    # -- arrays ------------------------------------------------------------
    def means(self, stream: str, layer: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Per-utterance means ``(N, D)`` float32 (computed in float64 at extraction), checked to be
        finite."""
        group = self._group(stream, layer)
        reads = []
        for part in self._parts:
            mean = part.read(f"{group}/mean", slice(0, part.n))  # (n, D)
            bad = _first_nonfinite(mean)
            if bad is not None:
                raise self._nonfinite(stream, layer, part.ids[bad])
            reads.append(mean)
        whole = reads[0] if len(reads) == 1 else np.concatenate(reads)  # (N, D) in store order
        return whole if ids is None else whole[self._indices(ids)]

    def frames(
        self, stream: str, layer: str, ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """All valid rows ``(rows, D)`` of the utterances and their ``(N+1,)`` offsets."""
        counts = self.row_counts(stream, layer, ids)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        pieces = list(self._read_ranges(stream, layer, self._indices(ids), max_rows=1 << 30))
        rows = np.concatenate(pieces) if pieces else np.empty((0, self.dim(stream, layer)), np.float32)
        return rows, offsets

    def has_tokens(self, stream: str, layer: str) -> bool:
        """Whether the layer's rows carry input token ids (decoder streams)."""
        return f"{self._group(stream, layer)}/tokens" in self._parts[0].file

    def tokens(
        self, stream: str, layer: str, ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The input token id of every row of :meth:`frames` ``(rows,)`` int64, and the ``(N+1,)`` offsets."""
        if not self.has_tokens(stream, layer):
            raise CKAProbeError(
                f"{self.path}: layer {layer!r} of stream {stream!r} has no token ids "
                "(only decoder streams have them)"
            )
        offsets = np.concatenate([[0], np.cumsum(self.row_counts(stream, layer, ids))])
        pieces = list(self._read_ranges(stream, layer, self._indices(ids), 1 << 30, "tokens"))
        return (np.concatenate(pieces) if pieces else np.empty(0, np.int64)).astype(np.int64), offsets

    def iter_frames(
        self, stream: str, layer: str, ids: Sequence[str] | None = None, chunk_rows: int = 65536
    ) -> Iterator[np.ndarray]:
        """The rows of :meth:`frames` in chunks of exactly ``chunk_rows`` (the last may be shorter)."""
        buffer, size = [], 0
        for piece in self._read_ranges(stream, layer, self._indices(ids), chunk_rows):
            buffer.append(piece)
            size += len(piece)
            while size >= chunk_rows:
                block = np.concatenate(buffer)
                yield block[:chunk_rows]
                buffer, size = [block[chunk_rows:]], size - chunk_rows
        if size:
            yield np.concatenate(buffer)

    # -- lifetime ----------------------------------------------------------
    def close(self) -> None:
        for part in self._parts:
            part.file.close()

    def __enter__(self) -> ActivationStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ActivationStore({self.path!s}, {len(self._ids)} utterances, streams={self.streams()})"


def _first_nonfinite(values: np.ndarray) -> int | None:
    """The index of the first row ``(rows, D)`` that holds a NaN or an infinity, None if all are finite."""
    finite = np.isfinite(values).all(axis=1)
    return None if finite.all() else int(np.argmin(finite))


def _check_shards(parts: list[_Part]) -> None:
    first = parts[0]
    for part in parts[1:]:
        for key in SHARD_KEYS:
            if part.attrs.get(key) != first.attrs.get(key):
                raise CKAProbeError(f"{part.path}: {key} differs from {first.path}; not shards of one store")
        for stream in first.layout:
            if part.layout.get(stream) != first.layout[stream]:
                raise CKAProbeError(f"{part.path}: layers of {stream} differ from {first.path}")


def align_ids(a: ActivationStore, b: ActivationStore) -> list[str]:
    """Utterance ids present in both stores, in ``a``'s order.

    Warns with the number of ids dropped from each; raises if none match.
    """
    in_b = set(b.ids)
    common = [uid for uid in a.ids if uid in in_b]
    if not common:
        raise CKAProbeError(f"{a.path} and {b.path} share no utterance ids")
    dropped_a, dropped_b = len(a.ids) - len(common), len(in_b) - len(common)
    if dropped_a or dropped_b:
        warnings.warn(
            f"aligning {a.path} with {b.path} by utterance id: {len(common)} in common, dropped "
            f"{dropped_a} only in the first and {dropped_b} only in the second",
            stacklevel=2,
        )
    return common
