"""The report's blocks as Markdown (``report.md``)."""

from __future__ import annotations

from collections.abc import Sequence

from cka_probe.study.report.blocks import Block, Figure, Items, Paragraph, Section, Table


def _table(table: Table) -> str:
    """A pipe table; numeric columns right-aligned."""
    row = lambda cells: "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
    rule = "|" + "|".join("---:" if right else "---" for right in table.aligned_right()) + "|"
    return "\n".join([row(table.header), rule, *map(row, table.rows)])


def _items(items: Items) -> str:
    return "\n".join(
        line
        for item in items.items
        for line in (f"- {item.text}", *(f"  - {child}" for child in item.children))
    )


def _block(block: Block, level: int) -> str:
    match block:
        case Paragraph(text):
            return text
        case Items():
            return _items(block)
        case Table():
            return _table(block)
        case Figure(path, caption):
            return f"![{caption}]({path})"
        case Section(title, blocks):
            return "\n\n".join([f"{'#' * level} {title}", markdown(blocks, level + 1).rstrip("\n")])
    raise TypeError(f"not a report block: {block!r}")


def markdown(blocks: Sequence[Block], level: int = 2) -> str:
    """The blocks as Markdown, sections headed at ``level`` (``##``) and their subsections below it."""
    return "\n\n".join(_block(block, level) for block in blocks) + "\n"
