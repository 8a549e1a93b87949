"""The HDF5 layout of an activation store (docs/design.md, "The activation store").

::

    /                          attrs: format, schema_version, complete, n_utterances,
                                      n_batches, streams, dtype, provenance ...
    /utterances/ids            (N,) utf-8, in extraction order
    /utterances/<field>        (N,) per-utterance metadata
    /<stream>/<layer>/data     (rows, D) valid rows of all utterances, concatenated
    /<stream>/<layer>/offsets  (N+1,) int64: utterance i is data[offsets[i]:offsets[i+1]]
    /<stream>/<layer>/mean     (N, D) float32 per-utterance mean over valid rows
    /<stream>/<layer>/tokens   (rows,) int64, decoder streams: the input token id of each row

Integrity: a finished store records the sha256 of its ids (root attribute
``ids_sha256``) and of each layer's offsets (the layer group's attribute
``offsets_sha256``), which the reader checks when it opens the store; a
store written before these were recorded has neither and is read without
them. Every dataset's rows live in the file itself: the reader refuses
virtual datasets, external links and external raw storage.

Dtype policy: ``data`` is float32 (default) or float16; ``mean`` is always
computed in float64 from the full-precision rows, before any float16 cast,
and stored as float32. Lists and dicts among the root attributes are stored
as JSON strings; their names are listed in the ``json_attrs`` attribute so
that a plain h5py reader can decode them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMAT = "cka-probe activation store"
SCHEMA_VERSION = 1
STORAGE_DTYPES = ("float32", "float16")
COMPRESSIONS = (None, "gzip", "lzf")
CHUNK_BYTES = 1 << 20
LAYOUT_ATTRS = (
    "format",
    "schema_version",
    "complete",
    "n_utterances",
    "n_batches",
    "streams",
    "dtype",
    "compression",
    "ids_sha256",
)
"""Root attributes of the file's format, progress and storage settings; the others are provenance."""
IDS_DIGEST = "ids_sha256"
"""Root attribute of a finished store: :func:`ids_digest` of its utterance ids."""
OFFSETS_DIGEST = "offsets_sha256"
"""Attribute of each layer group of a finished store: :func:`offsets_digest` of its offsets."""
LIBVER = ("v108", "v108")
"""HDF5 1.8 file format: checksummed metadata, and no superblock status flag
that would lock a file whose writer was killed (as the 1.10+ formats do)."""


def partial_path(path: str | Path) -> Path:
    """Where an unfinished store lives until it is complete: ``acts.h5.partial``."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def layer_group(stream: str, layer: str) -> str:
    """HDF5 path of one layer, e.g. ``decoder/surface/decoders.surface.layers.0``."""
    return f"{stream}/{layer}"


def ids_digest(ids: Sequence[str]) -> str:
    """The sha256 (hex) of the utterance ids, in order."""
    return hashlib.sha256(json.dumps(list(ids)).encode("utf-8")).hexdigest()


def offsets_digest(offsets: np.ndarray) -> str:
    """The sha256 (hex) of a layer's ``(N+1,)`` offsets as little-endian int64."""
    return hashlib.sha256(np.asarray(offsets, dtype="<i8").tobytes()).hexdigest()


def chunk_rows(dim: int, itemsize: int) -> int:
    """Rows per chunk so that one ``(rows, D)`` chunk is about 1 MiB."""
    return max(1, CHUNK_BYTES // max(1, dim * itemsize))


def check_dtype(dtype: str) -> np.dtype:
    """The storage dtype for ``data`` (float32 or float16)."""
    from cka_probe.errors import CKAProbeError

    if str(dtype) not in STORAGE_DTYPES:
        raise CKAProbeError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype!r}")
    return np.dtype(str(dtype))


def encode_attrs(attrs: dict) -> dict:
    """Attributes as HDF5 can hold them: lists and dicts become JSON strings."""
    encoded, json_keys = {}, []
    for key, value in attrs.items():
        if isinstance(value, (list, tuple, dict)):
            encoded[key] = json.dumps(value, sort_keys=True)
            json_keys.append(key)
        elif value is None:
            encoded[key] = ""
        else:
            encoded[key] = value
    encoded["json_attrs"] = json.dumps(sorted(json_keys))
    return encoded


def _json(key: str, value) -> object:
    """The JSON attribute ``key`` decoded; ValueError naming it when it is not JSON."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        raise ValueError(f"attribute {key!r} is not valid JSON ({str(value)[:40]!r})") from None


def decode_attrs(raw) -> dict:
    """Inverse of :func:`encode_attrs` over an h5py ``AttributeManager``.

    Raises ValueError naming the attribute when ``json_attrs`` or an attribute it lists is not JSON.
    """
    json_keys = _json("json_attrs", raw.get("json_attrs", "[]"))
    if not isinstance(json_keys, list) or not all(isinstance(k, str) for k in json_keys):
        raise ValueError(f"attribute 'json_attrs' is not a JSON list of names ({str(json_keys)[:40]!r})")
    decoded = {}
    for key, value in raw.items():
        if key == "json_attrs":
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.generic):
            value = value.item()
        decoded[key] = _json(key, value) if key in json_keys else value
    return decoded
