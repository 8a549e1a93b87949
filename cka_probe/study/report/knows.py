"""What the encoders know, beside how similar they are: the probes' findings and CKA's own pitfalls.

* :func:`probe_finding`, :func:`probe_section`: from ``word_probes.csv`` and
  ``word_probe_differences.csv`` (:mod:`cka_probe.study.word_probes`), where
  the DO encoder prefers the said form less (or more) than SSO's at divergent
  words, with both models' preferences and the difference's interval; a
  difference is resolved under the rule of every other comparison
  (BH-adjusted p < 0.05 over the layers of one probe, interval excluding 0).
* :func:`probe_mitigation`: per structured variant, whether its surface path
  kept the said form better than plain DO's shared encoder (``V − DO`` at the
  top layers).
* :func:`defence_finding`, :func:`defence_section`: from ``defences.csv``
  (:mod:`cka_probe.study.defences`), how much of the headline CKA the top
  principal direction carries and whether the lean keeps its sign under
  angular Procrustes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Item, Items, Paragraph, Section
from cka_probe.study.report.reading import agree, cleared, read, resolved
from cka_probe.study.report.wording import grouped, join, language, layer_range, short
from cka_probe.study.schema import VALUE

PREFERENCE = "surface_preference"
SELECTIVITY = ["surface_selectivity", "meaning_selectivity"]
KEPT = {
    1: "kept the said form **better** than plain DO",
    -1: "kept the said form **worse** than plain DO",
    0: "kept the said form neither better nor worse than plain DO (not resolved)",
}
"""The verdict of a variant's ``V − DO`` surface preference, by its resolved sign."""


def percent(value: float, low: float, high: float) -> str:
    """``71 % [66, 76]``: a share and its interval in percent."""
    return f"{100 * value:.0f} % [{100 * low:.0f}, {100 * high:.0f}]"


def points(value: float, low: float, high: float) -> str:
    """``−17 [−22, −12] points``: a difference of shares in percentage points."""
    return f"{100 * value:+.0f} [{100 * low:+.0f}, {100 * high:+.0f}] points"


def _preference(probes: pd.DataFrame, code: str, model: str, layer: str) -> str:
    """A model's surface preference at ``layer`` (its encoder stream) as a percentage with its interval."""
    rows = probes[
        (probes["language"] == code)
        & (probes["model"] == model)
        & (probes["stream"] == "encoder")
        & (probes["layer"] == layer)
    ]
    r = rows.iloc[0]
    return percent(r[PREFERENCE], r[f"{PREFERENCE}_lo"], r[f"{PREFERENCE}_hi"])


def _difference_rows(
    diffs: pd.DataFrame, code: str, comparison: str, probe: str = PREFERENCE
) -> pd.DataFrame:
    return diffs[
        (diffs["language"] == code) & (diffs["comparison"] == comparison) & (diffs["probe"] == probe)
    ]


def _resolved_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of a difference whose BH-adjusted p is below 0.05 and whose interval excludes 0."""
    found = cleared(rows)
    return found[[resolved(r) != 0 for r in found.itertuples()]]


def _seed_clause(diffs: pd.DataFrame, code: str, layer: str) -> tuple[str, bool]:
    """Two SSO seeds' difference at ``layer`` (SSO − SSO′) and whether it is resolved; empty without SSO′."""
    rows = _difference_rows(diffs, code, "SSO − SSO′")
    rows = rows[rows["layer"] == layer]
    if rows.empty:
        return "", False
    r = rows.iloc[0]
    return f"; two SSO seeds differ there by {points(r.estimate, r.ci_low, r.ci_high)}", not _resolved_rows(
        rows
    ).empty


