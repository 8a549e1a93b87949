"""The report as data: sections of paragraphs, lists, tables and figures.

Every sentence of the report is written once, into these blocks; the Markdown
(:mod:`~cka_probe.study.report.to_markdown`) and HTML
(:mod:`~cka_probe.study.report.to_html`) writers only lay them out. Text is
inline Markdown limited to ``**bold**``, ``*italic*`` and ```code```.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Paragraph:
    """One paragraph of text."""

    text: str


@dataclass(frozen=True)
class Item:
    """A list item, with the items nested under it."""

    text: str
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class Items:
    """A bulleted list."""

    items: tuple[Item, ...]


@dataclass(frozen=True)
class Table:
    """A table of text cells; ``right`` marks the right-aligned (numeric) columns."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: tuple[bool, ...] = ()

    @classmethod
    def from_markdown(cls, text: str) -> Table:
        """The table of a Markdown pipe table (header, alignment row, body rows)."""
        lines = [_cells(line) for line in text.splitlines() if line.strip().startswith("|")]
        rule = len(lines) > 1 and all(re.fullmatch(r":?-+:?", cell) for cell in lines[1])
        right = tuple(cell.endswith(":") for cell in lines[1]) if rule else ()
        return cls(tuple(lines[0]), tuple(tuple(row) for row in lines[1 + rule :]), right)

    def aligned_right(self) -> tuple[bool, ...]:
        """Right alignment per column (left where the table does not say)."""
        return self.right or (False,) * len(self.header)


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table row (``\\|`` is a literal bar)."""
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [cell.strip().replace("\\|", "|") for cell in cells]


@dataclass(frozen=True)
class Figure:
    """A PNG figure of the run, by its path relative to the report's folder."""

    path: str
    caption: str


@dataclass(frozen=True)
class Section:
    """A titled section; a ``collapsed`` one is detail that the HTML report folds away."""

    title: str
    blocks: tuple[Block, ...]
    collapsed: bool = False


Block = Paragraph | Items | Table | Figure | Section
