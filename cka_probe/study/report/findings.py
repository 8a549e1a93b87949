"""Key findings: at most ten plain sentences that say what a run found, each with its numbers.

One sentence per topic, every language in it: the seeds (and the seed-to-seed
ceiling), the paper's two CER findings, where the DO encoder leans, how its
comparisons sit against the ceiling and the random floor, and, where the run
has them, the mitigation variants, the word-level pull, what the probes find
the DO encoder keeps of the said form, and how much of the headline CKA one
direction carries (:mod:`~cka_probe.study.report.knows`). Each quotes a
value with its 95 % interval and states its verdict under the rules of the
detail sections (BH-adjusted p < 0.05, every seed agreeing).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.report.brought import all_brought, ceiling_advice, languages
from cka_probe.study.report.knows import defence_finding, probe_finding
from cka_probe.study.report.layers import REFERENCE_LABELS, RELATIVE, seed_count
from cka_probe.study.report.reading import agree, cleared, read
from cka_probe.study.report.recognition import (
    PAPER_EXPECTS,
    char_rows,
    extremes,
    outcome,
    separation,
    undertrained,
)
from cka_probe.study.report.studies import mitigation_tables, variant_verdict, variants
from cka_probe.study.report.wording import (
    grouped,
    interval,
    join,
    language,
    layer_range,
    peak,
    placement,
    quote,
    short,
)
from cka_probe.study.schema import CEILING, FLOOR_NAME, VALUE, diagonal

HOLDS = {
    "as": "holds",
    "opposite": "is **reversed**",
    "zero": "is not resolved",
    "seeds": "is not resolved (the seeds disagree in sign)",
}
"""How a language's interval stands to one of the paper's findings (:func:`~.recognition.outcome`)."""


def _ceiling_levels(tables: Path) -> list[str]:
    """``0.91 [0.88, 0.94] in English``: the seed-to-seed ceiling at the top encoder layer, per language."""
    cross = read(tables, "cross_task")
    if cross is None:
        return []
    rows = diagonal(cross[(cross["part"] == "encoder") & (cross["comparison"] == CEILING)])
    top = rows.sort_values(["language", "index_a"]).groupby("language").tail(1)
    return [
        f"{r[VALUE]:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] in {language(r.language)}"
        for _, r in top.iterrows()
    ]


def seeds_finding(tables: Path) -> str:
    """Whether seeds were pooled, and how similar two SSO models of different seeds are."""
    k = seed_count(tables)
    one = "One model per role was brought" if all_brought(tables) else "One seed"
    head = (
        f"{one}: training variance not measured, so every interval covers the sampling of utterances only"
        if k == 1
        else f"The findings pool {k} seeds per role, so every interval holds the spread between seeds "
        "as well as the sampling of utterances"
    )
    levels = _ceiling_levels(tables)
    if not levels:
        needs = join([f"{ceiling_advice(tables, code)} in {language(code)}" for code in languages(tables)])
        return f"{head}; no seed-to-seed ceiling was measured (it {needs})."
    return (
        f"{head}; two SSO models trained from different seeds reach a CKA of {join(levels)} at the top "
        "encoder layer (the seed-to-seed ceiling)."
    )


def _cer_clause(r) -> tuple[str, str]:
    """How one language's DO − SO interval stands to the paper's finding for its task, and where."""
    said = HOLDS[outcome(PAPER_EXPECTS[r.task], r.ci_low, r.ci_high, agree(getattr(r, "seeds_agree", True)))]
    caution = (
        f"; both models err more than the oracle CER of {r.oracle_cer:.1f} %, so they are undertrained"
        if undertrained(r.so_cer, r.do_cer, r.oracle_cer)
        else ""
    )
    return said, f"in {language(r.language)} ({interval(r.gap, r.ci_low, r.ci_high)} points{caution})"


def _growth_clause(gaps: pd.DataFrame, r) -> tuple[str, str]:
    """How one language's lowest and highest edit-distance bins stand to "more so at larger distance"."""
    first, last = extremes(gaps, r.language, r.task)
    said = HOLDS[outcome(PAPER_EXPECTS[r.task], *separation(first, last))]
    bins = " → ".join(f"ED {b.name} {interval(b.gap, b.ci_low, b.ci_high)}" for b in (first, last))
    return said, f"in {language(r.language)} ({bins} points)"


def cer_findings(tables: Path) -> list[str]:
    """The paper's CER findings (MTL helps meaning, hurts surface, more so at larger edit distance) against
    this run, one sentence per task."""
    cer, gaps = char_rows(tables), read(tables, "cer_gaps")
    if cer is None:
        return []
    sentences = []
    for task, sign in PAPER_EXPECTS.items():
        rows = list(cer[cer["task"] == task].itertuples(index=False))
        if not rows:
            continue
        verb = "helps" if sign < 0 else "hurts"
        sentence = (
            f"The paper's finding that multi-task learning {verb} the {task} task "
            f"(DO − SO {'<' if sign < 0 else '>'} 0) {grouped([_cer_clause(r) for r in rows])}"
        )
        if gaps is not None:
            growth = grouped([_growth_clause(gaps, r) for r in rows])
            sentence += f"; that the effect grows with edit distance {growth}"
        sentences.append(f"{sentence}.")
    return sentences


