"""Read activation stores: one file, or the rank shards of one extraction as one store.

Every array comes back as stored (``data`` float32 or float16, ``mean``
float32); consumers cast to float64 where precision matters. Rows are read
range by range, so :meth:`ActivationStore.iter_frames` never holds a whole
layer in memory.
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
from cka_probe.store.schema import FORMAT, SCHEMA_VERSION, decode_attrs, layer_group, partial_path

SHARD_KEYS = ("format", "schema_version", "streams", "dtype", "checkpoint_sha256", "config", "arch", "tasks")
"""Attributes that every shard of one store must share."""


@dataclass
class _Part:
    """One HDF5 file of a store: its root attributes and stream -> layers, decoded once
    (JSON attributes are slow to parse per call); ``offsets`` caches each layer's offsets."""

    path: Path
    file: h5py.File
    n: int
    attrs: dict
    layout: dict[str, list[str]]
    offsets: dict[str, np.ndarray] = field(default_factory=dict)

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
    path = _resolve(Path(path), allow_incomplete)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CKAProbeError(
            f"{path}: not a readable HDF5 file, truncated or corrupt ({' '.join(str(err).split())})"
        ) from None
    attrs = decode_attrs(f.attrs)
    if attrs.get("format") != FORMAT:
        f.close()
        raise CKAProbeError(f"{path}: not a cka-probe activation store (no format={FORMAT!r} attribute)")
    if int(attrs.get("schema_version", 0)) > SCHEMA_VERSION:
        f.close()
        raise CKAProbeError(
            f"{path}: schema version {attrs['schema_version']} is newer than this "
            f"cka-probe reads ({SCHEMA_VERSION}); upgrade cka-probe"
        )
    if not attrs.get("complete") and not allow_incomplete:
        f.close()
        raise CKAProbeError(
            f"{path}: incomplete store ({attrs.get('n_utterances')} utterances written "
            "before the extraction stopped); rerun cka-probe extract to resume"
        )
    layout = {stream: decode_attrs(f[stream].attrs)["layers"] for stream in attrs["streams"]}
    part = _Part(path, f, int(attrs["n_utterances"]), attrs, layout)
    _check_structure(part, exact=bool(attrs.get("complete")))
    return part


def _check_structure(part: _Part, exact: bool) -> None:
    """Shapes agree with ``n_utterances`` (exactly in a complete store)."""
    n, f = part.n, part.file

    def check(name: str, rows: int) -> None:
        dataset = f.get(name)
        if dataset is None:
            raise CKAProbeError(f"{part.path}: damaged store, {name} is missing")
        have = dataset.shape[0]
        if have < rows or (exact and have != rows):
            raise CKAProbeError(f"{part.path}: damaged store, {name} has {have} rows, expected {rows}")

    check("utterances/ids", n)
    for stream, layers in part.layout.items():
        for layer in layers:
            g = layer_group(stream, layer)
            check(f"{g}/offsets", n + 1)
            check(f"{g}/mean", n)
            check(f"{g}/data", int(part.read(f"{g}/offsets", n)))
            if f"{g}/tokens" in f:
                check(f"{g}/tokens", int(part.read(f"{g}/offsets", n)))


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
        self._ids = [i for p in parts for i in p.file["utterances/ids"].asstr()[: p.n]]
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

    def _offsets(self, part: _Part, group: str) -> np.ndarray:
        if group not in part.offsets:
            part.offsets[group] = part.read(f"{group}/offsets", slice(0, part.n + 1)).astype(np.int64)
        return part.offsets[group]

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
            offsets = self._offsets(part, group)
            starts[sel], stops[sel] = offsets[local[sel]], offsets[local[sel] + 1]
        return parts, starts, stops

    def _read_ranges(
        self, group: str, idx: np.ndarray, max_rows: int, dataset: str = "data"
    ) -> Iterator[np.ndarray]:
        """Rows of ``dataset`` for the utterances ``idx`` in order, adjacent ranges merged, ``max_rows`` at
        most per read."""
        parts, starts, stops = self._row_ranges(group, idx)
        new_run = np.ones(len(idx), bool)
        new_run[1:] = (parts[1:] != parts[:-1]) | (starts[1:] != stops[:-1])
        firsts = np.flatnonzero(new_run)
        lasts = np.append(firsts[1:], len(idx)) - 1
        for first, last in zip(firsts, lasts):
            part = self._parts[parts[first]]
            for lo in range(starts[first], stops[last], max_rows):
                yield part.read(f"{group}/{dataset}", slice(lo, min(lo + max_rows, stops[last])))

    # -- arrays ------------------------------------------------------------
    def means(self, stream: str, layer: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """Per-utterance means ``(N, D)`` float32 (computed in float64 at extraction)."""
        group = self._group(stream, layer)
        reads = [part.read(f"{group}/mean", slice(0, part.n)) for part in self._parts]
        whole = reads[0] if len(reads) == 1 else np.concatenate(reads)  # (N, D) in store order
        return whole if ids is None else whole[self._indices(ids)]

    def frames(
        self, stream: str, layer: str, ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """All valid rows ``(rows, D)`` of the utterances and their ``(N+1,)`` offsets."""
        counts = self.row_counts(stream, layer, ids)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        group, idx = self._group(stream, layer), self._indices(ids)
        pieces = list(self._read_ranges(group, idx, max_rows=1 << 30))
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
        pieces = list(self._read_ranges(self._group(stream, layer), self._indices(ids), 1 << 30, "tokens"))
        return (np.concatenate(pieces) if pieces else np.empty(0, np.int64)).astype(np.int64), offsets

    def iter_frames(
        self, stream: str, layer: str, ids: Sequence[str] | None = None, chunk_rows: int = 65536
    ) -> Iterator[np.ndarray]:
        """The rows of :meth:`frames` in chunks of exactly ``chunk_rows`` (the last may be shorter)."""
        buffer, size = [], 0
        for piece in self._read_ranges(self._group(stream, layer), self._indices(ids), chunk_rows):
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
