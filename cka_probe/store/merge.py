"""Merge the rank shards of one extraction into a single store file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cka_probe.store.reader import ActivationStore
from cka_probe.store.schema import LAYOUT_ATTRS
from cka_probe.store.writer import StoreWriter

WRITER_KEYS = (*LAYOUT_ATTRS, "created", "shard", "shards")
"""Attributes the writer sets itself (or that belong to one shard only)."""


def merge_stores(
    paths: Sequence[str | Path], out: str | Path, *, overwrite: bool = False, block: int = 256
) -> Path:
    """Copy the shards ``paths`` (in order) into one store ``out``, arrays unchanged.

    An interrupted merge resumes after its last committed block.
    """
    with ActivationStore.open_many(paths) as shards:
        attrs = {k: v for k, v in shards.attrs.items() if k not in WRITER_KEYS and not k.endswith("_version")}
        layers = [(s, layer) for s in shards.streams() for layer in shards.layers(s)]
        token_layers = {
            s: shards.layers(s)[0] for s in shards.streams() if shards.has_tokens(s, shards.layers(s)[0])
        }
        metadata = shards.metadata
        with StoreWriter(
            out,
            attrs=attrs,
            dtype=shards.attrs["dtype"],
            compression=shards.attrs["compression"] or None,
            overwrite=overwrite,
            keep_complete=True,
        ) as writer:
            if writer.done:  # a merge killed after it had finished, before it removed the shards
                return writer.path
            for lo in range(writer.n_utterances, len(shards.ids), block):
                ids = shards.ids[lo : lo + block]
                acts = {key: (shards.frames(*key, ids)[0], shards.row_counts(*key, ids)) for key in layers}
                means = {key: shards.means(*key, ids) for key in layers}
                tokens = {s: shards.tokens(s, layer, ids)[0] for s, layer in token_layers.items()}
                writer.append(
                    ids,
                    acts,
                    metadata={c: metadata[c].iloc[lo : lo + block].tolist() for c in metadata},
                    means=means,
                    tokens=tokens,
                )
            return writer.finish()
