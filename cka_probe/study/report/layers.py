"""Layer by layer: encoder and decoder CKA, their reference levels, and the differences between languages.

"At layers …" statements use the Benjamini–Hochberg-adjusted p-values
(``p_adj`` < :data:`~cka_probe.study.report.reading.ALPHA`) and, pooled over
seeds, need every seed to agree in sign.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Item, Items, Section
from cka_probe.study.report.brought import ceiling_advice
from cka_probe.study.report.reading import ALPHA, cleared, read
from cka_probe.study.report.wording import by_layer, intervals_by_layer, layer_range, placement, short
from cka_probe.study.schema import CEILING, FLOOR_NAME, diagonal, value_label

REFERENCE_LABELS = {
    CEILING: "seed-to-seed ceiling SSO~SSO′",
    FLOOR_NAME: "random-initialisation floor SSO~RAND",
}

RELATIVE = ("below it", "indistinguishable from it", "above it")
"""How a comparison sits against a reference, for :func:`~cka_probe.study.report.wording.placement`."""


def seed_count(tables: Path) -> int:
    """The number of training seeds per role that the findings pool (the references aside)."""
    cross = read(tables, "cross_task")
    if cross is None or "seeds" not in cross:
        return 1
    return int(cross.loc[~cross["comparison"].isin(list(REFERENCE_LABELS)), "seeds"].min())


def reference_rows(tables: Path, language: str, part: str) -> pd.DataFrame | None:
    """The rows of ``reference_gaps.csv`` of one language and part (None without the table)."""
    gaps = read(tables, "reference_gaps")
    return None if gaps is None else gaps[(gaps["language"] == language) & (gaps["part"] == part)]


def reference_lines(tables: Path, language: str, part: str) -> list[str]:
    """Where the part's comparisons sit between the ceiling and the floor (pooled, BH-adjusted), per layer."""
    gaps = reference_rows(tables, language, part)
    no_ceiling = f"the seed-to-seed ceiling (SSO~SSO′) {ceiling_advice(tables, language)}"
    lines = [no_ceiling] if gaps is None or (gaps["reference"] != CEILING).all() else []
    if gaps is None:
        return lines
    for (name, reference), rows in gaps.groupby(["comparison", "reference"], sort=False):
        differs = intervals_by_layer(rows, "difference")
        lines.append(
            f"{name} against the {REFERENCE_LABELS[reference]}: {placement(rows, 'difference', RELATIVE)} "
            f"(BH-adjusted p < {ALPHA}); {name} − reference by layer: {differs}"
        )
    return lines


def _comparison_lines(rows: pd.DataFrame) -> list[str]:
    """``name by layer: 0: 0.81 [0.78, 0.84], ...`` per comparison, references labelled."""
    label = lambda name: f"{name} ({REFERENCE_LABELS[name]})" if name in REFERENCE_LABELS else name
    return [
        f"{label(name)} by layer: {by_layer(comp, 'layer_a')}"
        for name, comp in rows.groupby("comparison", sort=False)
    ]


def _lean_line(rows: pd.DataFrame, n: int) -> str:
    """Where the DO encoder is closer to the SSO and to the MSO encoder, and its lean by layer."""
    resolved, order = cleared(rows), list(rows["layer"])
    to_sso = layer_range(resolved.loc[resolved["lean"] > 0, "layer"], order)
    to_mso = layer_range(resolved.loc[resolved["lean"] < 0, "layer"], order)
    leans = intervals_by_layer(rows, "lean")
    return (
        f"the DO encoder is closer to the SSO encoder at {to_sso}, to the MSO encoder at {to_mso} "
        f"(BH-adjusted p < {ALPHA}, every seed agreeing), and not distinguishably closer to either elsewhere "
        f"(lean DO~SSO − DO~MSO, n = {n}: {leans})."
    )


def encoder_section(tables: Path) -> list[Block]:
    """Encoder CKA per language, its reference levels, and where the shared encoder leans."""
    cross, lean = read(tables, "cross_task"), read(tables, "encoder_entanglement")
    items = []
    for language, rows in diagonal(cross[cross["part"] == "encoder"]).groupby("language"):
        n, chance = int(rows["n"].iloc[0]), rows["null_mean"].mean()
        seeds = int(rows["seeds"].max()) if "seeds" in rows else 1
        title = (
            f"{language} (n = {n} utterances, {value_label(rows)}, {seeds} "
            f"seed{'s' * (seeds > 1)}; shuffled-utterance chance level ≈ {chance:.2f}):"
        )
        lines = _comparison_lines(rows) + reference_lines(tables, language, "encoder")
        items.append(Item(title, (*lines, _lean_line(lean[lean["language"] == language], n))))
    return [Section("Encoders", (Items(tuple(items)),))]


def _departure_item(language: str, decoder: str, rows: pd.DataFrame) -> Item:
    own = ", ".join(f"{short(r.layer)}: {r.cka_own:.2f}" for r in rows.itertuples())
    pull = intervals_by_layer(rows, "pull")
    resolved = cleared(rows)
    moved = layer_range(resolved.loc[resolved["pull"] > 0, "layer"], list(rows["layer"]))
    n = f" (n = {int(rows['n'].iloc[0])})" if "n" in rows else ""
    return Item(
        f"{language} {decoder}{n}: CKA to its own SO decoder by layer {own}; pull toward the other "
        f"task's SO decoder {pull}; clearly toward the other task (BH-adjusted p < {ALPHA}, pull > 0) "
        f"at {moved}."
    )


def decoder_section(tables: Path) -> list[Block]:
    """How much each DO decoder keeps of its SO counterpart, and where it moves toward the other task."""
    dep, cross = read(tables, "decoder_departure"), read(tables, "cross_task")
    items = []
    for language, rows in diagonal(cross[cross["part"] == "decoder"]).groupby("language"):
        references = rows[rows["comparison"].isin(list(REFERENCE_LABELS))]
        lines = _comparison_lines(references) + reference_lines(tables, language, "decoder")
        items.append(
            Item(
                f"{language} reference levels (surface decoder, n = {int(rows['n'].iloc[0])}):", tuple(lines)
            )
        )
    for (language, decoder), rows in dep.groupby(["language", "decoder"], sort=False):
        items.append(_departure_item(language, decoder, rows))
    return [Section("Decoders", (Items(tuple(items)),))]


def cross_lang_section(tables: Path) -> list[Block]:
    """Encoder and decoder differences between languages, per comparison and layer."""
    diff = read(tables, "cross_lang")
    if diff is None:
        return []
    items = []
    for (part, name), rows in diff.groupby(["part", "comparison"], sort=False):
        a, b = rows["language_a"].iloc[0], rows["language_b"].iloc[0]
        clear = layer_range(cleared(rows)["layer_a"], list(rows["layer_a"]))
        diffs = intervals_by_layer(rows, "diff", "layer_a")
        n = f" (n = {int(rows['n_a'].iloc[0])} and {int(rows['n_b'].iloc[0])})"
        items.append(
            Item(
                f"{part} {name}, CKA({a}) − CKA({b}) by layer{n}: {diffs}; "
                f"intervals excluding 0 (BH-adjusted p < {ALPHA}, every seed agreeing) at {clear}."
            )
        )
    return [Section("Between languages", (Items(tuple(items)),))]
