"""Seed replicates and reference levels: roles, pooled tables, ceiling and floor rows, verdicts."""

import numpy as np
import pandas as pd
import pytest
from helpers import replicated

from cka_probe.errors import CKAProbeError
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.roles import assign_roles
from cka_probe.study.schema import CEILING, FLOOR_NAME, diagonal, pooled
from cka_probe.study.summary import encoder_entanglement, reference_gaps


def provenance(arch, tasks, seed, epoch=10):
    return {
        "arch": arch,
        "tasks": tasks,
        "language": "en",
        "config": {"train": {"seed": seed}},
        "checkpoint_epoch": epoch,
    }


def test_roles_order_seed_replicates_and_find_the_untrained_floor():
    stores = {
        "sso-s1.h5": provenance("so", ["surface"], 3),
        "sso.h5": provenance("so", ["surface"], 0),
        "mso.h5": provenance("so", ["meaning"], 1),
        "do.h5": provenance("do", ["surface", "meaning"], 2),
        "rand.h5": provenance("so", ["surface"], 6, epoch=0),
    }
    assert assign_roles(stores) == {
        "en": {"sso": ["sso.h5", "sso-s1.h5"], "mso": ["mso.h5"], "do": ["do.h5"], "rand": ["rand.h5"]}
    }
    with pytest.raises(
        CKAProbeError, match="two SSO models for language 'en' with seed 0: sso.h5 and again.h5"
    ):
        assign_roles({**stores, "again.h5": provenance("so", ["surface"], 0)})
    with pytest.raises(CKAProbeError, match="only with the SSO architecture"):
        assign_roles({**stores, "rand-m.h5": provenance("so", ["meaning"], 7, epoch=0)})


def test_tables_carry_per_seed_and_pooled_rows_with_the_ceiling_and_floor():
    rng = np.random.default_rng(0)
    result = cross_task_arrays(replicated(rng, 40, 3), language="en", n_boot=50, n_perm=20, progress=False)
    table = result.table
    assert set(table.seed) == {"0", "1", "2", "all"}
    assert set(pooled(table).comparison) >= {CEILING, FLOOR_NAME}
    do_sso = diagonal(table[(table.part == "encoder") & (table.comparison == "DO-SSO")])
    per_seed = do_sso[do_sso.seed != "all"].pivot(index="index_a", columns="seed", values="value")
    np.testing.assert_allclose(pooled(do_sso).value, per_seed.mean(axis=1))
    assert (pooled(do_sso).seeds == 3).all()
    ceiling = pooled(diagonal(table[(table.part == "encoder") & (table.comparison == CEILING)]))
    assert (ceiling.seeds == 2).all()  # SSO 0 vs 1 and 1 vs 2
    floor = pooled(diagonal(table[(table.part == "encoder") & (table.comparison == FLOOR_NAME)]))
    assert (floor.ci_low < 0.1).all()  # independent random layers: nothing above chance
    gaps = reference_gaps({"en": result})
    assert set(gaps.reference) == {CEILING, FLOOR_NAME} and set(gaps.part) == {"encoder", "decoder"}
    above_floor = gaps[(gaps.comparison == "DO-SSO") & (gaps.reference == FLOOR_NAME)]
    assert (above_floor.ci_low > 0).all() and (above_floor.p_adj < 0.05).all()


def test_one_seed_pools_to_itself_and_still_gets_the_ceiling_from_the_second_sso():
    rng = np.random.default_rng(1)
    result = cross_task_arrays(replicated(rng, 30, 1), language="en", n_boot=40, n_perm=0, progress=False)
    table = result.table
    regular = table[~table.comparison.isin([CEILING, FLOOR_NAME])]
    columns = ["value", "ci_low", "ci_high"]
    np.testing.assert_allclose(
        regular[regular.seed == "0"][columns].to_numpy(), pooled(regular)[columns].to_numpy()
    )
    assert (pooled(table).seeds[table.comparison.isin([CEILING])] == 1).all()
    lean = encoder_entanglement({"en": result})
    np.testing.assert_allclose(
        lean[lean.seed == "0"][["lean", "ci_low"]].to_numpy(), pooled(lean)[["lean", "ci_low"]].to_numpy()
    )


def test_a_lean_is_flagged_when_the_seeds_disagree():
    rng = np.random.default_rng(2)
    reps = replicated(rng, 40, 2)
    # seed 1's DO encoder copies the MSO encoder instead: the two seeds lean in opposite directions
    reps["do"][1]["encoder"] = {
        k: v + 0.3 * rng.standard_normal(v.shape) for k, v in reps["mso"][1]["encoder"].items()
    }
    lean = pooled(
        encoder_entanglement(
            {"en": cross_task_arrays(reps, language="en", n_boot=60, n_perm=0, progress=False)}
        )
    )
    assert not lean.seeds_agree.any()


def write_cer_tables(folder, rows):
    """cer.csv and cer_gaps.csv (lowest and highest bin equal to the overall row) from (task, seed, gap, low,
    high, agree)."""
    cer = pd.DataFrame(
        [
            {
                "language": "en",
                "task": t,
                "unit": "char",
                "seed": s,
                "seeds": 2,
                "n": 300,
                "so_cer": 5.0,
                "do_cer": 5.0 + g,
                "gap": g,
                "ci_low": lo,
                "ci_high": hi,
                "p": 0.01,
                "p_adj": 0.02,
                "seeds_agree": agree,
                "oracle_cer": 12.0,
            }
            for t, s, g, lo, hi, agree in rows
        ]
    )
    cer.to_csv(folder / "cer.csv", index=False)
    gaps = pd.concat([cer.assign(ed_bin="0"), cer.assign(ed_bin=">10")])
    gaps.to_csv(folder / "cer_gaps.csv", index=False)


