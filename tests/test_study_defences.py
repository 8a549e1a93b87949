"""The defence table of the headline encoder cells, from arrays and from stores."""

import numpy as np
import pytest
from helpers import N_UTT, replicated, write_store

from cka_probe.measures import linear_cka, similarity
from cka_probe.measures.defences import cka_without_top_pcs, top_direction_share
from cka_probe.store import ActivationStore
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.defences import columns, defence_arrays, defence_table
from cka_probe.study.schema import diagonal, pooled


@pytest.fixture(scope="module")
def planted():
    """Two seeds; DO's encoder is SSO's plus noise, and DO and MSO share one huge-variance direction."""
    rng = np.random.default_rng(0)
    reps = replicated(rng, 80, 2)
    for do, mso in zip(reps["do"], reps["mso"]):
        for name in do["encoder"]:
            shared = 40.0 * rng.standard_normal((80, 1))
            do["encoder"][name] = np.hstack([do["encoder"][name], shared])
            mso["encoder"][name] = np.hstack([mso["encoder"][name], shared])
    return reps


def test_each_cell_is_the_seed_mean_of_the_measures_on_its_layer_pairs(planted):
    table = defence_arrays(planted, language="en")
    assert list(table.columns) == list(columns())
    assert set(table.comparison) == {"DO-SSO", "DO-MSO", "SSO-MSO", "SSO-SSO'"}
    row = table.query("comparison == 'DO-MSO' and index == 1").iloc[0]
    assert (row.seeds, row.n, row.layer_a, row.layer_b) == (2, 80, "encoder.layers.1", "encoder.layers.1")
    pairs = [
        (do["encoder"][row.layer_a], mso["encoder"][row.layer_b])
        for do, mso in zip(planted["do"], planted["mso"])
    ]
    want = {
        "cka": [linear_cka(x, y, debiased=True) for x, y in pairs],
        "cka_minus_top3": [cka_without_top_pcs(x, y, 3) for x, y in pairs],
        "top1_share": [top_direction_share(x, y, 1) for x, y in pairs],
        "procrustes_angle": [similarity(x, y, measure="procrustes_angle") for x, y in pairs],
    }
    for column, values in want.items():
        np.testing.assert_allclose(row[column], np.mean(values), rtol=1e-12)
    ceiling = table.query('comparison == "SSO-SSO\'"')
    assert (ceiling.seeds == 1).all() and ceiling.agrees.isna().all()


def test_cka_is_the_cross_task_tables_pooled_value(planted):
    table = defence_arrays(planted, language="en")
    cross = pooled(
        diagonal(cross_task_arrays(planted, language="en", n_boot=0, n_perm=0, progress=False).table)
    )
    cross = cross[cross.part == "encoder"].set_index(["comparison", "index_a"])["value"]
    np.testing.assert_allclose(table.cka, cross.loc[list(zip(table.comparison, table["index"]))], rtol=1e-9)


def test_the_planted_shared_direction_shows_in_the_share_and_in_cka_without_it(planted):
    table = defence_arrays(planted, language="en").set_index(["comparison", "index"])
    do_mso, do_sso = table.loc["DO-MSO"], table.loc["DO-SSO"]
    assert (do_mso.cka > 0.9).all() and (do_mso.top1_share > 0.99).all()
    assert (do_mso.cka_minus_top1 < 0.2).all()  # without it, DO and MSO are unrelated
    assert (do_sso.cka_minus_top1 > 0.5).all() and (do_sso.top1_share < 0.9).all()  # spread over directions


def test_agrees_compares_the_signs_of_the_two_leans(planted):
    table = defence_arrays(planted, language="en").set_index(["comparison", "index"])
    cka_lean = table.loc["DO-SSO", "cka"] - table.loc["DO-MSO", "cka"]
    angle_lean = table.loc["DO-MSO", "procrustes_angle"] - table.loc["DO-SSO", "procrustes_angle"]
    want = np.sign(cka_lean) == np.sign(angle_lean)
    for comparison in ("DO-SSO", "DO-MSO"):
        assert list(table.loc[comparison, "agrees"]) == list(want)
    assert table.loc["SSO-MSO", "agrees"].isna().all()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """DO's encoder is SSO's, its utterances stored in reverse order."""
    root = tmp_path_factory.mktemp("acts")
    write_store(root / "sso.h5", "sso", "en", encoder_seed=1, seed=1)
    write_store(root / "mso.h5", "mso", "en", encoder_seed=2, seed=2)
    write_store(root / "do.h5", "do", "en", encoder_seed=1, order=np.arange(N_UTT)[::-1], seed=3)
    return root


def test_stores_are_read_as_per_utterance_means_aligned_by_id(run_dir):
    table = defence_table([run_dir]).set_index(["comparison", "index"])
    assert set(table.index.get_level_values(0)) == {"DO-SSO", "DO-MSO", "SSO-MSO"}  # one SSO: no ceiling
    np.testing.assert_allclose(
        table.loc["DO-SSO", ["cka", "cka_minus_top1", "cka_minus_top3"]], 1.0, atol=1e-9
    )
    np.testing.assert_allclose(table.loc["DO-SSO", "procrustes_angle"], 0.0, atol=1e-6)
    assert table.loc["DO-SSO", "agrees"].all()
    with ActivationStore(run_dir / "do.h5") as do, ActivationStore(run_dir / "mso.h5") as mso:
        ids = sorted(mso.ids)
        layer = mso.layers("encoder")[2]
        x, y = (s.means("encoder", layer, ids).astype(np.float64) for s in (do, mso))
    row = table.loc["DO-MSO", 2]
    np.testing.assert_allclose(row.cka, linear_cka(x, y, debiased=True), rtol=1e-9)
    np.testing.assert_allclose(row.top3_share, top_direction_share(x, y, 3), rtol=1e-9)
    assert row.n == N_UTT and row.estimator == "debiased"


def test_the_report_quotes_the_top_layer_and_counts_the_agreeing_layers(tmp_path):
    import pandas as pd

    from cka_probe.study.report import markdown
    from cka_probe.study.report.knows import defence_finding, defence_section

    rows = [
        ("DO-SSO", 0, 0.9, 0.2, 0.95, True),
        ("DO-MSO", 0, 0.5, 0.4, 0.30, True),
        ("DO-SSO", 1, 0.8, 0.7, 0.40, False),
        ("DO-MSO", 1, 0.6, 0.5, 0.20, False),
    ]
    table = pd.DataFrame(
        [
            {"language": "en", "comparison": c, "index": i, "layer_a": f"encoder.layers.{i}", "cka": v}
            | {"cka_minus_top1": m, "cka_minus_top3": m / 2, "top1_share": s, "top3_share": 1.0}
            | {"procrustes_angle": 0.5, "agrees": a}
            for c, i, v, m, s, a in rows
        ]
    )
    table.to_csv(tmp_path / "defences.csv", index=False)
    sentence = defence_finding(tmp_path)
    assert (
        "in English, DO-SSO 0.80 → 0.70 (top-1 share 40 %), DO-MSO 0.60 → 0.50 (top-1 share 20 %)" in sentence
    )
    assert "same sign under angular Procrustes at 1 of 2 encoder layers" in sentence
    assert "en DO-SSO layer 0:" in markdown(defence_section(tmp_path))
