"""Every probe of every layer of one activation store (``cka-probe probe``).

For each selected layer of an encoder stream the word means
(:func:`~cka_probe.compare.word_pooling.pool_words`) of every surface word of
the word spans are probed (``docs/probes.md``); the spans come from any
aligner (the store's CTC sidecar, a TextGrid folder, a CTM file) and are
mapped to the store's frames by its own frame arithmetic
(:func:`~cka_probe.compare.span_sources.frame_records`):

* ``surface_preference``: the forced choice between surface and meaning form
  (:mod:`cka_probe.probe.forced_choice`), fitted on identical words, scored on
  substituted ones;
* ``surface_accuracy`` / ``meaning_accuracy``: held-out decoding of the surface
  / meaning word type (:mod:`cka_probe.probe.decode`) on the words of ``words``
  (divergent, identical or all), ``*_control`` the control task's accuracy and
  ``*_selectivity`` task − control.

Folds are grouped by utterance and sentence (:mod:`cka_probe.probe.groups`) and
drawn once per store from ``seed``, so every layer is probed on the same
folds; the intervals are those of :mod:`cka_probe.probe.intervals`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cka_probe.compare.span_sources import Records, frame_records, read_spans
from cka_probe.compare.word_pooling import pool_words
from cka_probe.compare.words import WORD_SETS, check_frames
from cka_probe.errors import CKAProbeError
from cka_probe.probe.decode import MIN_GROUPS, control_labels, decodable, held_out_accuracy
from cka_probe.probe.forced_choice import MIN_FIT_WORDS, ForcedChoice, forced_choice
from cka_probe.probe.forms import WordForms
from cka_probe.probe.groups import Split, cv_groups, grouped_folds
from cka_probe.probe.intervals import Outcome, StoreProbe, summarise
from cka_probe.probe.word_table import WordTable, word_table
from cka_probe.store import ActivationStore

N_SPLITS = 5
"""Outer cross-validation folds."""

TASKS = ("surface", "meaning")
"""The decoded words: what was said, what was meant."""


@dataclass(frozen=True)
class Task:
    """One decoding task: its words ``rows (n,)``, labels and control labels ``(n,)``, and folds of positions
    within ``rows``."""

    rows: np.ndarray
    labels: np.ndarray
    control: np.ndarray
    folds: list[Split]


@dataclass(frozen=True)
class Plan:
    """What every layer of a store is probed on: forms, masks, CV groups and folds of the words."""

    table: WordTable
    groups: np.ndarray
    surface_forms: np.ndarray
    meaning_forms: np.ndarray
    identical: np.ndarray
    substituted: np.ndarray
    choice_folds: list[Split]
    tasks: dict[str, Task | None]

    def forced_choice(self, x: np.ndarray) -> ForcedChoice:
        """The forced choice of word representations ``x (W, D)`` on these words, forms and folds."""
        return forced_choice(
            x,
            self.surface_forms,
            self.meaning_forms,
            self.identical,
            self.substituted,
            self.groups,
            self.choice_folds,
        )


def _subset_folds(rows: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[Split]:
    """Grouped folds of the words ``rows`` as indices of all words."""
    return [(rows[tr], rows[te]) for tr, te in grouped_folds(groups[rows], n_splits, seed)]


def _task(
    labels: np.ndarray, selected: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, min_groups: int
) -> Task | None:
    """The decoding task of ``labels (W,)`` on the ``selected`` words whose type occurs in ``min_groups``
    groups; None when fewer than 2 such types remain."""
    keep = np.zeros(len(labels), dtype=bool)
    keep[selected] = decodable(list(labels[selected]), groups[selected], min_groups)
    rows = np.flatnonzero(keep)
    if len(np.unique(labels[rows].astype(str))) < 2:
        return None
    ours = labels[rows].astype(str)
    return Task(rows, ours, control_labels(ours, seed), grouped_folds(groups[rows], n_splits, seed))


def plan_probes(
    table: WordTable,
    *,
    words: str = "divergent",
    seed: int = 0,
    n_splits: int = N_SPLITS,
    min_groups: int = MIN_GROUPS,
) -> Plan:
    """The forms, groups and folds every layer is probed on; one-line errors for unusable words."""
    if words not in WORD_SETS:
        raise CKAProbeError(f"words must be one of {', '.join(WORD_SETS)}, not {words!r}")
    identical, substituted = table.op == "identical", table.op == "substituted"
    if not substituted.any():
        raise CKAProbeError(
            "no divergent words paired with a meaning word: the forced choice has nothing to score"
        )
    if identical.sum() < MIN_FIT_WORDS:
        raise CKAProbeError(
            f"{identical.sum()} identical word(s): too few identical words to fit the forced-choice map "
            f"(at least {MIN_FIT_WORDS})"
        )
    groups = cv_groups(table.utterance, table.sentence)
    meaning = np.where(table.paired, table.meaning, table.surface)
    forms = WordForms([*table.surface, *meaning])
    selected = {"all": np.ones(len(table.op), bool), "identical": identical, "divergent": ~identical}[words]
    return Plan(
        table=table,
        groups=groups,
        surface_forms=forms.forms(table.surface),
        meaning_forms=forms.forms(meaning),
        identical=identical,
        substituted=substituted,
        choice_folds=_subset_folds(np.flatnonzero(identical | substituted), groups, n_splits, seed),
        tasks={
            "surface": _task(table.surface, selected, groups, n_splits, seed, min_groups),
            "meaning": _task(table.meaning, selected & table.paired, groups, n_splits, seed, min_groups),
        },
    )


def _outcome(plan: Plan, rows: np.ndarray, values: np.ndarray) -> Outcome:
    return Outcome(values.astype(np.float64), plan.table.keys[rows], plan.groups[rows])


def probe_layer(x: np.ndarray, plan: Plan) -> tuple[dict[str, Outcome], dict]:
    """Every probe of one layer's word representations ``x (W, D)``, and the regularisers chosen per fold."""
    choice = plan.forced_choice(x)
    probes = {"surface_preference": _outcome(plan, choice.rows, choice.choices)}
    info: dict = {"ridge_alpha": choice.alphas}
    empty = np.array([], dtype=np.int64)
    for name, task in plan.tasks.items():
        if task is None:
            correct = control = empty.astype(np.float64)
            rows = empty
        else:
            x_task, groups = x[task.rows], plan.groups[task.rows]
            decoded = held_out_accuracy(x_task, task.labels, groups, task.folds)
            control = held_out_accuracy(x_task, task.control, groups, task.folds).correct
            correct, rows = decoded.correct, task.rows
            info[f"{name}_alpha"] = decoded.alphas
        probes |= {
            f"{name}_accuracy": _outcome(plan, rows, correct),
            f"{name}_control": _outcome(plan, rows, control),
            f"{name}_selectivity": _outcome(plan, rows, correct - control),
        }
    return probes, info