def test_verdicts_need_the_pooled_interval_and_every_seed():
    from cka_probe.study.report.recognition import verdict

    assert verdict(-1, -3.0, -1.0, seeds_agree=True) == "as in the paper"
    assert verdict(+1, -3.0, -1.0, seeds_agree=True) == "**the opposite** of the paper"
    assert verdict(-1, -3.0, -1.0, seeds_agree=False).startswith(
        "not resolved (the pooled interval excludes 0 but the seeds disagree"
    )
    assert verdict(-1, -3.0, 1.0, seeds_agree=True) == "not resolved (the interval includes 0)"


def test_the_report_holds_seeds_against_the_paper(tmp_path):
    from cka_probe.study.report import markdown, paper_section, seeds_section

    rows = [
        ("meaning", "0", -2.0, -3.0, -1.0, None),
        ("meaning", "1", -1.5, -2.5, -0.5, None),
        ("meaning", "all", -1.75, -3.0, -0.6, True),  # seeds agree: as in the paper
        ("surface", "0", 2.0, 1.0, 3.0, None),
        ("surface", "1", -0.5, -1.5, 0.5, None),
        ("surface", "all", 0.75, 0.1, 2.9, False),
    ]  # pooled interval above 0, seeds disagree
    write_cer_tables(tmp_path, rows)
    lines = [line for line in markdown(paper_section(tmp_path)).splitlines() if line.startswith("| en | MTL")]
    meaning, surface = (next(line for line in lines if task in line) for task in ("meaning", "surface"))
    assert (
        meaning.endswith("| as in the paper |")
        and "(seeds: -2.00, -1.50)" in meaning
        and "n = 300" in meaning
    )
    assert "the seeds disagree in sign" in surface and "(seeds: +2.00, -0.50)" in surface
    pd.DataFrame({"comparison": ["DO-SSO"], "seeds": [2]}).to_csv(tmp_path / "cross_task.csv", index=False)
    assert "pools 2 training seeds" in markdown(seeds_section(tmp_path))
    pd.DataFrame({"comparison": ["DO-SSO", CEILING], "seeds": [1, 1]}).to_csv(
        tmp_path / "cross_task.csv", index=False
    )
    assert "\n\n**Training variance was not measured**" in markdown(seeds_section(tmp_path))


def test_the_report_reads_every_cka_against_the_ceiling_and_the_floor(tmp_path):
    from cka_probe.study.report import decoder_section, encoder_section, markdown
    from cka_probe.study.summary import decoder_departure

    result = cross_task_arrays(
        replicated(np.random.default_rng(3), 40, 2), language="en", n_boot=200, n_perm=20, progress=False
    )
    tables = {
        "cross_task": result.table,
        "encoder_entanglement": encoder_entanglement({"en": result}),
        "decoder_departure": decoder_departure({"en": result}),
        "reference_gaps": reference_gaps({"en": result}),
    }
    for name, table in tables.items():
        table.to_csv(tmp_path / f"{name}.csv", index=False)
    text = markdown(encoder_section(tmp_path) + decoder_section(tmp_path))
    assert "SSO-SSO' (seed-to-seed ceiling SSO~SSO′) by layer: 0:" in text
    assert "SSO-RAND (random-initialisation floor SSO~RAND) by layer: 0:" in text
    assert "DO-SSO against the random-initialisation floor SSO~RAND: above it at every layer (" in text
    assert "DO-SSO against the seed-to-seed ceiling SSO~SSO′: " in text
    assert "2 seeds" in text and "needs two SSO seeds" not in text


def test_an_untrained_checkpoint_extracts_to_the_floor_role(tmp_path):
    from cka_probe.asr.train import untrained
    from cka_probe.data.synth import synthesize
    from cka_probe.extract.asr import extract_checkpoint
    from cka_probe.store import ActivationStore
    from cka_probe.study.roles import role_of, seed_of

    paths = synthesize(lang="en", n=12, out_dir=tmp_path / "data", seed=0, workers=1, test_n=3)
    best = untrained(
        arch="so",
        task="surface",
        train_manifest=paths["train"],
        valid_manifest=paths["valid"],
        config="tiny",
        out_dir=tmp_path / "rand",
        seed=6,
    )
    extract_checkpoint(best, paths["test"], tmp_path / "rand.h5")
    with ActivationStore(tmp_path / "rand.h5") as store:
        assert (role_of(store.attrs, "rand.h5"), seed_of(store.attrs), len(store.ids)) == ("rand", 6, 3)


def test_the_seeds_section_names_only_the_roles_brought_with_one_model(tmp_path):
    import json

    from cka_probe.study.report import markdown, seeds_section

    pd.DataFrame({"comparison": ["DO-SSO"], "seeds": [1], "language": ["en"]}).to_csv(
        tmp_path / "cross_task.csv", index=False
    )
    models = [("sso", 0), ("sso", 1), ("mso", 0), ("do", 0)]
    records = [
        {"language": "en", "role": r, "replicate": k, "model": f"m{r}{k}", "cer": False} for r, k in models
    ]
    (tmp_path / "brought.json").write_text(json.dumps(records))
    text = markdown(seeds_section(tmp_path))
    assert "**Training variance was not measured**: one MSO model and one DO model were brought," in text
    assert "SSO model" not in text
