"""The probes of the study: what each model's encoder layers keep of what was said and what was meant.

For every language, each store of the comparison set is probed
(:func:`cka_probe.probe.probe_outcomes`, ``docs/probes.md``) on the words of
the language's spans (the SSO store's CTC sidecar, or any aligner's file
mapped to each store's own frames): the forced-choice surface preference at
substituted words, and the decodability of the surface and the meaning word
with its control task (selectivity = task − control). All stores of a
language share the words, the folds and the group-bootstrap resamples, so
models are compared on the same held-out words.

``word_probes.csv`` has one row per model and encoder layer; ``model`` is

* ``SSO``, ``MSO``, ``DO``: replicates 0 … K − 1 of the role (K the seed
  replicates of the comparison set), pooled over seeds
  (:func:`cka_probe.probe.summarise`);
* ``SSO′``: SSO replicates 1 … K, the seed-to-seed reference (how far two
  trainings of one model differ), and ``RAND``: the random-initialisation
  floor (what an untrained encoder's geometry alone gives a linear probe);
* a structured variant's name with its ``stream``: every encoder stream it
  holds (``encoder/branch/surface``, …).

``word_probe_differences.csv`` holds, per layer and probe, ``DO − SSO`` and
``DO − MSO`` (the cost and the gain of multi-task learning in what the shared
encoder keeps), ``SSO − SSO′`` (the seed-to-seed difference, the scale a
difference must exceed), and for each variant ``V − DO`` at the top layer of
the stream the variant's surface decoder reads against DO's top encoder layer
(did the variant keep the said form better?), each with its percentile
interval and BH-adjusted p-value (:func:`cka_probe.probe.probe_differences`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cka_probe.probe import probe_differences, probe_outcomes, summarise
from cka_probe.probe.intervals import StoreProbe
from cka_probe.probe.run import N_SPLITS
from cka_probe.store import ActivationStore
from cka_probe.study.load import store_paths
from cka_probe.study.roles import FLOOR, assign_roles, is_variant
from cka_probe.study.schema import is_surface_path
from cka_probe.study.word_cross_task import language_spans

TOP = "top"
"""The layer name a variant's and DO's top layers share in ``V − DO``."""


def surface_stream(streams: Sequence[str]) -> str:
    """The encoder stream a variant's surface decoder reads: ``encoder/<kind>/surface``, else ``encoder``."""
    return next((s for s in streams if is_surface_path(s)), "encoder")


def encoder_streams(streams: Sequence[str]) -> list[str]:
    """The encoder streams of a store (``encoder`` and a variant's task paths), in store order."""
    return [s for s in streams if s == "encoder" or s.startswith("encoder/")]


def _probe_language(
    opened: Mapping[str, ActivationStore],
    roles: Mapping[str, list[str]],
    records: dict,
    seed: int,
    n_splits: int,
) -> dict[tuple[str, str], list[StoreProbe]]:
    """``{(model, stream): [StoreProbe of each replicate]}`` of one language (module docstring)."""
    seeds = min(len(roles[r]) for r in ("sso", "mso", "do"))
    models = {
        ("SSO", "encoder"): roles["sso"][:seeds],
        ("MSO", "encoder"): roles["mso"][:seeds],
        ("DO", "encoder"): roles["do"][:seeds],
    }
    if len(roles["sso"]) > 1:
        models["SSO′", "encoder"] = roles["sso"][1 : seeds + 1]
    if FLOOR in roles:
        models["RAND", "encoder"] = roles[FLOOR]
    for role, sources in roles.items():
        if is_variant(role):
            for stream in encoder_streams(opened[sources[0]].streams()):
                models[role, stream] = sources
    jobs = [(key, source) for key, sources in models.items() for source in sources]
    out: dict[tuple[str, str], list[StoreProbe]] = {key: [] for key in models}
    for key, source in tqdm(jobs, desc="word probes", unit="store", leave=False, disable=None):
        out[key].append(probe_outcomes(opened[source], records, stream=key[1], seed=seed, n_splits=n_splits))
    return out


def _top(result: StoreProbe) -> StoreProbe:
    """``result`` with only its top layer, named :data:`TOP`."""
    return replace(result, layers={TOP: result.layers[list(result.layers)[-1]]})


def _differences(
    probes: Mapping[tuple[str, str], list[StoreProbe]], n_boot: int, seed: int, level: float
) -> list[pd.DataFrame]:
    """The ``A − B`` tables of one language (module docstring)."""
    pairs = [("DO", "SSO"), ("DO", "MSO"), ("SSO", "SSO′")]
    found = [
        (f"{a} − {b}", probes[a, "encoder"], probes[b, "encoder"])
        for a, b in pairs
        if (a, "encoder") in probes and (b, "encoder") in probes
    ]
    variants = {model for model, _ in probes if model not in ("SSO", "MSO", "DO", "SSO′", "RAND")}
    for variant in sorted(variants):
        stream = surface_stream([s for m, s in probes if m == variant])
        tops = [_top(r) for r in probes[variant, stream]], [_top(r) for r in probes["DO", "encoder"]]
        found.append((f"{variant} − DO", *tops))
    return [
        probe_differences(a, b, n_boot=n_boot, seed=seed, level=level).assign(comparison=name)
        for name, a, b in found
    ]


def word_probe_tables(
    stores: Sequence[str | Path],
    *,
    spans: Mapping[str, str | Path] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    n_splits: int = N_SPLITS,
) -> dict[str, pd.DataFrame]:
    """``word_probes`` and ``word_probe_differences`` (module docstring) of every language of ``stores``;
    ``spans`` maps a language to its word spans from any aligner (default: the SSO store's sidecar);
    ``n_splits`` outer cross-validation folds."""
    summaries, differences = [], []
    with ExitStack() as stack:
        files = store_paths(stores)
        opened = {str(p): stack.enter_context(ActivationStore(p)) for p in files}
        for language, roles in assign_roles({s: st.attrs for s, st in opened.items()}).items():
            ordered = [s for role in ("sso", "mso", "do") for s in roles[role]]
            manifest = opened[ordered[0]].attrs.get("manifest")
            records = language_spans([Path(s) for s in ordered], (spans or {}).get(language), manifest)
            probes = _probe_language(opened, roles, records, seed, n_splits)
            for (model, stream), results in probes.items():
                table = summarise(results, n_boot=n_boot, seed=seed, level=level)
                summaries.append(
                    table.assign(language=language, model=model, index=range(len(table)), stream=stream)
                )
            differences += [d.assign(language=language) for d in _differences(probes, n_boot, seed, level)]
    return {
        "word_probes": _first(
            pd.concat(summaries, ignore_index=True), ["language", "model", "stream", "index"]
        ),
        "word_probe_differences": _first(
            pd.concat(differences, ignore_index=True), ["language", "comparison", "layer", "probe"]
        ),
    }


def _first(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``table`` with ``columns`` first."""
    return table[[*columns, *(c for c in table.columns if c not in columns)]]