def _cost_clause(probes: pd.DataFrame, diffs: pd.DataFrame, code: str) -> tuple[tuple[str, str], str]:
    """Where DO − SSO surface preference is resolved (the largest quoted, beside two SSO seeds' difference
    there), or that it is nowhere; and what the lower preference says: ``cost`` (DO lower and the seeds'
    difference not resolved), ``seeds`` (DO lower, but two SSO seeds differ too) or ``""``."""
    rows = _difference_rows(diffs, code, "DO − SSO").dropna(subset=["estimate"])
    found = _resolved_rows(rows)
    pick = found if len(found) else rows
    quoted = pick.loc[pick["estimate"].abs().idxmax()]
    layer = quoted["layer"]
    seeds, seeds_differ = _seed_clause(diffs, code, layer)
    numbers = (
        f"layer {short(layer)}: DO {_preference(probes, code, 'DO', layer)} against SSO's "
        f"{_preference(probes, code, 'SSO', layer)}, DO − SSO "
        f"{points(quoted['estimate'], quoted['ci_low'], quoted['ci_high'])}{seeds}"
    )
    if found.empty:
        return (
            "no difference between DO and SSO is resolved",
            f"in {language(code)} (largest at {numbers})",
        ), ""
    lower = list(found.loc[found["estimate"] < 0, "layer"])
    higher = list(found.loc[found["estimate"] > 0, "layer"])
    order = list(dict.fromkeys(rows["layer"]))
    parts = [f"less often than SSO's at {layer_range(lower, order)}"] if lower else []
    parts += [f"more often than SSO's at {layer_range(higher, order)}"] if higher else []
    reading = "" if not lower else "seeds" if seeds_differ else "cost"
    return (
        f"the DO encoder prefers the said form {join(parts)}",
        f"in {language(code)} ({numbers})",
    ), reading


READINGS = {
    "cost": ": multi-task learning costs surface information where DO's is lower",
    "one seed": (
        ": where DO's is lower, the DO model keeps less of the said form than the SSO model; with one "
        "model per role that compares two trainings, and whether multi-task learning is the cause needs "
        "seeds (--seeds 3)"
    ),
    "seeds": (
        "; but two trainings of SSO alone differ by a resolved amount at the quoted layer, so a lower "
        "preference of one DO model is not yet a cost of multi-task learning (pool seeds: --seeds 3)"
    ),
}
"""What a lower DO surface preference is read as, by :func:`_cost_clause`'s reading."""


def probe_finding(tables: Path) -> str | None:
    """One sentence: at divergent words, where the DO encoder keeps the said form less than SSO's."""
    probes, diffs = read(tables, "word_probes"), read(tables, "word_probe_differences")
    if probes is None or diffs is None:
        return None
    found = [_cost_clause(probes, diffs, code) for code in sorted(diffs["language"].unique())]
    readings = {reading for _, reading in found if reading}
    if readings == {"cost"} and int(probes["seeds"].min()) < 2:
        readings = {"one seed"}
    reading = READINGS["seeds"] if "seeds" in readings else READINGS.get(next(iter(readings), ""), "")
    return (
        "Probed at the words where the speaker said something other than what was meant (the share of words "
        "whose layer representation maps nearer the said than the meant form), "
        f"{grouped([clause for clause, _ in found])}{reading}."
    )


def _lines(probes: pd.DataFrame, diffs: pd.DataFrame, code: str) -> list[str]:
    """Each model's surface preference and selectivities by layer, then each difference by layer."""
    lines = []
    for (model, stream), rows in probes[probes["language"] == code].groupby(["model", "stream"], sort=False):
        cells = ", ".join(
            f"{short(r.layer)}: {percent(r[1], r[2], r[3])}"
            f" (sel. surface {r.surface_selectivity:+.2f}, meaning {r.meaning_selectivity:+.2f})"
            for r in rows[
                ["layer", PREFERENCE, f"{PREFERENCE}_lo", f"{PREFERENCE}_hi"] + SELECTIVITY
            ].itertuples(index=False)
        )
        where = "" if stream == "encoder" else f" `{stream}`"
        lines.append(
            f"{model}{where} (n = {int(rows['n_surface_preference'].iloc[0])} divergent words): {cells}"
        )
    for name, rows in diffs[(diffs["language"] == code) & (diffs["probe"] == PREFERENCE)].groupby(
        "comparison", sort=False
    ):
        cells = ", ".join(
            f"{short(r.layer)}: {points(r.estimate, r.ci_low, r.ci_high)} (p (BH) = {r.p_adj:.3f})"
            for r in rows.itertuples()
        )
        lines.append(f"{name}, surface preference: {cells}")
    return lines


