"""Which model is which: the roles SSO, MSO and DO, read from store provenance.

The paper compares three models per language (DESIGN.md, "The paper's
comparisons"): SSO and MSO, the single-output models trained on the surface
and the meaning transcripts, and DO, the dual-output model with one shared
encoder and the two decoders SDO (surface) and MDO (meaning). A store records
``arch`` (``so`` | ``do``), ``tasks`` and ``language`` in its root attributes;
a store of any other model (a Hugging Face folder, a Python adapter) records
its role as ``role`` (``cka-probe extract --role sso|mso|do``), which wins.
This module turns those attributes into roles and checks that every language
has exactly one model of each role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cka_probe.errors import CKAProbeError

ROLES: tuple[str, ...] = ("sso", "mso", "do")

# Streams (DESIGN.md: ``encoder`` or ``decoder/<task>``) that each role provides.
ROLE_STREAMS: dict[str, tuple[str, ...]] = {
    "sso": ("encoder", "decoder/surface"),
    "mso": ("encoder", "decoder/meaning"),
    "do": ("encoder", "decoder/surface", "decoder/meaning"),
}


def _tasks(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``tasks`` attribute as a tuple, whether stored as a list or a JSON string."""
    tasks = attrs.get("tasks", ())
    if isinstance(tasks, str):
        tasks = json.loads(tasks) if tasks.startswith("[") else [tasks]
    return tuple(str(t) for t in tasks)


def role_of(attrs: Mapping[str, Any], source: str) -> str:
    """The role (``sso`` | ``mso`` | ``do``) of a model from its provenance attributes.

    ``source`` (a file name) only serves the error message.
    """
    role = str(attrs.get("role") or "")
    if role:
        if role not in ROLES:
            raise CKAProbeError(f"{source}: role {role!r} is none of {', '.join(ROLES)}")
        return role
    arch, tasks = str(attrs.get("arch", "")), _tasks(attrs)
    if arch == "do" and set(tasks) == {"surface", "meaning"}:
        return "do"
    if arch == "so" and tasks in (("surface",), ("meaning",)):
        return "sso" if tasks == ("surface",) else "mso"
    raise CKAProbeError(
        f"{source}: cannot tell the model's role from arch={arch!r}, tasks={list(tasks)!r} "
        "(expected arch 'so' with tasks ['surface'] or ['meaning'], or arch 'do' with both, "
        "or a role recorded by cka-probe extract --role)"
    )


def language_of(attrs: Mapping[str, Any], source: str) -> str:
    """The ``language`` attribute, which every store of the cross-task set needs."""
    language = str(attrs.get("language", "")).strip()
    if not language:
        raise CKAProbeError(f"{source}: no 'language' in the store's provenance")
    return language


def assign_roles(attrs_by_source: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Group sources by language and role: ``{language: {role: source}}``.

    Every language must have exactly one source of each role in :data:`ROLES`;
    a missing or duplicated role is a :class:`CKAProbeError` naming the files.
    """
    found: dict[str, dict[str, str]] = {}
    for source, attrs in attrs_by_source.items():
        language, role = language_of(attrs, source), role_of(attrs, source)
        previous = found.setdefault(language, {}).get(role)
        if previous is not None:
            raise CKAProbeError(f"two {role.upper()} models for language {language!r}: {previous} and {source}")
        found[language][role] = source
    for language, roles in found.items():
        missing = [r.upper() for r in ROLES if r not in roles]
        if missing:
            raise CKAProbeError(f"language {language!r}: no {', '.join(missing)} model among {sorted(roles.values())}")
    if not found:
        raise CKAProbeError("no stores given for the cross-task comparison")
    return {language: found[language] for language in sorted(found)}
