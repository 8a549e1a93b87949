"""The paper's study over activation stores and evaluation outputs, as tidy pandas tables.

* :func:`cross_task` / :func:`cross_task_arrays`: the paper's comparison set per language
* :func:`cross_lang` / :func:`language_differences`: the same set across languages, with differences
* :func:`cer_table`, :func:`cer_gaps`: SO vs DO CER, and the DO−SO gap per edit-distance bin
* :func:`encoder_entanglement`, :func:`decoder_departure`: what a reader should take from the tables
* :func:`write_tables`: all of them, as CSV files in one folder
* :func:`write_report`: the run's report from those tables
"""

from cka_probe.study.cer import cer_gaps, cer_table
from cka_probe.study.cross_lang import cross_lang, language_differences
from cka_probe.study.cross_task import COMPARISONS, CrossTaskResult, cross_task, cross_task_arrays
from cka_probe.study.report import write_report
from cka_probe.study.roles import ROLES, assign_roles
from cka_probe.study.schema import diagonal, pooled
from cka_probe.study.summary import decoder_departure, encoder_entanglement
from cka_probe.study.tables import write_tables

__all__ = [
    "COMPARISONS",
    "ROLES",
    "CrossTaskResult",
    "assign_roles",
    "cer_gaps",
    "cer_table",
    "cross_lang",
    "cross_task",
    "cross_task_arrays",
    "decoder_departure",
    "diagonal",
    "encoder_entanglement",
    "language_differences",
    "pooled",
    "write_report",
    "write_tables",
]
