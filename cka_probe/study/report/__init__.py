"""The findings of a run in numbers, written from its tables: ``report.md`` and ``report.html``.

Every statement is read off a table (never recomputed) and carries its 95 %
bootstrap interval and n; the pooled rows (``seed == "all"``: the mean over
seed replicates with its seeds-and-utterances interval) carry the findings, and each
seed's value is shown beside them. A verdict needs the pooled interval to
exclude 0 *and* every seed to agree in sign; "at layers …" statements use the
Benjamini–Hochberg-adjusted p-values (``p_adj`` < 0.05). With one seed per
role the report says that training variance was not measured.

The report opens with at most eight key findings (:mod:`.findings`), then the
verdicts against the paper, the CER table and the figures; the per-layer
detail follows in an appendix (:mod:`.document`). It is built once as blocks
(:mod:`.blocks`) and written twice: as Markdown (:mod:`.to_markdown`) and as a
self-contained HTML page with the figures embedded (:mod:`.to_html`).
"""

from __future__ import annotations

from pathlib import Path

from cka_probe.atomic import atomic_write_text
from cka_probe.study.report.document import document, seeds_section, stage_section
from cka_probe.study.report.findings import key_findings
from cka_probe.study.report.layers import cross_lang_section, decoder_section, encoder_section
from cka_probe.study.report.recognition import cer_section, gap_section, paper_section
from cka_probe.study.report.studies import mitigation_section, word_section
from cka_probe.study.report.to_html import page
from cka_probe.study.report.to_markdown import markdown

__all__ = [
    "cer_section",
    "cross_lang_section",
    "decoder_section",
    "encoder_section",
    "gap_section",
    "key_findings",
    "markdown",
    "mitigation_section",
    "paper_section",
    "seeds_section",
    "stage_section",
    "word_section",
    "write_report",
]


def write_report(run_dir: str | Path, out: str | Path) -> Path:
    """Write the report of ``run_dir`` (its ``tables/``, ``figures/``, ``stages.csv``) to ``out``
    (Markdown) and beside it, as ``report.html`` of the same stem, the self-contained HTML page; returns
    ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    report = document(run_dir)
    atomic_write_text(out, markdown([report], level=1), point="report")
    atomic_write_text(out.with_suffix(".html"), page(report, run_dir), point="report")
    return out