def probe_section(tables: Path) -> list[Block]:
    """Every model's probes by layer and every difference, per language."""
    probes, diffs = read(tables, "word_probes"), read(tables, "word_probe_differences")
    if probes is None or diffs is None:
        return []
    intro = Paragraph(
        "Surface preference: the share of divergent words whose held-out linear map from the layer's word "
        "mean lands nearer the said than the meant form (0.5: no preference); selectivity: held-out "
        "accuracy of decoding the said (surface) or meant word minus that of a control task with shuffled "
        "labels (Hewitt & Liang 2019). Folds grouped by utterance and sentence; intervals: "
        "group bootstrap of the held-out predictions, pooled over seeds. SSO′ is SSO's second seed (the "
        "seed-to-seed reference) and RAND the random-initialisation floor. Differences in percentage "
        "points, BH-adjusted over the layers of each probe."
    )
    items = [
        Item(f"{code}:", tuple(_lines(probes, diffs, code))) for code in sorted(probes["language"].unique())
    ]
    return [
        Section(
            "What the encoders keep of the said and the meant word (probes)", (intro, Items(tuple(items)))
        )
    ]


def probe_mitigation(tables: Path) -> list[str]:
    """Per variant and language: whether its surface path kept the said form better than plain DO."""
    diffs = read(tables, "word_probe_differences")
    if diffs is None:
        return []
    rows = diffs[diffs["comparison"].str.endswith(" − DO") & (diffs["probe"] == PREFERENCE)]
    return [
        f"{r.language} {r.comparison.removesuffix(' − DO')}: its surface path's top layer "
        f"{KEPT[resolved(r) if r.p_adj < 0.05 else 0]} "
        f"(surface preference {r.comparison} {points(r.estimate, r.ci_low, r.ci_high)})."
        for r in rows.itertuples()
    ]


def _defences(tables: Path) -> pd.DataFrame | None:
    """``defences.csv`` with its ``cka`` column as written (the study's reader names a ``cka`` column
    :data:`~cka_probe.study.schema.VALUE`), None when absent or empty."""
    defences = read(tables, "defences")
    return None if defences is None or defences.empty else defences.rename(columns={VALUE: "cka"})


def _top_cells(defences: pd.DataFrame) -> pd.DataFrame:
    """The top encoder layer's rows of each language and comparison."""
    top = defences.groupby("language")["index"].transform("max")
    return defences[defences["index"] == top]


def defence_finding(tables: Path) -> str | None:
    """How much of the top encoder layer's CKA its top principal direction carries, and whether the lean
    agrees with angular Procrustes."""
    defences = _defences(tables)
    if defences is None:
        return None
    clauses = []
    for code, rows in _top_cells(defences).groupby("language", sort=True):
        carried = ", ".join(
            f"{r.comparison} {r.cka:.2f} → {r.cka_minus_top1:.2f} (top-1 share {100 * r.top1_share:.0f} %)"
            for r in rows.itertuples()
        )
        lean = defences[(defences["language"] == code) & defences["agrees"].notna()].drop_duplicates("index")
        agreeing = int(lean["agrees"].map(agree).sum())
        clauses.append(
            f"in {language(code)}, {carried}; the lean has the same sign under angular Procrustes at "
            f"{agreeing} of {len(lean)} encoder layers"
        )
    return (
        "Without each side's top principal direction, CKA at the top encoder layer goes "
        f"{'; '.join(clauses)} (a large drop means one direction carries the similarity)."
    )


def defence_section(tables: Path) -> list[Block]:
    """Every headline cell's CKA with and without the top directions, and the Procrustes check."""
    defences = _defences(tables)
    if defences is None:
        return []
    intro = Paragraph(
        "Linear CKA of the same-index encoder layers, after removing each side's top 1 and 3 principal "
        "directions, the share of CKA's numerator those directions carry, and the angular Procrustes "
        "distance (radians, 0: same shape); `agrees`: the lean CKA(DO, SSO) − CKA(DO, MSO) has the sign "
        "of angle(DO, MSO) − angle(DO, SSO)."
    )
    items = [
        Item(
            f"{r.language} {r.comparison} layer {short(str(r.layer_a))}:",
            (
                f"CKA {r.cka:.3f}, without top 1 {r.cka_minus_top1:.3f}, "
                f"without top 3 {r.cka_minus_top3:.3f}; "
                f"top-1 share {r.top1_share:.2f}, top-3 share {r.top3_share:.2f}; Procrustes angle "
                f"{r.procrustes_angle:.3f}" + ("" if pd.isna(r.agrees) else f"; agrees: {r.agrees}"),
            ),
        )
        for r in defences.itertuples()
    ]
    return [Section("CKA's own pitfalls: top directions and a second measure", (intro, Items(tuple(items))))]
