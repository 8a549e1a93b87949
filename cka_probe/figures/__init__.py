"""Figures drawn from the analysis tables only (they never recompute CKA).

* :func:`heatmap_figure`: layer-by-layer CKA matrices, per comparison and language
* :func:`diagonal_figure`: CKA by layer with bootstrap bands, languages together
* :func:`cer_gap_figure`: the CER gap per edit-distance bin
* :func:`write_figures`: all of them from a tables folder, as PNG and PDF
"""

from cka_probe.figures.cer import cer_gap_figure
from cka_probe.figures.diagonal import diagonal_figure
from cka_probe.figures.heatmap import heatmap_figure
from cka_probe.figures.style import save
from cka_probe.figures.write import write_figures

__all__ = ["cer_gap_figure", "diagonal_figure", "heatmap_figure", "save", "write_figures"]
