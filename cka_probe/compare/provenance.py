"""Whether two stores aligned by utterance id hold the same utterances under those ids.

Ids are only names: three data sets that all number ``utt0001, utt0002, ...``
align perfectly and compare as nonsense. Two stores are compared by id only
when their provenance shows that the ids name the same utterances:

* both record one manifest (the root attribute ``manifest_sha256``), or
* both record each utterance's audio (the column ``utterances/source``: the
  resolved audio path, ``#START-END`` for a segment) and it agrees on every
  shared id, or
* neither records any of it (a store written by hand with ``StoreWriter``),
  so there is nothing to check.

Anything else is refused, unless the caller passes
``allow_different_manifests=True`` (``--allow-different-manifests``), which
is then warned about and recorded in the output.
"""

from __future__ import annotations

import warnings

from cka_probe.errors import CKAProbeError
from cka_probe.store import ActivationStore

SAME_MANIFEST, SAME_AUDIO, UNRECORDED = "same manifest", "same audio", "not recorded"
"""The verdicts of :func:`check_same_utterances` when the stores may be compared."""

ALLOW_HINT = (
    "compare stores of one manifest, or pass --allow-different-manifests if the ids name the same utterances"
)


def manifest_sha256(store: ActivationStore) -> str | None:
    """The sha256 of the manifest ``store`` was extracted from, None when it records none."""
    return store.attrs.get("manifest_sha256") or None


def audio_sources(store: ActivationStore) -> dict[str, str] | None:
    """``{utterance id: audio source}`` of ``store``, None when it has no ``utterances/source`` column."""
    metadata = store.metadata
    if "source" not in metadata.columns:
        return None
    return dict(zip(metadata.index, metadata["source"].astype(str)))


def _short(sha: str | None) -> str:
    return f"{sha[:6]}…" if sha else "none recorded"


def _differing_source(
    ids: list[str], sources_a: dict[str, str], sources_b: dict[str, str]
) -> tuple[str, str, str] | None:
    """``(id, source in a, source in b)`` of the first shared id whose audio differs, None if none does."""
    for uid in ids:
        if sources_a[uid] != sources_b[uid]:
            return uid, sources_a[uid], sources_b[uid]
    return None


def conflict(a: ActivationStore, b: ActivationStore, ids: list[str]) -> tuple[str, str | None]:
    """``(verdict, reason)``: the verdict when ``ids`` provably name the same utterances in both stores
    (reason None), else the reason they may not, naming both files and an example id."""
    sha_a, sha_b = manifest_sha256(a), manifest_sha256(b)
    if sha_a and sha_a == sha_b:
        return SAME_MANIFEST, None
    sources_a, sources_b = audio_sources(a), audio_sources(b)
    if sources_a is None and sources_b is None and not sha_a and not sha_b:
        return UNRECORDED, None
    shas = f"sha256 {_short(sha_a)} and {_short(sha_b)}"
    manifests = f"{a.path} and {b.path} come from different manifests ({shas})"
    if sources_a is None or sources_b is None:
        lacking = [store.path for store, sources in ((a, sources_a), (b, sources_b)) if sources is None]
        who = f"{lacking[0]} does not record" if len(lacking) == 1 else "neither records"
        return "", (
            f"{manifests} and {who} the audio of each utterance (extracted by an older cka-probe), "
            f"so what id {ids[0]} names cannot be checked"
        )
    differing = _differing_source(ids, sources_a, sources_b)
    if differing is None:
        return SAME_AUDIO, None
    uid, source_a, source_b = differing
    return "", f"{manifests} and id {uid} names different audio there ({source_a}, {source_b})"


def check_same_utterances(
    a: ActivationStore, b: ActivationStore, ids: list[str], *, allow_different_manifests: bool = False
) -> str:
    """Refuse to compare ``a`` and ``b`` on ``ids`` unless their provenance shows the same utterances.

    Returns the verdict (:data:`SAME_MANIFEST`, :data:`SAME_AUDIO`, :data:`UNRECORDED`), or, where
    ``allow_different_manifests`` lets a difference through, ``"allowed: REASON"`` after a warning.
    """
    verdict, reason = conflict(a, b, ids)
    if reason is None:
        return verdict
    if not allow_different_manifests:
        raise CKAProbeError(f"{reason}; {ALLOW_HINT}")
    warnings.warn(f"{reason}; compared anyway, as --allow-different-manifests asks", stacklevel=2)
    return f"allowed: {reason}"


def manifest_record(store: ActivationStore) -> dict[str, str | None]:
    """The manifest ``store`` was extracted from and its sha256 (None where not recorded)."""
    return {"manifest": store.attrs.get("manifest"), "manifest_sha256": manifest_sha256(store)}
