"""Figures drawn from the analysis tables only (they never recompute CKA).

* :func:`heatmap_figure`: layer-by-layer CKA matrices, per comparison and language
* :func:`diagonal_figure`: CKA by layer with bootstrap bands, languages together
* :func:`cer_gap_figure`, :func:`cer_markdown`: the CER gap per edit-distance bin, the CER table
* :func:`write_figures`: all of them from a tables folder, as PNG and PDF
"""

from cka_probe.figures.diagonal import diagonal_figure
from cka_probe.figures.heatmap import heatmap_figure
from cka_probe.figures.style import save

__all__ = ["diagonal_figure", "heatmap_figure", "save"]
