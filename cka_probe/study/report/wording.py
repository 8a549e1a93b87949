"""How the report writes numbers, layers and languages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from cka_probe.study.report.reading import cleared
from cka_probe.study.schema import VALUE

LANGUAGES = {"en": "English", "ko": "Korean"}
"""The languages of the bundled corpus by name; other codes are written as they are."""


def language(code: str) -> str:
    """``"en"`` -> ``"English"``; an unknown code as it is."""
    return LANGUAGES.get(code, code)


def interval(value: float, low: float, high: float, digits: int = 2) -> str:
    """``+0.10 [+0.07, +0.12]``: a signed value and its interval."""
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def short(layer: str) -> str:
    """The last part of a layer name: ``encoder.layers.3`` -> ``3``, ``encoder.embed`` -> ``embed``."""
    return layer.split(".")[-1]


def by_layer(rows: pd.DataFrame, layer: str = "layer") -> str:
    """``0: 0.81 [0.78, 0.84], 1: …``: the value column and its interval by layer (named by ``layer``)."""
    return ", ".join(
        f"{short(name)}: {value:.2f} [{low:.2f}, {high:.2f}]"
        for name, value, low, high in rows[[layer, VALUE, "ci_low", "ci_high"]].itertuples(index=False)
    )


def layer_range(layers: Iterable[str], order: Sequence[str]) -> str:
    """Where ``layers`` lie among all layers ``order``: ``every layer``, ``no layer``, ``layer 3``,
    ``layers embed and 0–2``; runs of consecutive numbered layers are joined with a dash."""
    chosen, order = set(layers), list(dict.fromkeys(order))
    if not chosen:
        return "no layer"
    if chosen >= set(order):
        return "every layer"
    runs: list[list[str]] = []
    for previous, layer in zip([None, *order], order):
        numbered = short(layer).isdigit() and previous is not None and short(previous).isdigit()
        if layer in chosen and numbered and runs and runs[-1][-1] == previous:
            runs[-1].append(layer)
        elif layer in chosen:
            runs.append([layer])
    text = join([short(r[0]) if len(r) == 1 else f"{short(r[0])}–{short(r[-1])}" for r in runs])
    return f"layer{'s' * (len(chosen) > 1)} {text}"


def placement(rows: pd.DataFrame, column: str, words: tuple[str, str, str]) -> str:
    """Where the resolved rows of ``column`` lie, by layer: e.g. ``below it at layers 0–2, indistinguishable
    from it at layer 3``, from ``words`` = (below 0, indistinguishable from 0, above 0); empty parts are left
    out."""
    order = list(rows["layer"])
    resolved = cleared(rows)
    below = list(resolved.loc[resolved[column] < 0, "layer"])
    above = list(resolved.loc[resolved[column] > 0, "layer"])
    same = [layer for layer in order if layer not in set(resolved["layer"])]
    parts = zip(words, (below, same, above))
    return ", ".join(f"{word} at {layer_range(layers, order)}" for word, layers in parts if layers)


def peak(rows: pd.DataFrame, column: str, sign: int = 0) -> pd.Series:
    """The row to quote for a range of layers: the resolved row of largest ``|column|`` (of that ``sign``,
    when not 0), else the top layer's."""
    resolved = cleared(rows)
    resolved = resolved[resolved[column] * sign > 0] if sign else resolved
    if resolved.empty:
        return rows.iloc[-1]
    return resolved.loc[resolved[column].abs().idxmax()]


def join(clauses: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, [", ".join(clauses[:-1]), clauses[-1]])) if clauses else ""


def grouped(clauses: Sequence[tuple[str, str]]) -> str:
    """``holds in English (…) and in Korean (…)``: (said, where) clauses, what consecutive ones say alike
    written once."""
    groups: list[tuple[str, list[str]]] = []
    for said, where in clauses:
        if groups and groups[-1][0] == said:
            groups[-1][1].append(where)
        else:
            groups.append((said, [where]))
    return join([f"{said} {join(wheres)}" for said, wheres in groups])


def quote(row: pd.Series, column: str, digits: int = 2) -> str:
    """``+0.10 [+0.07, +0.12] at layer 3``: one row's value, interval and layer."""
    return f"{interval(row[column], row['ci_low'], row['ci_high'], digits)} at layer {short(row['layer'])}"


def intervals_by_layer(rows: pd.DataFrame, column: str, layer: str = "layer") -> str:
    """``0: +0.10 [+0.07, +0.12], 1: …``: the signed ``column`` and its interval by layer (``layer``)."""
    return ", ".join(
        f"{short(name)}: {interval(value, low, high)}"
        for name, value, low, high in rows[[layer, column, "ci_low", "ci_high"]].itertuples(index=False)
    )
