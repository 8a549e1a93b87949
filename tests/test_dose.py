"""The dose–response tables of a sweep (cka_probe.study.dose) and their figures (cka_probe.figures.dose)."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import norm

from cka_probe.errors import CKAProbeError
from cka_probe.figures.dose import (
    dose_figure,
    dose_layers_figure,
    dynamics_figure,
    surface_heatmap,
    write_dose_figures,
)
from cka_probe.inference.dose_response import slope_from_se
from cka_probe.study import schema
from cka_probe.study.dose import Cell, dose_slopes, dose_table, write_dose_tables

LEVELS, WEIGHTS, LANGUAGES = (0.0, 1.0, 2.0), (0.3, 0.5), ("en", "ko")
LAYERS = ["encoder.embed", "encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]


def surface_gap(level: float, weight: float) -> float:
    """The planted surface gap: grows with the level, more at a higher weight."""
    return 0.5 + 2 * weight * level


def lean(level: float, index: int) -> float:
    """The planted lean: grows with the level at the top layers."""
    return 0.01 * index * level


def write_cell(folder, level: float, weight: float) -> Cell:
    """A cell's ``cer.csv`` and ``encoder_entanglement.csv`` as ``write_tables`` writes them: per seed and
    pooled rows, Korean in jamo too, intervals ±0.4 points and ±0.02 CKA."""
    folder.mkdir(parents=True)
    cer, ent = [], []
    for language in LANGUAGES:
        for seed in ("0", "1", "all"):
            for task in ("surface", "meaning"):
                gap = surface_gap(level, weight) if task == "surface" else -0.3 * level + (seed == "0")
                for unit in ("char", "jamo") if language == "ko" else ("char",):
                    shift = 5.0 if unit == "jamo" else 0.0  # jamo rows must not reach the dose table
                    cer.append(
                        {
                            "language": language,
                            "task": task,
                            "unit": unit,
                            "seed": seed,
                            "seeds": 2,
                            "n": 300,
                            "gap": gap + shift,
                            "ci_low": gap + shift - 0.4,
                            "ci_high": gap + shift + 0.4,
                            "p": 0.01,
                            "p_adj": 0.02,
                            "seeds_agree": True,
                        }
                    )
            for index, layer in enumerate(LAYERS):
                value = lean(level, index) + (0.5 if seed == "0" else 0.0)
                ent.append(
                    {
                        "language": language,
                        "seed": seed,
                        "seeds": 2,
                        "index": index,
                        "layer": layer,
                        "lean": value,
                        "ci_low": value - 0.02,
                        "ci_high": value + 0.02,
                        "p": 0.5,
                        "p_adj": 0.5,
                        "seeds_agree": True,
                        "n": 300,
                    }
                )
    pd.DataFrame(cer).to_csv(folder / "cer.csv", index=False)
    pd.DataFrame(ent).to_csv(folder / "encoder_entanglement.csv", index=False)
    return Cell(level, weight, folder)


@pytest.fixture
def cells(tmp_path):
    return [
        write_cell(tmp_path / "cells" / f"d{d:g}-w{w:g}" / "tables", d, w) for d in LEVELS for w in WEIGHTS
    ]


def test_dose_rows_are_the_pooled_character_rows_of_each_cell(cells):
    dose = dose_table(cells)
    assert set(dose["quantity"]) == set(schema.DOSE_QUANTITIES)
    surface = dose[(dose["quantity"] == schema.DOSE_SURFACE_GAP) & (dose["language"] == "ko")]
    assert len(surface) == len(LEVELS) * len(WEIGHTS)  # pooled char rows only: one per cell
    for _, row in surface.iterrows():
        assert row["value"] == pytest.approx(surface_gap(row["divergence"], row["meaning_weight"]))
    top = dose[dose["quantity"] == schema.DOSE_TOP_LEAN]
    assert set(top["layer"]) == {LAYERS[-1]} and len(top) == len(LEVELS) * len(WEIGHTS) * len(LANGUAGES)
    assert dose["se"].to_numpy() == pytest.approx((dose["ci_high"] - dose["ci_low"]) / (2 * norm.ppf(0.975)))
    assert list(dose["quantity"].drop_duplicates()) == list(schema.DOSE_QUANTITIES)


def test_slopes_are_the_wls_slopes_of_each_line(cells):
    dose = dose_table(cells)
    slopes = dose_slopes(dose)
    # 2 CER gaps + top lean + 4 layers, per language and weight
    assert len(slopes) == (3 + len(LAYERS)) * len(LANGUAGES) * len(WEIGHTS)
    row = slopes[
        (slopes["quantity"] == schema.DOSE_SURFACE_GAP)
        & (slopes["language"] == "en")
        & (slopes["meaning_weight"] == 0.5)
    ].iloc[0]
    assert row["slope"] == pytest.approx(2 * 0.5) and row["levels"] == len(LEVELS)
    line = dose[
        (dose["quantity"] == schema.DOSE_SURFACE_GAP)
        & (dose["language"] == "en")
        & (dose["meaning_weight"] == 0.5)
    ]
    want = slope_from_se(line["divergence"], line["value"], line["se"])
    assert (row["ci_low"], row["ci_high"], row["p"]) == pytest.approx((want.ci_low, want.ci_high, want.p))
    assert row["verdict"] == "grows with divergence"
    meaning = slopes[slopes["quantity"] == schema.DOSE_MEANING_GAP]
    assert set(meaning["verdict"]) == {"does not grow with divergence (it falls)"}
    embed = slopes[(slopes["quantity"] == schema.DOSE_LEAN) & (slopes["index"] == 0)]
    assert set(embed["verdict"]) == {"not resolved (the interval includes 0)"}


def test_a_line_without_a_slope_says_why(cells):
    dose = dose_table(cells[: len(WEIGHTS)])  # one level
    slopes = dose_slopes(dose)
    assert slopes["slope"].isna().all()
    assert slopes["verdict"].str.startswith("not computed (a slope needs at least two distinct levels").all()


def test_no_cells_is_a_one_line_error():
    with pytest.raises(CKAProbeError, match="at least one cell"):
        dose_table([])


def test_written_tables_read_back(cells, tmp_path):
    paths = write_dose_tables(cells, tmp_path / "tables")
    assert sorted(p.name for p in paths.values()) == ["dose.csv", "dose_slopes.csv"]
    dose = schema.read_table(paths["dose"])
    assert list(dose.columns[:6]) == [*schema.DOSE_KEYS, schema.DOSE_DIVERGENCE]
    assert not list((tmp_path / "tables").glob(".*"))  # no partial files left


# -- figures
# ----------------------------------------------------------------------------------------------------------
def labels(fig) -> list[tuple[str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


def test_dose_figure_labels_its_axes_with_units(cells):
    dose = dose_table(cells)
    fig = dose_figure(dose, dose_slopes(dose))
    found = labels(fig)
    assert len(found) == 3 * len(LANGUAGES)
    assert {x for x, _ in found} == {"divergence level"}
    assert {y for _, y in found} == {
        "surface CER, DO − SSO (CER points)",
        "meaning CER, DO − MSO (CER points)",
        "lean: CKA(DO, SSO) − CKA(DO, MSO)",
    }
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[1].startswith("w = 0.5, slope +1.00 [")


def test_layers_heatmap_and_dynamics_figures_label_their_axes(cells):
    dose = dose_table(cells)
    layers = labels(dose_layers_figure(dose))
    assert len(layers) == len(LAYERS) * len(LANGUAGES) and layers[0] == (
        "divergence level",
        "lean: CKA(DO, SSO) − CKA(DO, MSO)",
    )
    heat = surface_heatmap(dose)
    assert labels(heat)[0] == ("divergence level", "meaning weight w")
    assert heat.axes[-1].get_ylabel() == "surface CER, DO − SSO (CER points)"  # the colour bar
    dynamics = pd.DataFrame(
        [
            {"divergence": d, "meaning_weight": w, "epoch": e, "language": lang, "index": i, "layer": layer}
            | {"lean": 0.01 * e * d, "ci_low": 0.01 * e * d - 0.02, "ci_high": 0.01 * e * d + 0.02}
            for d in LEVELS
            for w in WEIGHTS
            for e in (0, 2, 4)
            for lang in LANGUAGES
            for i, layer in enumerate(LAYERS)
        ]
    )
    found = labels(dynamics_figure(dynamics))
    assert found[0] == ("training epoch", "lean: CKA(DO, SSO) − CKA(DO, MSO)")


def test_write_dose_figures_writes_png_and_pdf(cells, tmp_path):
    write_dose_tables(cells, tmp_path / "tables")
    paths = write_dose_figures(tmp_path / "tables", tmp_path / "figures")
    assert sorted(p.name for p in paths) == sorted(
        f"{stem}.{fmt}"
        for stem in ("dose_response", "dose_lean_by_layer", "dose_surface_heatmap")
        for fmt in ("png", "pdf")
    )
    assert all(p.stat().st_size > 1000 for p in paths)


def test_figures_without_their_rows_are_a_one_line_error():
    empty = pd.DataFrame({"quantity": [schema.DOSE_LEAN]})
    with pytest.raises(CKAProbeError, match="no rows of the surface CER gap"):
        surface_heatmap(empty)
