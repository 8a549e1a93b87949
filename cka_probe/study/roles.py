"""Which model is which: the roles SSO, MSO and DO, read from store provenance.

The paper compares three models per language (docs/design.md, "The paper's
comparison set"): SSO and MSO, the single-output models trained on the surface
and the meaning transcripts, and DO, the dual-output model with one shared
encoder and the two decoders SDO (surface) and MDO (meaning). A store records
``arch`` (``so`` | ``do``), ``tasks`` and ``language`` in its root attributes;
a store of any other model (a Hugging Face folder, a Python adapter) records
its role as ``role`` (``cka-probe extract --role sso|mso|do``), which wins.
This module turns those attributes into roles and checks that every language
has at least one model of each role.

Seed replicates: several models of one role (trained with different seeds,
``config.train.seed`` in the provenance) are that role's replicates, in
order of seed; replicate k of SSO, MSO and DO form the k-th comparison set.
A store of a brought model records its replicate as ``replicate`` (``cka-probe
reproduce --model LANG:ROLE#K=MODEL``), which then orders that role's replicates
in place of the seed.
Reference: a store extracted from an untrained checkpoint
(``checkpoint_epoch == 0``) of the SSO architecture is the random-initialisation
floor, role ``rand``, as is a store that records that role (the floor of a
brought SSO model: its architecture with fresh weights, ``extract --random-init``).

Structured variants: a DO store whose provenance records a ``variant`` other
than ``shared`` (``split-2``, ``shared-private``, ``sparse-shared``;
:mod:`cka_probe.asr.variants.spec`) takes the variant's name as its role. Variant
roles are optional; their streams are whatever the store holds (``encoder``,
``encoder/branch/surface``, …, ``decoder/<task>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cka_probe.errors import CKAProbeError

ROLES: tuple[str, ...] = ("sso", "mso", "do")
FLOOR = "rand"

# Streams (docs/design.md: ``encoder`` or ``decoder/<task>``) that each role provides.
ROLE_STREAMS: dict[str, tuple[str, ...]] = {
    "sso": ("encoder", "decoder/surface"),
    "mso": ("encoder", "decoder/meaning"),
    "do": ("encoder", "decoder/surface", "decoder/meaning"),
    FLOOR: ("encoder", "decoder/surface"),
}


def _tasks(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``tasks`` attribute as a tuple, whether stored as a list or a JSON string."""
    tasks = attrs.get("tasks", ())
    if isinstance(tasks, str):
        tasks = json.loads(tasks) if tasks.startswith("[") else [tasks]
    return tuple(str(t) for t in tasks)


def role_of(attrs: Mapping[str, Any], source: str) -> str:
    """The role (``sso`` | ``mso`` | ``do`` | ``rand`` | a variant's name) of a model from its provenance
    attributes.

    ``source`` (a file name) only serves the error message.
    """
    role = str(attrs.get("role") or "")
    if role:
        if role not in (*ROLES, FLOOR):
            raise CKAProbeError(f"{source}: role {role!r} is none of {', '.join((*ROLES, FLOOR))}")
        return role
    arch, tasks = str(attrs.get("arch", "")), _tasks(attrs)
    if arch == "do" and set(tasks) == {"surface", "meaning"}:
        return variant_of(attrs)
    if arch == "so" and tasks in (("surface",), ("meaning",)):
        if int(attrs.get("checkpoint_epoch", -1)) == 0:
            if tasks != ("surface",):
                raise CKAProbeError(
                    f"{source}: an untrained model serves as the floor only with the SSO architecture"
                )
            return FLOOR
        return "sso" if tasks == ("surface",) else "mso"
    raise CKAProbeError(
        f"{source}: cannot tell the model's role from arch={arch!r}, tasks={list(tasks)!r} "
        "(expected arch 'so' with tasks ['surface'] or ['meaning'], or arch 'do' with both, "
        "or a role recorded by cka-probe extract --role)"
    )


def variant_of(attrs: Mapping[str, Any]) -> str:
    """``do`` for the plain dual-output model (no ``variant`` recorded, or ``shared``), else the variant's
    name."""
    variant = str(attrs.get("variant") or "shared")
    return "do" if variant == "shared" else variant


def is_variant(role: str) -> bool:
    """Whether ``role`` is a structured DO variant (not SSO, MSO, DO or the floor)."""
    return role not in (*ROLES, FLOOR)


def language_of(attrs: Mapping[str, Any], source: str) -> str:
    """The ``language`` attribute, which every store of the cross-task set needs."""
    language = str(attrs.get("language", "")).strip()
    if not language:
        raise CKAProbeError(f"{source}: no 'language' in the store's provenance")
    return language


def seed_of(attrs: Mapping[str, Any]) -> int | None:
    """The training seed in a store's provenance (``config.train.seed``), if recorded."""
    config = attrs.get("config")
    if isinstance(config, str):
        config = json.loads(config) if config.startswith("{") else None
    seed = (config or {}).get("train", {}).get("seed") if isinstance(config, Mapping) else None
    return None if seed is None else int(seed)


def replicate_key(attrs: Mapping[str, Any]) -> tuple[str, int | None]:
    """What tells a role's replicates apart and orders them: ``("replicate", k)`` for a brought model that
    records its replicate, else ``("seed", the training seed)`` (None when not recorded)."""
    replicate = attrs.get("replicate")
    return ("replicate", int(replicate)) if replicate is not None else ("seed", seed_of(attrs))


def assign_roles(attrs_by_source: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Group sources by language and role: ``{language: {role: [source of each seed replicate]}}``.

    Every language needs at least one source of each role in :data:`ROLES`
    (and at most one ``rand``); two sources of one role need different
    recorded seeds or replicates (:func:`replicate_key`), by which they are
    ordered. Errors are :class:`CKAProbeError` naming the files.
    """
    found: dict[str, dict[str, dict[str, tuple[str, int | None]]]] = {}
    for source, attrs in attrs_by_source.items():
        language, role, key = language_of(attrs, source), role_of(attrs, source), replicate_key(attrs)
        same = found.setdefault(language, {}).setdefault(role, {})
        previous = next((s for s, other in same.items() if other == key or None in (key[1], other[1])), None)
        if previous is not None or (role == FLOOR and same):
            raise CKAProbeError(
                f"two {role.upper()} models for language {language!r}"
                f"{'' if key[1] is None else f' with {key[0]} {key[1]}'}: {previous or next(iter(same))} "
                f"and {source}"
            )
        same[source] = key
    for language, roles in found.items():
        missing = [r.upper() for r in ROLES if r not in roles]
        if missing:
            sources = sorted(s for by_key in roles.values() for s in by_key)
            raise CKAProbeError(f"language {language!r}: no {', '.join(missing)} model among {sources}")
    if not found:
        raise CKAProbeError("no stores given for the cross-task comparison")
    return {
        language: {
            role: sorted(by_key, key=lambda s: (by_key[s], s)) for role, by_key in found[language].items()
        }
        for language in sorted(found)
    }
