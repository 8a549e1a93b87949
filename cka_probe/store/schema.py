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

Dtype policy: ``data`` is float32 (default) or float16; ``mean`` is always
computed in float64 from the full-precision rows, before any float16 cast,
and stored as float32. Lists and dicts among the root attributes are stored
as JSON strings; their names are listed in the ``json_attrs`` attribute so
that a plain h5py reader can decode them.
"""

from __future__ import annotations

import json
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
)
"""Root attributes of the file's format, progress and storage settings; the others are provenance."""
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


def decode_attrs(raw) -> dict:
    """Inverse of :func:`encode_attrs` over an h5py ``AttributeManager``."""
    json_keys = set(json.loads(raw.get("json_attrs", "[]")))
    decoded = {}
    for key, value in raw.items():
        if key == "json_attrs":
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, np.generic):
            value = value.item()
        decoded[key] = json.loads(value) if key in json_keys else value
    return decoded
