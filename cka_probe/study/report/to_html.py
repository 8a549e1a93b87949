"""The report's blocks as one self-contained HTML page (``report.html``).

Figures are embedded as base64 PNG, tables are HTML tables, collapsed
sections are ``<details>`` elements, and a small inline stylesheet lays the
page out: the page loads nothing and runs no script.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from cka_probe.study.report.blocks import Block, Figure, Items, Paragraph, Section, Table

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #222; max-width: 70rem; margin: 2rem auto;
       padding: 0 1.5rem; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #444; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; }
code { font-size: 0.9em; background: #f3f3f3; padding: 0 0.2em; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9rem; color: #555; }
details { margin: 0.6rem 0; border: 1px solid #ddd; border-radius: 4px; padding: 0.3rem 0.8rem; }
summary { cursor: pointer; font-weight: 600; }
section.key-findings li { margin: 0.4rem 0; }
""".strip()


def inline(text: str) -> str:
    """Text with its ``**bold**``, ``*italic*`` and ```code``` as HTML, everything else escaped."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*([^*\s][^*]*?)\*", r"<em>\1</em>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


NUMERIC = ' class="num"'
"""The attribute of a right-aligned (numeric) table cell."""


def _cells(tag: str, texts: Sequence[str], right: Sequence[bool]) -> str:
    """One row's cells; right-aligned ones of class ``num``."""
    return "".join(
        f"<{tag}{NUMERIC if numeric else ''}>{inline(text)}</{tag}>" for text, numeric in zip(texts, right)
    )


def _table(table: Table) -> str:
    right = table.aligned_right()
    head = _cells("th", table.header, right)
    body = "".join(f"<tr>{_cells('td', row, right)}</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _items(items: Items) -> str:
    def item(entry) -> str:
        nested = "".join(f"<li>{inline(child)}</li>" for child in entry.children)
        return f"<li>{inline(entry.text)}{f'<ul>{nested}</ul>' if nested else ''}</li>"

    return f"<ul>{''.join(map(item, items.items))}</ul>"


def _figure(figure: Figure, folder: Path) -> str:
    data = base64.b64encode((folder / figure.path).read_bytes()).decode("ascii")
    caption = inline(figure.caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.caption)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _section(section: Section, level: int, folder: Path) -> str:
    body = blocks_html(section.blocks, folder, level + 1)
    if section.collapsed:
        return f"<details><summary>{inline(section.title)}</summary>\n{body}\n</details>"
    slug = re.sub(r"[^a-z0-9]+", "-", section.title.lower()).strip("-")
    return f'<section class="{slug}">\n<h{level}>{inline(section.title)}</h{level}>\n{body}\n</section>'


def _block(block: Block, folder: Path, level: int) -> str:
    match block:
        case Paragraph(text):
            return f"<p>{inline(text)}</p>"
        case Items():
            return _items(block)
        case Table():
            return _table(block)
        case Figure():
            return _figure(block, folder)
        case Section():
            return _section(block, level, folder)
    raise TypeError(f"not a report block: {block!r}")


def blocks_html(blocks: Sequence[Block], folder: Path, level: int = 2) -> str:
    """The blocks as HTML, sections headed ``<h{level}>``; figures read from ``folder``."""
    return "\n".join(_block(block, folder, level) for block in blocks)


def page(document: Section, folder: Path) -> str:
    """The whole report: ``document``'s title as the page title and ``<h1>``, its blocks below."""
    title = html.escape(document.title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n"
        f"<h1>{inline(document.title)}</h1>\n{blocks_html(document.blocks, folder)}\n</body>\n</html>\n"
    )
