"""SO vs DO CER and the DO−SO gap per edit-distance bin, from evaluate-style CSVs."""

import numpy as np
import pandas as pd
import pytest
from helpers import DO_ERR, EDS, REF_LEN, SO_ERR, cer_rows, write_cer

from cka_probe.errors import CKAProbeError
from cka_probe.study.cer import cer_gaps, cer_table


def pooled(table):
    """The rows pooled over seed replicates (with one replicate, the same numbers as its own rows)."""
    return table[table.seed == "all"].reset_index(drop=True)


def test_corpus_cers_gap_and_oracle_match_the_definitions(tmp_path):
    table = pooled(cer_table(write_cer(tmp_path), n_boot=200)).set_index("task")
    for task in ("surface", "meaning"):
        so = 100 * sum(SO_ERR[task]) / sum(REF_LEN)
        do = 100 * sum(DO_ERR[task]) / sum(REF_LEN)
        assert table.loc[task, "so_cer"] == pytest.approx(so)
        assert table.loc[task, "gap"] == pytest.approx(do - so)
        assert table.loc[task, "ci_low"] <= do - so <= table.loc[task, "ci_high"]
        assert table.loc[task, "oracle_cer"] == pytest.approx(100 * sum(e for e, _ in EDS) / sum(REF_LEN))
    assert table.loc["surface", "gap"] > 0 > table.loc["meaning", "gap"]


def test_gap_per_bin_and_interval_shrinks_with_n(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small = pooled(cer_gaps(write_cer(tmp_path / "a"), n_boot=300))
    large = pooled(cer_gaps(write_cer(tmp_path / "b", repeat=16), n_boot=300))
    surface = small[small.task == "surface"]
    assert list(surface.ed_bin) == ["0", "1-3", "4-10", ">10"]
    for k, b in enumerate(["0", "1-3", "4-10", ">10"]):
        i = [j for j, (_, in_bin) in enumerate(EDS) if in_bin == b]
        expected = (
            100 * sum(DO_ERR["surface"][j] - SO_ERR["surface"][j] for j in i) / sum(REF_LEN[j] for j in i)
        )
        assert surface.gap.iloc[k] == pytest.approx(expected)
    assert list(surface.n) == [2, 2, 2, 2] and list(large[large.task == "surface"].n) == [32] * 4
    np.testing.assert_allclose(large.gap, small.gap)
    varying = (small.ci_high - small.ci_low) > 0
    assert varying.sum() >= 4
    assert ((large.ci_high - large.ci_low)[varying] < 0.6 * (small.ci_high - small.ci_low)[varying]).all()


def test_korean_is_scored_in_jamo_too(tmp_path):
    table = pooled(cer_table(write_cer(tmp_path, language="ko", jamo=True), n_boot=10))
    jamo = table[(table.unit == "jamo") & (table.task == "surface")].iloc[0]
    assert jamo.so_cer == pytest.approx(100 * 2 * sum(SO_ERR["surface"]) / (3 * sum(REF_LEN)))
    assert set(table.unit) == {"char", "jamo"}


def test_bad_inputs(tmp_path):
    sso, mso, do = write_cer(tmp_path)
    (tmp_path / "copy.csv").write_bytes(sso.read_bytes())
    with pytest.raises(CKAProbeError, match="two SO results for en/surface"):
        cer_table([sso, mso, do, tmp_path / "copy.csv"], n_boot=0)
    (tmp_path / "bad.csv").write_text("id,task\nu1,surface\n")
    with pytest.raises(CKAProbeError, match="bad.csv: not an evaluate CSV"):
        cer_table([tmp_path / "bad.csv"])
    with pytest.raises(CKAProbeError, match="en/surface: need both an SO and a DO result"):
        cer_table([sso, mso])


def test_the_ceilings_second_sso_without_a_do_partner_is_left_out_of_the_gap(tmp_path):
    """A run with one seed evaluates a second SSO (sso-s1) for the ceiling; it has no DO of its replicate."""
    paths = write_cer(tmp_path)
    second = tmp_path / "en-sso-s1.csv"
    pd.DataFrame(cer_rows(DO_ERR, "surface")).to_csv(second, index=False)
    with_second = cer_table([*paths, second], n_boot=100)
    assert set(with_second.seed) == {"0", "all"}
    pd.testing.assert_frame_equal(with_second, cer_table(paths, n_boot=100))


def test_seeds_are_paired_on_the_utterances_they_share_whatever_their_row_order(tmp_path):
    """Seed 1's CSVs list the utterances in reverse and lack one: the pooled row uses the seven common ones,
    index for index, so a seed that repeats seed 0 gives seed 0's interval (no between-seed spread)."""
    paths = write_cer(tmp_path)
    for name in ("sso", "mso", "do"):
        frame = pd.read_csv(tmp_path / f"en-{name}.csv", dtype={"id": str, "ed_bin": str})
        frame[frame.id != "u0-3"].iloc[::-1].to_csv(tmp_path / f"en-{name}-s1.csv", index=False)
    table = cer_table(
        [*paths, *(tmp_path / f"en-{name}-s1.csv" for name in ("sso", "mso", "do"))], n_boot=400
    )
    keep = [i for i in range(len(EDS)) if i != 3]
    for task in ("surface", "meaning"):
        rows_ = table[table.task == task].set_index("seed")
        gap = 100 * sum(DO_ERR[task][i] - SO_ERR[task][i] for i in keep) / sum(REF_LEN[i] for i in keep)
        assert rows_.loc["0", "n"] == rows_.loc["1", "n"] == rows_.loc["all", "n"] == 7
        assert rows_.loc["all", "gap"] == pytest.approx(gap)
        np.testing.assert_allclose(
            rows_.loc["all", ["ci_low", "ci_high"]].to_numpy(float),
            rows_.loc["0", ["ci_low", "ci_high"]].to_numpy(float),
            rtol=1e-9,
        )
