"""Analyses over activation stores and evaluation outputs, as tidy pandas tables.

* :func:`cross_task_arrays` / :func:`cross_task`: the paper's comparison set per language
* :func:`language_differences` / :func:`cross_lang`: the same set across languages, with differences
* :func:`cer_table`, :func:`cer_gaps`: SO vs DO CER, and the DO−SO gap per edit-distance bin
* :func:`entanglement_summary`: what a reader should take from the tables
"""

from cka_probe.analyze.cross_lang import cross_lang, language_differences
from cka_probe.analyze.cross_task import COMPARISONS, CrossTaskResult, cross_task, cross_task_arrays, diagonal
from cka_probe.analyze.roles import ROLES, assign_roles

__all__ = [
    "COMPARISONS", "ROLES", "CrossTaskResult", "assign_roles", "cross_lang", "cross_task", "cross_task_arrays",
    "diagonal", "language_differences",
]  # fmt: skip