def probe_layers(
    layers: Iterable[tuple[str, np.ndarray]], plan: Plan
) -> tuple[dict[str, dict[str, Outcome]], dict]:
    """:func:`probe_layer` of each ``(layer, x (W, D))``; ``({layer: probes}, {layer: regularisers})``."""
    probes, info = {}, {}
    for layer, x in layers:
        probes[layer], info[layer] = probe_layer(x, plan)
    return probes, info


def select_layers(available: Sequence[str], patterns: Sequence[str] | None, where: str) -> list[str]:
    """The layers matching any of the glob ``patterns`` (all for None), in store order; a pattern that
    matches none is an error."""
    if not patterns:
        return list(available)
    for pattern in patterns:
        if not fnmatch.filter(available, pattern):
            raise CKAProbeError(f"layer {pattern!r} is not in {where} (layers: {', '.join(available)})")
    return [layer for layer in available if any(fnmatch.fnmatchcase(layer, p) for p in patterns)]


def _manifest_path(store: ActivationStore, manifest: str | Path | None) -> Path:
    """``manifest``, else the one the store records; an error if neither."""
    manifest = manifest or store.attrs.get("manifest")
    if not manifest:
        raise CKAProbeError(
            f"{store.path} records no manifest; give the manifest (--data) for the meaning words"
        )
    return Path(manifest)


