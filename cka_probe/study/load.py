"""Reading the cross-task set from activation stores: roles, alignment by utterance id, means.

A store's root attributes name its role (``arch``, ``tasks``) and language;
the three stores of a language are aligned by utterance id (never by
position) and each layer is read as its per-utterance means (N, D).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from cka_probe.compare.provenance import check_same_utterances
from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore, align_ids
from cka_probe.study.roles import ROLE_STREAMS, assign_roles, is_variant


def store_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Store files from files and folders (a folder contributes every ``*.h5`` below it)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.rglob("*.h5")))
        elif path.exists():
            found.append(path)
        else:
            raise CKAProbeError(f"{path}: no such store or folder")
    if not found:
        raise CKAProbeError(f"no .h5 stores in {', '.join(map(str, paths))}")
    return found


def common_ids(stores: Sequence[ActivationStore], *, allow_different_manifests: bool = False) -> list[str]:
    """Utterance ids present in every store, in the first store's order.

    Each store must hold the same utterances under those ids as the first
    (:func:`~cka_probe.compare.provenance.check_same_utterances`), unless
    ``allow_different_manifests``.
    """
    ids = stores[0].ids
    for other in stores[1:]:
        shared = set(align_ids(stores[0], other))
        ids = [uid for uid in ids if uid in shared]
    if not ids:
        raise CKAProbeError(f"the stores {[str(s.path) for s in stores]} share no utterance ids")
    for other in stores[1:]:
        check_same_utterances(stores[0], other, ids, allow_different_manifests=allow_different_manifests)
    return ids


def _layers(store: ActivationStore, stream: str, ids: list[str]) -> dict[str, np.ndarray]:
    """{layer: (N, D) float64 means} of one stream, in model order."""
    if stream not in store.streams():
        raise CKAProbeError(f"{store.path}: no stream {stream!r} (has {store.streams()})")
    return {layer: store.means(stream, layer, ids).astype(np.float64) for layer in store.layers(stream)}


def streams_of(role: str, store: ActivationStore) -> tuple[str, ...]:
    """The streams the comparison set reads: the role's (:data:`ROLE_STREAMS`), every stream of a variant's
    store."""
    return tuple(store.streams()) if is_variant(role) else ROLE_STREAMS[role]


def load_representations(
    paths: Sequence[str | Path], *, allow_different_manifests: bool = False
) -> dict[str, dict]:
    """``{language: {role: [{stream: {layer: (N, D)}} per seed replicate]}}`` from stores (or folders of
    stores).

    Roles as :func:`~cka_probe.study.roles.assign_roles` gives them; every
    store of a language is read on the utterances that all of them share,
    which must be the same utterances in each (:func:`common_ids`).
    """
    files = store_paths(paths)
    out = {}
    with ExitStack() as stack:
        stores = {str(p): stack.enter_context(ActivationStore(p)) for p in files}
        by_language = assign_roles({source: store.attrs for source, store in stores.items()})
        for language, roles in by_language.items():
            language_stores = [stores[source] for sources in roles.values() for source in sources]
            ids = common_ids(language_stores, allow_different_manifests=allow_different_manifests)
            out[language] = {
                role: [
                    {
                        stream: _layers(stores[source], stream, ids)
                        for stream in streams_of(role, stores[source])
                    }
                    for source in sources
                ]
                for role, sources in roles.items()
            }
    return out
