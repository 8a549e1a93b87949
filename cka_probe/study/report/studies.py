"""The two follow-up studies: structured multi-task variants (mitigation) and divergent vs identical words."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Item, Items, Paragraph, Section
from cka_probe.study.report.knows import probe_mitigation
from cka_probe.study.report.reading import ALPHA, cleared, read, resolved
from cka_probe.study.report.wording import by_layer, interval, intervals_by_layer, layer_range


def mitigation_verdict(lean, surface_vs_do, surface_vs_so) -> str:
    """Reduced entanglement (the surface path's lean change > 0) and closed the surface gap (V − DO < 0,
    V − SO not > 0); each row may be None where the run lacks it."""
    reduced = lean is not None and resolved(lean) > 0
    closed = surface_vs_do is not None and resolved(surface_vs_do) < 0 and resolved(surface_vs_so) <= 0
    if reduced and closed:
        return "**reduced entanglement and closed the surface gap**"
    missing = [
        text
        for ok, text in ((reduced, "did not reduce entanglement"), (closed, "did not close the surface gap"))
        if not ok
    ]
    return f"**did not** reduce entanglement and close the surface gap ({'; '.join(missing)})"


def mitigation_tables(tables: Path) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The pooled character-level CER rows and lean rows of the variants (None when the run has none)."""
    cer, lean = read(tables, "mitigation_cer"), read(tables, "mitigation_lean")
    if cer is None and lean is None:
        return None
    cer = cer[cer["unit"] == "char"] if cer is not None else pd.DataFrame(columns=["language", "variant"])
    return cer, lean if lean is not None else pd.DataFrame(columns=["language", "variant"])


def variants(cer: pd.DataFrame, lean: pd.DataFrame):
    """Per (language, variant): its CER rows by (task, reference) and its lean rows by task."""
    keys = pd.concat([cer[["language", "variant"]], lean[["language", "variant"]]]).drop_duplicates()
    for language, variant in keys.itertuples(index=False):
        rows = cer[(cer["language"] == language) & (cer["variant"] == variant)]
        paths = lean[(lean["language"] == language) & (lean["variant"] == variant)]
        yield language, variant, rows.set_index(["task", "reference"]), paths.set_index("task")


def variant_verdict(rows: pd.DataFrame, paths: pd.DataFrame) -> str:
    """:func:`mitigation_verdict` of one variant's CER and lean rows."""
    get = lambda index, table: table.loc[index] if index in table.index else None
    return mitigation_verdict(
        get("surface", paths), get(("surface", "DO"), rows), get(("surface", "SO"), rows)
    )


def _variant_item(language: str, variant: str, rows: pd.DataFrame, paths: pd.DataFrame) -> Item:
    lines = [
        f"{task} CER {r.variant_cer:.2f} % vs {reference} {r.reference_cer:.2f} % (n = {int(r.n)}, "
        f"{int(r.seeds)} seed{'s' * (r.seeds > 1)}): {variant} − {reference} = "
        f"{interval(r.gap, r.ci_low, r.ci_high)} points (p (BH) = {r.p_adj:.3f})"
        for (task, reference), r in rows.iterrows()
    ]
    lines += [
        f"{task} path `{r.stream}` (n = {int(r.n)}): own {r.own_variant:+.3f} vs DO "
        f"{r.own_do:+.3f}, change {interval(r.change, r.ci_low, r.ci_high, 3)}"
        for task, r in paths.iterrows()
    ]
    lines.append(f"verdict: {variant} {variant_verdict(rows, paths)}.")
    return Item(f"{language} {variant}:", tuple(lines))


def mitigation_section(tables: Path) -> list[Block]:
    """Per variant and language: CER against SO and plain DO, the task paths' lean against DO's, a verdict."""
    found = mitigation_tables(tables)
    if found is None:
        return []
    intro = Paragraph(
        "CER gaps in points (variant − reference), encoder lean own_t = CKA(task path, own SO encoder) − "
        "CKA(task path, other SO encoder) at the top layers, its change against plain DO (positive: the "
        "variant keeps the task apart better). A variant *reduced entanglement* when the surface path's "
        "change is above 0 and *closed the surface gap* when its surface CER is below plain DO's and not "
        "above SO's (each: the pooled interval excludes 0 and every seed agrees)."
    )
    kept = tuple(Item(line) for line in probe_mitigation(tables))
    items = Items((*(_variant_item(*variant) for variant in variants(*found)), *kept))
    return [Section("Mitigation: structured multi-task variants", (intro, items))]


def _concentration_line(rows: pd.DataFrame) -> str:
    """Where the DO encoder's pull toward MSO is concentrated on divergent words, and the reverse."""
    resolved_rows, order = cleared(rows), list(rows["layer"])
    toward = list(resolved_rows.loc[resolved_rows["concentration"] < 0, "layer"])
    away = layer_range(resolved_rows.loc[resolved_rows["concentration"] > 0, "layer"], order)
    where = (
        f"is concentrated on divergent words at {layer_range(toward, order)}"
        if toward
        else ("is not concentrated on divergent words at any layer")
    )
    values = intervals_by_layer(rows, "concentration")
    return (
        f"the DO encoder's pull toward MSO (away from SSO) {where} (BH-adjusted p < {ALPHA}, every seed "
        f"agreeing); the reverse at {away}; concentration by layer: {values}."
    )


def word_section(tables: Path) -> list[Block]:
    """Word-level encoder CKA on divergent vs identical words, where the DO encoder's pull lies, the word CER
    gap."""
    cka, lean, cer = read(tables, "word_cross_task"), read(tables, "word_lean"), read(tables, "word_cer")
    if cka is None or lean is None:
        return []
    intro = Paragraph(
        "Encoder CKA on word means (utterance-grouped bootstrap intervals); concentration = lean on "
        "divergent words − lean on identical words, lean = CKA(DO, SSO) − CKA(DO, MSO): negative where the "
        "DO encoder's pull toward MSO (away from SSO) is stronger on the words where the transcripts differ."
    )
    items = []
    for language, rows in lean.groupby("language", sort=False):
        own = cka[cka["language"] == language]
        lines = [
            f"{name} on {words} words (n = {int(comp['n_words'].iloc[0])} words): {by_layer(comp)}"
            for (words, name), comp in own.groupby(["words", "comparison"], sort=False)
        ]
        title = f"{language} (n = {int(rows['n_utterances'].iloc[0])} utterances):"
        items.append(Item(title, (*lines, _concentration_line(rows))))
    items += [
        Item(
            f"{r.language} {r.task} CER on {r.words} words (n = {r.n} utterances): SO {r.so_cer:.2f} % → "
            f"DO {r.do_cer:.2f} %, DO − SO = {interval(r.gap, r.ci_low, r.ci_high)} points"
        )
        for r in (cer.itertuples(index=False) if cer is not None else ())
    ]
    return [Section("Word level: divergent vs identical words", (intro, Items(tuple(items))))]
