"""What a run of brought models (``reproduce --model LANG:ROLE#K=MODEL``) could and could not measure.

The tables stage of such a run writes ``tables/brought.json``: each brought
model (language, role, replicate, model) and whether its CER is in the tables.
The report then says, in the brought models' terms, how to measure what is
missing: replicates are brought (``--model en:sso#1=…``), never trained with
``--seeds``; a model that cannot transcribe leaves its language's CER out;
the random floor exists for an SSO whose adapter builds it with fresh weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cka_probe.study.report.blocks import Block, Item, Items, Section
from cka_probe.study.report.reading import read
from cka_probe.study.report.wording import join
from cka_probe.study.roles import ROLES
from cka_probe.study.schema import FLOOR_NAME

BROUGHT = "brought.json"
COLUMNS = ["language", "role", "replicate", "model", "cer", "normalise"]
NORMALISED = {
    "basic": "after transformers' Whisper BasicTextNormalizer (lower case, punctuation and symbols removed) "
    "of references and hypotheses",
    "none": "with references and hypotheses compared as written (no normalisation)",
}


def brought(tables: Path) -> pd.DataFrame:
    """The brought models of the run (:data:`COLUMNS`), none when ``tables/brought.json`` is absent."""
    path = tables / BROUGHT
    records = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return pd.DataFrame(records, columns=COLUMNS)


def brought_roles(tables: Path, language: str) -> set[str]:
    """The roles of ``language`` whose models were brought rather than trained."""
    models = brought(tables)
    return set(models.loc[models["language"] == language, "role"])


def bring(language: str, role: str, k: int = 1) -> str:
    """```--model en:sso#1=…```: the option that brings replicate ``k`` of a role."""
    return f"`--model {language}:{role}#{k}=…`"


def languages(tables: Path) -> list[str]:
    """The languages of the run (of its cross-task table, else of its brought models), sorted."""
    cross = read(tables, "cross_task")
    return sorted(set(cross["language"] if cross is not None else brought(tables)["language"]))


def all_brought(tables: Path) -> bool:
    """Whether every role of every language of the run was brought (none trained)."""
    if brought(tables).empty:
        return False
    found = languages(tables)
    return all(brought_roles(tables, language) == set(ROLES) for language in found)


def replicates_advice(tables: Path) -> str:
    """How to measure training variance: bring a second replicate of each brought role that has one, and
    run ``--seeds 3`` only when some role was trained."""
    models = brought(tables)
    counts = models.groupby(["language", "role"], sort=True)["replicate"].count()
    single = [bring(language, role) for (language, role), n in counts.items() if n == 1]
    advice = [f"bring replicates with {join(single)}"] if single else []
    if not all_brought(tables):
        advice.append(f"run `cka-probe reproduce --seeds 3`{' for the trained roles' * bool(single)}")
    return join(advice)


def single_roles(tables: Path) -> str:
    """``"one MSO model and one DO model were brought"``: the brought roles with a single model (a
    language named where the run has several)."""
    models = brought(tables)
    counts = models.groupby(["language", "role"], sort=False)["replicate"].count()
    several = models["language"].nunique() > 1
    single = [
        f"one {f'{language} ' * several}{role.upper()} model"
        for (language, role), n in counts.items()
        if n == 1
    ]
    return f"{join(single)} {'were' if len(single) > 1 else 'was'} brought" if single else ""


def ceiling_advice(tables: Path, language: str) -> str:
    """What the seed-to-seed ceiling of ``language`` needs: a second SSO seed, or a second brought SSO."""
    if "sso" in brought_roles(tables, language):
        return f"needs two SSO models: bring a second with {bring(language, 'sso')}"
    return "needs two SSO seeds: run with `--seeds 2` or more"


def _model_line(r) -> str:
    """One brought model and whether its CER was measured."""
    normalised = f", scored {NORMALISED[r.normalise]}" if r.normalise in NORMALISED else ""
    cer = (
        f"its CER is in the tables{normalised}"
        if r.cer
        else "no CER in the tables (it cannot transcribe, or another model of its language cannot)"
    )
    return f"{r.role.upper()} replicate {int(r.replicate)}: `{r.model}`; {cer}."


def _floor_line(tables: Path, language: str) -> str:
    """Whether the random floor of a language with a brought SSO was measured."""
    cross = read(tables, "cross_task")
    if cross is not None and ((cross["language"] == language) & (cross["comparison"] == FLOOR_NAME)).any():
        return "The random-initialisation floor SSO~RAND: SSO replicate 0's architecture with fresh weights."
    return (
        "The random-initialisation floor SSO~RAND was not measured: SSO replicate 0 is a Python adapter "
        "without a `build_random(device, seed)` duty (add one to draw its architecture with fresh weights)."
    )


def brought_section(tables: Path) -> list[Block]:
    """Per language: each brought model, whether its CER was measured, and whether the floor was."""
    models = brought(tables)
    items = []
    for language, rows in models.groupby("language", sort=True):
        lines = [_model_line(r) for r in rows.itertuples(index=False)]
        if "sso" in set(rows["role"]):
            lines.append(_floor_line(tables, language))
        items.append(Item(f"{language}:", tuple(lines)))
    return [Section("Brought models", (Items(tuple(items)),))] if items else []
