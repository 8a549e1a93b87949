"""Analyses over activation stores and evaluation outputs, as tidy pandas tables.

* :func:`compare_stores`: layer-by-layer CKA of two stores
* :func:`cross_task` / :func:`cross_task_arrays`: the paper's comparison set per language
* :func:`cross_lang` / :func:`language_differences`: the same set across languages, with differences
* :func:`cer_table`, :func:`cer_gaps`: SO vs DO CER, and the DO−SO gap per edit-distance bin
* :func:`encoder_entanglement`, :func:`decoder_departure`: what a reader should take from the tables
* :func:`write_tables`: all of them, as CSV files in one folder
"""

from cka_probe.analyze.cer import cer_gaps, cer_table
from cka_probe.analyze.compare_stores import compare_stores
from cka_probe.analyze.cross_lang import cross_lang, language_differences
from cka_probe.analyze.cross_task import COMPARISONS, CrossTaskResult, cross_task, cross_task_arrays, diagonal
from cka_probe.analyze.roles import ROLES, assign_roles
from cka_probe.analyze.summary import decoder_departure, encoder_entanglement
from cka_probe.analyze.tables import write_tables

__all__ = [
    "COMPARISONS", "ROLES", "CrossTaskResult", "assign_roles", "cer_gaps", "cer_table", "compare_stores", "cross_lang",
    "cross_task", "cross_task_arrays", "decoder_departure", "diagonal", "encoder_entanglement", "language_differences",
    "write_tables",
]  # fmt: skip
