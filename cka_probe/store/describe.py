"""A plain-text summary of a store for ``cka-probe info``."""

from __future__ import annotations

import json
from pathlib import Path

from cka_probe.store.reader import ActivationStore
from cka_probe.store.schema import LAYOUT_ATTRS


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def describe(path: str | Path) -> str:
    """Streams, layers, shapes, dtype, utterances, provenance, and whether it is complete.

    An interrupted extraction (``<path>.partial``) is described too, as incomplete.
    """
    with ActivationStore(path, allow_incomplete=True) as store:
        attrs = store.attrs
        state = "complete" if attrs["complete"] else f"INCOMPLETE ({attrs['n_batches']} batches written)"
        lines = [
            f"{store.path}: {state}, {len(store.ids)} utterances, schema {attrs['schema_version']}, "
            f"data {attrs['dtype']}, compression {attrs['compression'] or 'none'}"
        ]
        lines.append("metadata: " + (", ".join(store.metadata.columns) or "none"))
        lines.append("provenance:")
        lines += [
            f"  {key}: {_value(value)}" for key, value in sorted(attrs.items()) if key not in LAYOUT_ATTRS
        ]
        for stream in store.streams():
            lines.append(f"stream {stream}: {len(store.layers(stream))} layers")
            for layer in store.layers(stream):
                rows = int(store.row_counts(stream, layer).sum())
                lines.append(f"  {layer:<40} rows {rows:>9}  dim {store.dim(stream, layer):>5}")
        return "\n".join(lines)
