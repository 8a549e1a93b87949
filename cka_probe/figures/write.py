"""Every figure of a run from its tables folder (see :mod:`cka_probe.study.tables`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.errors import CKAProbeError
from cka_probe.figures.cer import cer_gap_figure
from cka_probe.figures.diagonal import diagonal_figure
from cka_probe.figures.heatmap import heatmap_figure
from cka_probe.figures.probes import probe_figure
from cka_probe.figures.style import save
from cka_probe.study import schema


def read_table(path: Path) -> pd.DataFrame:
    """A tidy table written by the analysis (:func:`~cka_probe.study.schema.read_table`); a clear error
    when it is missing."""
    if not path.exists():
        raise CKAProbeError(f"{path}: no such table (run `cka-probe compare --cross-task` first)")
    return schema.read_table(path)


def write_figures(tables_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Heatmaps and diagonal plots (encoder, decoder) and, with their tables, the CER gap figure and the word
    probes' figure; PNG and PDF."""
    tables_dir = Path(tables_dir)
    cross_task = read_table(tables_dir / "cross_task.csv")
    paths = []
    for part in ("encoder", "decoder"):
        paths += save(heatmap_figure(cross_task, part), out_dir, f"heatmap_{part}")
        paths += save(diagonal_figure(cross_task, part), out_dir, f"diagonal_{part}")
    if (tables_dir / "cer_gaps.csv").exists():
        paths += save(cer_gap_figure(read_table(tables_dir / "cer_gaps.csv")), out_dir, "cer_gap_by_ed")
    if (tables_dir / "word_probes.csv").exists():
        paths += save(probe_figure(read_table(tables_dir / "word_probes.csv")), out_dir, "word_probes")
    return paths
