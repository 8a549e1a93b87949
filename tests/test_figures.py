"""Figures from tidy tables: layer names on the axes, one colour scale, non-empty PNG and PDF."""

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from helpers import representations

from cka_probe.errors import CKAProbeError
from cka_probe.figures import style
from cka_probe.figures.diagonal import diagonal_figure
from cka_probe.figures.heatmap import heatmap_figure
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.schema import CEILING, FLOOR_NAME, pooled


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    tables = [
        cross_task_arrays(representations(rng, 20), language=lang, n_boot=10, n_perm=0, progress=False).table
        for lang in ("en", "ko")
    ]
    return pooled(pd.concat(tables, ignore_index=True))


def axis_names(ax, which):
    """Full layer names an axis shows: its label's prefix (after the model name) + "." + each tick label."""
    label = ax.get_ylabel() if which == "y" else ax.get_xlabel()
    ticks = ax.get_yticklabels() if which == "y" else ax.get_xticklabels()
    prefix = label.split(" ", 1)[1] + "." if " " in label else ""
    return [prefix + t.get_text() for t in ticks]


def test_heatmap_axes_carry_layer_names_and_share_one_scale(table):
    fig = heatmap_figure(table, "decoder")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 * 6
    for ax in panels:
        language, _, name = ax.get_title().split()[:3]
        rows = table[(table.language == language) & (table.part == "decoder") & (table.comparison == name)]
        assert axis_names(ax, "y") == rows.drop_duplicates("index_a").layer_a.tolist()
        assert axis_names(ax, "x") == rows.drop_duplicates("index_b").layer_b.tolist()
        np.testing.assert_allclose(
            ax.images[0].get_array(), rows.pivot(index="index_a", columns="index_b", values="value")
        )
    lowest = min(0.0, table[table.part == "decoder"].value.min())  # debiased CKA may be negative
    assert {ax.images[0].get_clim() for ax in panels} == {(lowest, 1.0)}
    assert sum(1 for ax in fig.axes if ax.get_label() == "<colorbar>") == 1


def test_diagonal_plot_draws_each_language_with_its_band(table):
    fig = diagonal_figure(table, "encoder")
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["encoder: SSO-MSO", "encoder: DO-SSO", "encoder: DO-MSO"]
    for ax in panels:
        assert axis_names(ax, "x") == ["encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]
        assert len(ax.lines) == 2 and len(ax.collections) == 2
        name = ax.get_title().split(": ")[1]
        expected = table.query(
            "part == 'encoder' and comparison == @name and language == 'ko' and index_a == index_b",
            local_dict={"name": name},
        )
        np.testing.assert_allclose(ax.lines[1].get_ydata(), expected.value)


def test_diagonal_plot_draws_the_ceiling_and_floor_of_each_language_as_bands():
    rng = np.random.default_rng(1)
    tables = []
    for language in ("en", "ko"):
        reps = representations(rng, 20)
        second = representations(rng, 20)["sso"]
        reps["sso"], reps["rand"] = [reps["sso"], second], representations(rng, 20)["sso"]
        tables.append(cross_task_arrays(reps, language=language, n_boot=10, n_perm=0, progress=False).table)
    table = pd.concat(tables, ignore_index=True)
    fig = diagonal_figure(table, "encoder")
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["encoder: SSO-MSO", "encoder: DO-SSO", "encoder: DO-MSO"]
    for ax in panels:
        bands = [c.get_gid() for c in ax.collections]
        assert bands.count(f"reference {CEILING}") == 2 and bands.count(f"reference {FLOOR_NAME}") == 2
        labels = [line.get_label() for line in ax.lines]
        assert {"en ceiling SSO~SSO′", "ko floor SSO~RAND"} <= set(labels)
        ceiling = next(line for line in ax.lines if line.get_label() == "en ceiling SSO~SSO′")
        expected = pooled(table).query(
            "part == 'encoder' and comparison == @CEILING and language == 'en' and index_a == index_b"
        )
        np.testing.assert_allclose(ceiling.get_ydata(), expected.value)


def test_save_writes_non_empty_png_and_pdf(table, tmp_path):
    paths = style.save(heatmap_figure(table, "encoder"), tmp_path, "enc")
    assert [p.name for p in paths] == ["enc.png", "enc.pdf"]
    pixels = matplotlib.image.imread(paths[0])
    assert pixels.shape[0] > 300 and pixels[..., :3].std() > 0.05
    assert paths[1].read_bytes().startswith(b"%PDF") and paths[1].stat().st_size > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.pdf", "enc.png"]


def test_missing_part_is_an_error(table):
    with pytest.raises(CKAProbeError, match="no decoder comparisons"):
        heatmap_figure(table[table.part == "encoder"], "decoder")


def test_short_names_split_the_common_prefix():
    assert style.short_names(["encoder.embed", "encoder.layers.0"]) == ("encoder.", ["embed", "layers.0"])
    assert style.short_names(["a", "b"]) == ("", ["a", "b"])


def test_cer_gap_figure_and_markdown_table():
    from cka_probe.figures.cer import cer_gap_figure
    from cka_probe.study.cer import cer_markdown

    gaps = pd.DataFrame(
        [
            {
                "language": lang,
                "task": task,
                "unit": "char",
                "ed_bin": b,
                "gap": g,
                "ci_low": g - 1,
                "ci_high": g + 1,
            }
            for lang in ("en", "ko")
            for task in ("surface", "meaning")
            for b, g in zip(["0", "1-3", "4-10", ">10"], [0, 1, 2, 3])
        ]
    )
    fig = cer_gap_figure(gaps)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["surface CER: DO − SO", "meaning CER: DO − SO"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["0", "1-3", "4-10", ">10"]
    row = {
        "language": "en",
        "task": "surface",
        "unit": "char",
        "n": 10,
        "so_cer": 5.0,
        "do_cer": 7.5,
        "gap": 2.5,
        "ci_low": 1.0,
        "ci_high": 4.0,
        "p": 0.01,
        "p_adj": 0.02,
        "oracle_cer": 12.0,
    }
    table = pd.DataFrame([row | {"seed": "0", "seeds": 1, "gap": 9.0}, row | {"seed": "all", "seeds": 2}])
    text = cer_markdown(table)
    assert (
        "| en | surface | char | 2 | 10 | 5.00 | 7.50 | +2.50 [+1.00, +4.00] | 0.010 | 0.020 | 12.00 |"
        in text
    )
    assert "+9.00" not in text  # the per-seed rows stay in the CSV
