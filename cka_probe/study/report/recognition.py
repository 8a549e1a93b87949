"""Recognition: SO vs DO CER per language and task, by edit-distance bin, held against the paper.

CER in percent, gaps DO − SO in CER points (positive: multi-task learning
made the task worse). A direction needs the pooled interval to exclude 0 and
every seed to agree in sign.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Item, Items, Paragraph, Section, Table
from cka_probe.study.report.brought import brought_roles
from cka_probe.study.report.reading import agree, per_seed, read
from cka_probe.study.report.wording import interval
from cka_probe.text.cer import ED_BINS

PAPER_EXPECTS = {"meaning": -1, "surface": +1}
"""The paper's CER findings as the sign of DO − SO: MTL helps the meaning task and hurts the surface task."""

SEEDS_DISAGREE = "the pooled interval excludes 0 but the seeds disagree in sign"


def outcome(sign: int, low: float, high: float, seeds_agree: bool = True) -> str:
    """How an interval stands to the expected ``sign``: ``"as"`` the paper, ``"opposite"``, or unresolved
    because it includes 0 (``"zero"``) or because the seeds disagree in sign (``"seeds"``)."""
    if not (low > 0 or high < 0):
        return "zero"
    if not seeds_agree:
        return "seeds"
    return "as" if (low > 0) == (sign > 0) else "opposite"


def verdict(
    sign: int, low: float, high: float, unresolved: str = "the interval includes 0", seeds_agree: bool = True
) -> str:
    """The verdict table's words for :func:`outcome`; ``unresolved`` says why an interval with 0 is open."""
    return {
        "as": "as in the paper",
        "opposite": "**the opposite** of the paper",
        "zero": f"not resolved ({unresolved})",
        "seeds": f"not resolved ({SEEDS_DISAGREE})",
    }[outcome(sign, low, high, seeds_agree)]


def char_rows(tables: Path) -> pd.DataFrame | None:
    """The pooled character-level rows of ``cer.csv``."""
    cer = read(tables, "cer")
    return None if cer is None else cer[cer["unit"] == "char"]


def seed_values(tables: Path, row) -> str:
    """The per-seed gaps of one pooled ``cer.csv`` row (empty with one seed)."""
    return per_seed(tables, "cer", {"language": row.language, "task": row.task, "unit": "char"}, "gap")


def undertrained(so_cer: float, do_cer: float, oracle_cer: float) -> bool:
    """Both models err more than the two transcripts differ (the oracle CER).

    Then neither model separates what was said from what was meant, and a CER
    difference between them is not evidence about multi-task learning.
    """
    return min(so_cer, do_cer) > oracle_cer


def _change(row) -> str:
    """The direction in which MTL moved one task's CER, or why no direction is read."""
    if not (row.ci_low > 0 or row.ci_high < 0):
        return "no clear change (the interval includes 0)"
    if not agree(getattr(row, "seeds_agree", True)):
        return f"no clear change ({SEEDS_DISAGREE})"
    return "MTL made it **worse**" if row.ci_low > 0 else "MTL made it **better**"


def _caution(row, brought: bool) -> str:
    """The warning for undertrained models, with the remedy that applies: train longer, or (models the user
    brought) models that transcribe this data."""
    if not undertrained(row.so_cer, row.do_cer, row.oracle_cer):
        return ""
    remedy = "bring models that transcribe this data" if brought else "train longer"
    return (
        f" **Caution:** both models' CER exceeds the oracle CER ({row.oracle_cer:.1f} %): they do not yet "
        f"separate the two transcripts, so this difference says nothing about multi-task learning ({remedy})."
    )


def cer_section(tables: Path) -> list[Block]:
    """SO vs DO CER per language and task (the ``cer.md`` table), and the direction in which MTL moved
    each."""
    cer = char_rows(tables)
    if cer is None:
        return []
    items = []
    for r in cer.itertuples(index=False):
        count = getattr(r, "seeds", 1)
        items.append(
            Item(
                f"{r.language} {r.task} (n = {r.n}, {count} seed{'s' * (count > 1)}): SO {r.so_cer:.2f} % "
                f"→ DO {r.do_cer:.2f} %, DO − SO = {interval(r.gap, r.ci_low, r.ci_high)} points"
                f"{seed_values(tables, r)}: {_change(r)} (oracle {r.oracle_cer:.1f} %)."
                f"{_caution(r, bool(brought_roles(tables, r.language)))}"
            )
        )
    table = Table.from_markdown((tables / "cer.md").read_text())
    return [Section("Recognition: single-output (SO) vs dual-output (DO)", (table, Items(tuple(items))))]