def _manifest_rows(manifest: Path) -> dict[str, dict]:
    """The manifest's rows by id (transcripts needed, audio not)."""
    from cka_probe.data.manifest import read_manifest

    rows = read_manifest(manifest, check_audio=False, require=("surface", "meaning"))
    return {row["id"]: row for row in rows}


def probe_outcomes(
    store: str | Path | ActivationStore,
    spans: str | Path | Records | None = None,
    manifest: str | Path | None = None,
    *,
    stream: str = "encoder",
    layers: Sequence[str] | None = None,
    words: str = "divergent",
    seed: int = 0,
    n_splits: int = N_SPLITS,
    min_groups: int = MIN_GROUPS,
) -> StoreProbe:
    """Held-out per-word outcomes of every probe of the ``layers`` (globs) of ``stream``.

    ``spans``: word spans from any source :func:`~cka_probe.compare.span_sources.read_spans` reads (a
    TextGrid folder, a CTM file, a word-span JSON Lines file) or records it returned, mapped to this
    store's frames by its own frame arithmetic; default the store's sidecar. ``manifest``: the meaning
    transcripts, default the one the store records.
    """
    from cka_probe.extract.word_spans import sidecar_path

    with ExitStack() as stack:
        if not isinstance(store, ActivationStore):
            store = stack.enter_context(ActivationStore(store))
        if stream not in store.streams():
            raise CKAProbeError(
                f"{store.path} has no stream {stream!r} (streams: {', '.join(store.streams())})"
            )
        chosen = select_layers(store.layers(stream), layers, f"{store.path} {stream}")
        manifest = _manifest_path(store, manifest)
        spans = spans if isinstance(spans, dict) else Path(spans or sidecar_path(store.path))
        records = spans if isinstance(spans, dict) else read_spans(spans, manifest)
        ids = store.ids
        records = frame_records(store, records, ids, stream)
        table = word_table(records, ids, _manifest_rows(manifest))
        check_frames(store, stream, ids, records)
        plan = plan_probes(table, words=words, seed=seed, n_splits=n_splits, min_groups=min_groups)
        means = (
            (layer, pool_words(*store.frames(stream, layer, ids), table.spans))
            for layer in tqdm(chosen, desc="probe layers", unit="layer", leave=False, disable=None)
        )
        probes, info = probe_layers(means, plan)
        source = "records" if isinstance(spans, dict) else str(spans)
        info = {"spans": source, "manifest": str(manifest)} | _info(
            plan, info, words, seed, n_splits, min_groups
        )
        return StoreProbe(str(store.path), stream, probes, info)


def _info(plan: Plan, regularisers: dict, words: str, seed: int, n_splits: int, min_groups: int) -> dict:
    """The JSON-able account of how the probes were fitted."""
    return {
        "words": words,
        "seed": seed,
        "n_splits": n_splits,
        "min_groups": min_groups,
        "n_words": len(plan.table.op),
        "n_identical": int(plan.identical.sum()),
        "n_substituted": int(plan.substituted.sum()),
        "n_groups": int(len(np.unique(plan.groups))),
        "decoded_types": {
            name: (0 if task is None else int(len(np.unique(task.labels))))
            for name, task in plan.tasks.items()
        },
        "regularisers": regularisers,
    }


def probe_store(
    store: str | Path | ActivationStore,
    spans: str | Path | Records | None = None,
    manifest: str | Path | None = None,
    *,
    stream: str = "encoder",
    layers: Sequence[str] | None = None,
    words: str = "divergent",
    seed: int = 0,
    n_boot: int = 1000,
    n_splits: int = N_SPLITS,
    min_groups: int = MIN_GROUPS,
) -> pd.DataFrame:
    """One row per layer: each probe's estimate, percentile interval and word count (:func:`summarise`);
    ``attrs`` record the options, the folds' regularisers and the library versions."""
    import sklearn

    result = probe_outcomes(
        store,
        spans,
        manifest,
        stream=stream,
        layers=layers,
        words=words,
        seed=seed,
        n_splits=n_splits,
        min_groups=min_groups,
    )
    out = summarise([result], n_boot=n_boot, seed=seed)
    out.attrs = {
        "store": result.store,
        "stream": stream,
        "n_boot": n_boot,
        **result.info,
        "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__},
    }
    return out
