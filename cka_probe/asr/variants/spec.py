"""Structured multi-task variants of the dual-output model: names and settings.

``--variant`` names one of

- ``shared``: one encoder read by both decoders (the paper's DO model);
- ``split-K``: the lower ``n_layers − K`` blocks shared, the top ``K`` copied per task
  (:mod:`cka_probe.asr.variants.split_encoder`);
- ``shared-private``: adversarial shared–private MTL (Liu, Qiu & Huang 2017)
  (:mod:`cka_probe.asr.variants.shared_private_encoder`);
- ``sparse-shared``: per-task hard-concrete gates over one encoder's units
  (Louizos et al. 2018; Sun et al. 2020) (:mod:`cka_probe.asr.variants.sparse_shared_encoder`).

The settings of a variant live in the config's optional ``variants`` section,
``{"shared-private": {...}, "sparse-shared": {...}}``; keys left out take the
defaults below, and training writes the resolved settings into the
checkpoint's config so that a checkpoint never depends on these defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cka_probe.errors import CKAProbeError

DEFAULTS: dict[str, dict[str, float]] = {
    # private_layers: Conformer blocks of each private branch; adversarial, orthogonality: loss weights;
    # reversal: the gradient-reversal scale λ; discriminator_dim: the discriminator's hidden width.
    "shared-private": {
        "private_layers": 1,
        "adversarial": 0.05,
        "orthogonality": 0.1,
        "reversal": 1.0,
        "discriminator_dim": 64,
    },
    # l0: weight of the expected fraction of open gates; beta, gamma, zeta: the hard-concrete
    # temperature and stretch (Louizos et al. 2018, §4); init_open: P(gate open) at initialisation.
    "sparse-shared": {"l0": 0.05, "beta": 2 / 3, "gamma": -0.1, "zeta": 1.1, "init_open": 0.9},
}
NAMES = "shared, split-K (K = 1 … n_layers − 1), shared-private, sparse-shared"


@dataclass(frozen=True)
class Variant:
    """A parsed variant name: ``kind`` is shared | split | shared-private | sparse-shared, ``k`` the split
    depth."""

    kind: str
    k: int = 0

    @property
    def name(self) -> str:
        return f"split-{self.k}" if self.kind == "split" else self.kind


def parse_variant(name: str, n_layers: int) -> Variant:
    """``"split-2"`` -> ``Variant("split", 2)``; a one-line error for an unknown name or a K that does not
    fit."""
    if name in ("shared", "shared-private", "sparse-shared"):
        return Variant(name)
    match = re.fullmatch(r"split-(\d+)", name)
    if match is None:
        raise CKAProbeError(f"unknown variant '{name}' (variants: {NAMES})")
    k = int(match.group(1))
    if not 1 <= k < n_layers:
        raise CKAProbeError(f"variant '{name}': K must be between 1 and n_layers − 1 = {n_layers - 1}")
    return Variant("split", k)


def variant_settings(config: dict[str, Any], kind: str) -> dict[str, float]:
    """The defaults of ``kind`` updated with ``config["variants"][kind]``; unknown keys are an error."""
    given = config.get("variants", {}).get(kind, {})
    unknown = sorted(set(given) - set(DEFAULTS.get(kind, {})))
    if unknown:
        raise CKAProbeError(
            f"config: variants.{kind} has unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(DEFAULTS.get(kind, {})) or 'none'})"
        )
    return DEFAULTS.get(kind, {}) | given
