"""Append utterances to an activation store batch by batch, resumably.

Crash safety (a run killed at any moment, SIGKILL included, resumes from the
last finished batch and ends with the same arrays as an uninterrupted run):

1. the store is written to ``<out>.partial`` and renamed to ``<out>`` only
   when complete, so ``<out>`` never holds half-written output;
2. each batch writes its rows, flushes, then records ``n_utterances`` and
   ``n_batches`` in the root attributes and flushes again (the commit);
3. resuming truncates every dataset back to the committed counts and goes on
   with the next batch; every write starts at a committed position, so
   whatever a killed batch had written is dropped or overwritten.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import h5py
import numpy as np

from cka_probe.errors import CKAProbeError
from cka_probe.store.schema import (
    COMPRESSIONS,
    FORMAT,
    LIBVER,
    SCHEMA_VERSION,
    check_dtype,
    chunk_rows,
    decode_attrs,
    encode_attrs,
    layer_group,
    partial_path,
)

LayerKey = tuple[str, str]
"""``(stream, layer)``, e.g. ``("encoder", "encoder.layers.3")``."""


def utterance_means(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-utterance mean of concatenated rows, in float64: ``(rows, D) -> (B, D)``."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.add.reduceat(rows.astype(np.float64), starts, axis=0) / lengths[:, None]


def _versions() -> dict:
    from cka_probe import __version__

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


def _grow(ds: h5py.Dataset, at: int, values: np.ndarray) -> None:
    """Write ``values`` at row ``at`` and make it the dataset's end."""
    ds.resize(at + len(values), axis=0)
    ds[at:] = values


