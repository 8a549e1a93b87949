"""The report of a run as one tree of blocks, in reading order.

Key findings first; then the verdicts against the paper, the CER table, the
figures and the mitigation variants; then an appendix of the per-layer detail
that every finding is read from (collapsed in the HTML report), the stage
timings last.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Figure, Item, Items, Paragraph, Section, Table
from cka_probe.study.report.brought import all_brought, brought_section, replicates_advice, single_roles
from cka_probe.study.report.findings import key_findings
from cka_probe.study.report.knows import defence_section, probe_section
from cka_probe.study.report.layers import cross_lang_section, decoder_section, encoder_section, seed_count
from cka_probe.study.report.recognition import cer_section, gap_section, paper_section
from cka_probe.study.report.studies import mitigation_section, word_section

TITLE = "cka-probe report"

EVERY_PAIR = "similarity for every pair of layers, per language and comparison."
DIAGONAL = "similarity layer by layer, with the seed-to-seed ceiling and the random floor."
FIGURES = {
    "cer_gap_by_ed": "The DO − SO CER gap by surface–meaning edit distance, per task (above 0: MTL hurt).",
    "heatmap_encoder": f"Encoder {EVERY_PAIR}",
    "diagonal_encoder": f"Encoder {DIAGONAL}",
    "heatmap_decoder": f"Decoder {EVERY_PAIR}",
    "diagonal_decoder": f"Decoder {DIAGONAL}",
    "word_probes": "What each encoder layer keeps of the said and the meant word at divergent words: surface "
    "preference and selectivities by layer, SSO′ (dashed) and RAND (dotted) for reference.",
}
"""The figures of a run (``figures/<name>.png``) in reading order, with their captions."""


def intro(run_dir: Path) -> Paragraph:
    return Paragraph(
        f"Run directory `{run_dir.name}`. Intervals are 95 % bootstrap intervals for the population value "
        "(over utterances, and over seeds where several are pooled); CER in percent, CER gaps in percentage "
        "points (DO − SO: positive means multi-task learning hurt)."
    )


def findings_section(tables: Path) -> Section:
    return Section("Key findings", (Items(tuple(Item(sentence) for sentence in key_findings(tables))),))


def figures_section(run_dir: Path) -> list[Block]:
    """Every PNG in ``figures/``: the known ones in reading order with their captions, any others after."""
    present = {path.stem for path in (run_dir / "figures").glob("*.png")}
    names = [name for name in FIGURES if name in present] + sorted(present - set(FIGURES))
    figures = tuple(Figure(f"figures/{name}.png", FIGURES.get(name, name)) for name in names)
    return [Section("Figures", figures)] if figures else []


def seeds_section(tables: Path) -> list[Block]:
    """How many seeds per role the findings pool, and what that leaves unmeasured."""
    seeds = seed_count(tables)
    if seeds > 1:
        text = (
            f"Every finding pools {seeds} training seeds per role: the mean over seeds, with an interval "
            f"that holds the spread between seeds, read with Student's t on {seeds - 1} degrees of freedom, "
            "as well as the sampling of utterances (CKA: the seed mean's bootstrap draws plus a "
            "t-distributed seed part; CER gaps: Banerjee's interval on the two parts). Each seed's value "
            "is in the tables' `seed` column."
        )
    else:
        how = single_roles(tables) if all_brought(tables) else "each role had one seed"
        text = (
            f"**Training variance was not measured**: {how}, so the intervals cover the sampling of "
            "utterances only, and other seeds (or another machine) can move a finding across zero. For "
            f"findings that pool seeds, {replicates_advice(tables)}."
        )
    return [Section("Seeds", (Paragraph(text),))]


def stage_section(run_dir: Path) -> list[Block]:
    """How long each stage took in the run that produced it."""
    path = run_dir / "stages.csv"
    if not path.exists():
        return []
    stages = pd.read_csv(path)
    done = stages[stages["status"] == "done"].drop_duplicates("stage", keep="last")
    rows = tuple((r.stage, f"{r.seconds:.0f}") for r in done.itertuples())
    return [Section("Stages", (Table(("stage", "seconds"), rows, (False, True)),))]


def appendix(run_dir: Path) -> Section:
    """The per-layer detail behind the findings, each part collapsed in the HTML report."""
    tables = run_dir / "tables"
    parts = [
        *seeds_section(tables),
        *gap_section(tables),
        *encoder_section(tables),
        *decoder_section(tables),
        *word_section(tables),
        *probe_section(tables),
        *defence_section(tables),
        *cross_lang_section(tables),
        *stage_section(run_dir),
    ]
    note = Paragraph(
        "Every number the findings quote, layer by layer, with the rule that resolved it: a BH-adjusted "
        "p < 0.05 over the layers of one comparison and, pooled over seeds, every seed agreeing in sign."
    )
    return Section("Appendix: per-layer detail", (note, *(replace(part, collapsed=True) for part in parts)))


def document(run_dir: Path) -> Section:
    """The report of ``run_dir`` (its ``tables/``, ``figures/``, ``stages.csv``)."""
    tables = run_dir / "tables"
    return Section(
        TITLE,
        (
            intro(run_dir),
            findings_section(tables),
            *brought_section(tables),
            *paper_section(tables),
            *cer_section(tables),
            *figures_section(run_dir),
            *mitigation_section(tables),
            appendix(run_dir),
        ),
    )
