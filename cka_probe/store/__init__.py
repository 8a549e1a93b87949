"""The HDF5 activation store (docs/design.md, "The activation store").

``StoreWriter`` appends utterances batch by batch and survives being killed;
``ActivationStore`` reads one store (or the rank shards of one extraction);
``align_ids`` matches two stores by utterance id; ``merge_stores`` joins shards;
``describe`` summarises a store for ``cka-probe info``.
"""

from cka_probe.store.describe import describe
from cka_probe.store.merge import merge_stores
from cka_probe.store.reader import ActivationStore, align_ids
from cka_probe.store.schema import FORMAT, SCHEMA_VERSION, partial_path
from cka_probe.store.writer import StoreWriter, utterance_means

__all__ = [
    "ActivationStore",
    "StoreWriter",
    "align_ids",
    "describe",
    "merge_stores",
    "partial_path",
    "utterance_means",
    "FORMAT",
    "SCHEMA_VERSION",
]