def by_bin(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of one language and task indexed by ``ed_bin``, from the lowest bin to the highest present."""
    return rows.set_index("ed_bin").reindex([b for b in ED_BINS if b in set(rows["ed_bin"])])


def gap_section(tables: Path) -> list[Block]:
    """The DO−SO gap per edit-distance bin, and whether it grows with the distance."""
    gaps = read(tables, "cer_gaps")
    if gaps is None:
        return []
    items = []
    for (language, task), rows in gaps[gaps["unit"] == "char"].groupby(["language", "task"], sort=False):
        rows = by_bin(rows)
        cells = ", ".join(
            f"ED {b} (n={int(r.n)}): {interval(r.gap, r.ci_low, r.ci_high)}" for b, r in rows.iterrows()
        )
        first, last = rows.iloc[0], rows.iloc[-1]
        trend = "grows" if last.gap > first.gap else "does not grow"
        separated = last.ci_low > first.ci_high or last.ci_high < first.ci_low
        items.append(
            Item(
                f"{language} {task}: {cells}. From the lowest to the highest bin the gap {trend} "
                f"({first.gap:+.2f} → {last.gap:+.2f}); the two intervals "
                f"{'do not overlap' if separated else 'overlap'}."
            )
        )
    return [Section("The CER gap by surface–meaning edit distance", (Items(tuple(items)),))]


def extremes(gaps: pd.DataFrame, language: str, task: str) -> tuple[pd.Series, pd.Series]:
    """The character-level rows of the lowest and the highest edit-distance bin of one language and task."""
    rows = gaps[(gaps["unit"] == "char") & (gaps["language"] == language) & (gaps["task"] == task)]
    bins = by_bin(rows)
    return bins.iloc[0], bins.iloc[-1]


def separation(first: pd.Series, last: pd.Series) -> tuple[float, float]:
    """Bounds on the highest bin's gap minus the lowest's, read off their two intervals (they exclude 0
    exactly when the intervals do not overlap)."""
    return last.ci_low - first.ci_high, last.ci_high - first.ci_low


def claim(task: str) -> str:
    """The paper's finding for one task: ``MTL helps meaning (DO − SO < 0)``."""
    sign = PAPER_EXPECTS[task]
    return f"MTL {'helps' if sign < 0 else 'hurts'} {task} (DO − SO {'<' if sign < 0 else '>'} 0)"


def _paper_rows(tables: Path, r, gaps: pd.DataFrame) -> list[tuple[str, ...]]:
    """The verdict table's two rows of one language and task: overall, and growing with edit distance."""
    sign = PAPER_EXPECTS[r.task]
    n = f", n = {r.n}" if hasattr(r, "n") else ""
    overall = (
        r.language,
        claim(r.task),
        f"{interval(r.gap, r.ci_low, r.ci_high)}{n}{seed_values(tables, r)}",
        verdict(sign, r.ci_low, r.ci_high, seeds_agree=agree(getattr(r, "seeds_agree", True))),
    )
    first, last = extremes(gaps, r.language, r.task)
    growth = (
        r.language,
        f"… more so at larger edit distance (ED {last.name} vs ED {first.name})",
        " → ".join(interval(b.gap, b.ci_low, b.ci_high) for b in (first, last)),
        verdict(sign, *separation(first, last), "the intervals overlap"),
    )
    return [overall, growth]


def paper_section(tables: Path) -> list[Block]:
    """Each of the paper's CER findings, per language, held against this run's intervals.

    Overall: DO − SO below 0 for meaning, above 0 for surface. With edit
    distance: the same effect larger in the highest bin than in the lowest
    (their difference read off the two bins' intervals).
    """
    cer, gaps = char_rows(tables), read(tables, "cer_gaps")
    if cer is None or gaps is None:
        return []
    rows = [row for r in cer.itertuples(index=False) for row in _paper_rows(tables, r, gaps)]
    table = Table(("language", "the paper finds", "this run", "verdict"), tuple(rows))
    note = Paragraph(
        "A verdict needs the interval pooled over seeds to exclude 0 and every seed to agree in sign; "
        "an edit-distance verdict is resolved only when the two bins' intervals do not overlap."
    )
    return [Section("Against the paper's findings", (table, note))]