def _lean_clause(code: str, rows: pd.DataFrame) -> tuple[str, str]:
    """Where one language's DO encoder is closer to the surface or the meaning model, with its lean."""
    resolved, order = cleared(rows), list(rows["layer"])
    to_sso, to_mso = (list(resolved.loc[resolved["lean"] * sign > 0, "layer"]) for sign in (1, -1))
    lean = f"in {language(code)} (lean {quote(peak(rows, 'lean'), 'lean')})"
    if to_sso and to_mso:
        where = f"at {layer_range(to_sso, order)} and to the meaning model at {layer_range(to_mso, order)}"
        return f"closer to the surface model {where}", lean
    if to_sso or to_mso:
        first, second = ("surface", "meaning") if to_sso else ("meaning", "surface")
        return (
            f"closer to the {first} model than to the {second} model",
            f"at {layer_range(to_sso + to_mso, order)} {lean}",
        )
    return "closer to neither model", f"at any layer {lean}"


def encoder_finding(tables: Path) -> str | None:
    """Where the shared DO encoder leans: toward the surface (SSO) or the meaning (MSO) encoder, by layer."""
    lean = read(tables, "encoder_entanglement")
    if lean is None:
        return None
    clauses = [_lean_clause(code, rows) for code, rows in lean.groupby("language", sort=True)]
    return f"The DO encoder sits {grouped(clauses)}, where lean = CKA(DO, SSO) − CKA(DO, MSO)."


def _reference_clause(code: str, rows: pd.DataFrame) -> str:
    """How DO~SSO and DO~MSO sit against one reference in one language, by layer, with the top layer's
    difference; written once for both when they sit alike."""
    sides = []
    for name, own in rows.groupby("comparison", sort=False):
        own = own.sort_values("index")
        sides.append((name.replace("-", "~"), placement(own, "difference", RELATIVE), own.iloc[-1]))
    top = f"at layer {short(sides[-1][2]['layer'])}"
    values = lambda group: join([interval(r.difference, r.ci_low, r.ci_high) for _, _, r in group])
    if len(sides) > 1 and len({where for _, where, _ in sides}) == 1:
        return (
            f"in {language(code)}, {join([n for n, _, _ in sides])} are {sides[0][1]} ({values(sides)} {top})"
        )
    parts = [f"{name} is {where} ({values([(name, where, r)])} {top})" for name, where, r in sides]
    return f"in {language(code)}, {', and '.join(parts)}"


def reference_findings(tables: Path) -> list[str]:
    """The DO encoder's CKA to the SO encoders against the seed-to-seed ceiling and the random floor."""
    gaps = read(tables, "reference_gaps")
    if gaps is None:
        return []
    sentences = []
    for reference in (CEILING, FLOOR_NAME):
        rows = gaps[(gaps["part"] == "encoder") & (gaps["reference"] == reference)]
        clauses = [_reference_clause(code, own) for code, own in rows.groupby("language", sort=True)]
        if clauses:
            sentences.append(
                f"Against the {REFERENCE_LABELS[reference]} (encoder; comparison − reference): "
                f"{'; '.join(clauses)}."
            )
    return sentences


def _mitigation_numbers(rows: pd.DataFrame, paths: pd.DataFrame) -> str:
    """The surface path's lean change and the surface CER gap to plain DO of one variant, where present."""
    numbers = []
    if "surface" in paths.index:
        r = paths.loc["surface"]
        numbers.append(f"surface path's lean change {interval(r.change, r.ci_low, r.ci_high, 3)}")
    if ("surface", "DO") in rows.index:
        r = rows.loc[("surface", "DO")]
        numbers.append(f"surface CER − DO {interval(r.gap, r.ci_low, r.ci_high)} points")
    return "; ".join(numbers)


def mitigation_finding(tables: Path) -> str | None:
    """Per variant and language, whether it reduced entanglement and closed the surface gap."""
    found = mitigation_tables(tables)
    clauses = [
        (
            f"{variant} {variant_verdict(rows, paths)}",
            f"in {language(code)} ({_mitigation_numbers(rows, paths)})",
        )
        for code, variant, rows, paths in (variants(*found) if found else ())
    ]
    return f"Of the structured multi-task variants, {grouped(clauses)}." if clauses else None


def word_finding(tables: Path) -> str | None:
    """Where the DO encoder's pull toward the meaning model is concentrated on the words that differ."""
    lean = read(tables, "word_lean")
    if lean is None:
        return None
    clauses = []
    for code, rows in lean.groupby("language", sort=True):
        resolved = cleared(rows)
        toward = list(resolved.loc[resolved["concentration"] < 0, "layer"])
        concentration = quote(peak(rows, "concentration", -1), "concentration")
        clauses.append(
            (
                f"at {layer_range(toward, list(rows['layer']))}",
                f"in {language(code)} (concentration {concentration})",
            )
        )
    return (
        "The DO encoder's pull toward the meaning model is concentrated on the words where the two "
        f"transcripts differ {grouped(clauses)}."
    )


def key_findings(tables: Path) -> list[str]:
    """The run's key findings: at most ten sentences, one per topic (topics the run lacks left out)."""
    found = [
        seeds_finding(tables),
        *cer_findings(tables),
        encoder_finding(tables),
        *reference_findings(tables),
        mitigation_finding(tables),
        word_finding(tables),
        probe_finding(tables),
        defence_finding(tables),
    ]
    return [sentence for sentence in found if sentence]