class StoreWriter:
    """Writes one store (DESIGN.md schema); resumes an interrupted ``.partial`` file.

    ``attrs`` is the provenance (checkpoint sha256, config, arch, tasks, ...);
    a resumed run must pass the same attrs, dtype and compression.
    Use as a context manager and call :meth:`finish` at the end.
    """

    def __init__(self, path: str | Path, *, attrs: Mapping | None = None, dtype: str = "float32",
                 compression: str | None = None, overwrite: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.dtype = check_dtype(dtype)
        if compression not in COMPRESSIONS:
            raise CKAProbeError(f"compression must be gzip, lzf or none, not {compression!r}")
        self.compression = compression
        if self.path.exists() and not overwrite:
            raise CKAProbeError(f"{self.path}: already exists; pass --overwrite to replace it")
        if overwrite and self.partial.exists():
            self.partial.unlink()
        run_attrs = {**(attrs or {}), "dtype": self.dtype.name, "compression": compression or ""}
        self._run_attrs = decode_attrs(encode_attrs(run_attrs))
        self._file = self._resume() or self._create()
        self._layers = self._stored_layers()

    # -- opening ---------------------------------------------------------
    def _create(self) -> h5py.File:
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.partial, "w", libver=LIBVER)
        f.attrs.update(encode_attrs({
            **self._run_attrs, **_versions(),
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "complete": False,
            "n_utterances": 0, "n_batches": 0, "streams": [],
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }))
        f.create_dataset("utterances/ids", shape=(0,), maxshape=(None,), chunks=(4096,),
                         dtype=h5py.string_dtype("utf-8"))
        return f

    def _resume(self) -> h5py.File | None:
        """Open and truncate an interrupted run, or None to start afresh."""
        if not self.partial.exists():
            return None
        try:
            f = h5py.File(self.partial, "r+", libver=LIBVER)
        except OSError as err:
            warnings.warn(f"{self.partial}: unreadable ({err}); starting the extraction again", stacklevel=3)
            self.partial.unlink()
            return None
        if f.attrs.get("format") != FORMAT or int(f.attrs.get("n_batches", 0)) == 0:
            f.close()
            self.partial.unlink()
            return None
        self._check_settings(decode_attrs(f.attrs), f)
        self._truncate(f, int(f.attrs["n_utterances"]))
        return f

    def _check_settings(self, stored: dict, f: h5py.File) -> None:
        for key, value in self._run_attrs.items():
            if stored.get(key) != value:
                f.close()
                raise CKAProbeError(
                    f"{self.partial}: an interrupted extraction with other settings "
                    f"({key}: {stored.get(key)!r} there, {value!r} now); pass --overwrite to start again")

    @staticmethod
    def _truncate(f: h5py.File, n: int) -> None:
        """Drop everything written after the last commit (``n`` utterances)."""
        for ds in f["utterances"].values():
            ds.resize(n, axis=0)
        for stream in decode_attrs(f.attrs)["streams"]:
            for layer in decode_attrs(f[stream].attrs)["layers"]:
                g = f[layer_group(stream, layer)]
                g["offsets"].resize(n + 1, axis=0)
                g["data"].resize(int(g["offsets"][n]), axis=0)
                g["mean"].resize(n, axis=0)
        f.flush()

    def _stored_layers(self) -> list[LayerKey]:
        keys = []
        for stream in decode_attrs(self._file.attrs)["streams"]:
            keys += [(stream, layer) for layer in decode_attrs(self._file[stream].attrs)["layers"]]
        return keys

    # -- state -------------------------------------------------------------
    @property
    def n_utterances(self) -> int:
        return int(self._file.attrs["n_utterances"])

    @property
    def n_batches(self) -> int:
        """Batches committed so far (those a resumed run skips)."""
        return int(self._file.attrs["n_batches"])

    @property
    def ids(self) -> list[str]:
        return list(self._file["utterances/ids"].asstr()[:])

    # -- writing -----------------------------------------------------------
    def _create_layers(self, acts: Mapping[LayerKey, tuple[np.ndarray, np.ndarray]]) -> None:
        streams: dict[str, list[str]] = {}
        for (stream, layer), (rows, _) in acts.items():
            streams.setdefault(stream, []).append(layer)
            self._create_layer(layer_group(stream, layer), rows.shape[1])
        for stream, layers in streams.items():
            self._file[stream].attrs.update(encode_attrs({"layers": layers}))
        self._file.attrs["streams"] = json.dumps(list(streams))
        self._layers = list(acts)

    def _create_layer(self, group: str, dim: int) -> None:
        filters = {"compression": self.compression, "fletcher32": True,
                   "shuffle": self.compression is not None}
        g = self._file.create_group(group)
        g.create_dataset("data", shape=(0, dim), maxshape=(None, dim), dtype=self.dtype,
                         chunks=(chunk_rows(dim, self.dtype.itemsize), dim), **filters)
        g.create_dataset("mean", shape=(0, dim), maxshape=(None, dim), dtype=np.float32,
                         chunks=(chunk_rows(dim, 4), dim), **filters)
        g.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(16384,))

    def append(self, ids: Sequence[str], acts: Mapping[LayerKey, tuple[np.ndarray, np.ndarray]],
               metadata: Mapping[str, Sequence] | None = None,
               means: Mapping[LayerKey, np.ndarray] | None = None) -> None:
        """Add one batch and commit it.

        ``acts[(stream, layer)] = (rows (sum(lengths), D), lengths (B,))``: the
        valid rows of the batch's utterances, concatenated in ``ids`` order.
        ``means`` (``(B, D)`` per layer) is given only when copying a store;
        otherwise they are computed here in float64 before any float16 cast.
        """
        if not self._layers:
            self._create_layers(acts)
        if set(acts) != set(self._layers):
            raise CKAProbeError(f"{self.path}: batch {self.n_batches} has layers "
                                f"{sorted(set(acts) ^ set(self._layers))} that differ from the first batch")
        n0 = self.n_utterances
        self._append_columns(n0, {"ids": list(ids), **(metadata or {})})
        for key, (rows, lengths) in acts.items():
            rows, lengths = np.asarray(rows), np.asarray(lengths, np.int64)
            self._append_layer(key, n0, list(ids), rows, lengths)
            mean = utterance_means(rows, lengths) if means is None else means[key]
            _grow(self._file[layer_group(*key)]["mean"], n0, mean.astype(np.float32))
        self._commit(n0 + len(ids))

    def _append_columns(self, n0: int, columns: Mapping[str, Sequence]) -> None:
        group = self._file["utterances"]
        if n0 == 0:
            for name, values in columns.items():
                if name not in group:
                    group.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(4096,),
                                         dtype=_column_dtype(values))
        if set(columns) != set(group):
            raise CKAProbeError(f"{self.path}: batch {self.n_batches} has metadata fields "
                                f"{sorted(columns)}, the store has {sorted(group)}")
        for name, values in columns.items():
            if len(values) != len(columns["ids"]):
                raise CKAProbeError(f"{self.path}: metadata field {name!r} has {len(values)} values "
                                    f"for {len(columns['ids'])} utterances")
            column = np.asarray(values, dtype=object if group[name].dtype.kind == "O" else group[name].dtype)
            _grow(group[name], n0, column)

    def _append_layer(self, key: LayerKey, n0: int, ids: list[str], rows: np.ndarray,
                      lengths: np.ndarray) -> None:
        name = layer_group(*key)
        g = self._file[name]
        if lengths.shape != (len(ids),) or rows.ndim != 2 or rows.shape[0] != lengths.sum():
            raise CKAProbeError(f"{self.path}: layer {name}: {rows.shape} rows do not match "
                                f"lengths {lengths.tolist()} of {len(ids)} utterances")
        if rows.shape[1] != g["data"].shape[1]:
            raise CKAProbeError(f"{self.path}: layer {name} has width {rows.shape[1]} in batch "
                                f"{self.n_batches}, {g['data'].shape[1]} before")
        if (lengths < 1).any():
            raise CKAProbeError(f"{self.path}: utterance {ids[int(np.argmin(lengths))]} has no rows in layer {name}")
        start = int(g["offsets"][n0])
        _grow(g["offsets"], n0 + 1, start + np.cumsum(lengths))
        _grow(g["data"], start, rows.astype(self.dtype))

    def _commit(self, n_utterances: int) -> None:
        self._file.flush()
        self._file.attrs["n_utterances"] = n_utterances
        self._file.attrs["n_batches"] = self.n_batches + 1
        self._file.flush()

    # -- ending ------------------------------------------------------------
    def finish(self) -> Path:
        """Mark the store complete and move it to its final path."""
        if self.n_utterances == 0:
            self.close()
            raise CKAProbeError(f"{self.path}: no utterances were written")
        self._file.attrs["complete"] = True
        self.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing: the ``.partial`` file stays for a resume."""
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
