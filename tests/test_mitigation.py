"""Structured variants in the study: roles, the extended comparison set, mitigation tables and the verdict."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import layers, representations, verdict_tables

from cka_probe import pipeline
from cka_probe.cli import main
from cka_probe.errors import CKAProbeError
from cka_probe.study.cross_task import cross_task_arrays
from cka_probe.study.mitigation import mitigation_cer, mitigation_lean, split_variant_csvs
from cka_probe.study.roles import assign_roles, role_of
from cka_probe.study.schema import diagonal, pooled

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cka_reference import cka, linear_gram  # noqa: E402


def test_a_variant_store_takes_its_variant_as_role_and_plain_do_stays_do():
    do = {"arch": "do", "tasks": ["surface", "meaning"], "language": "en"}
    assert role_of(do, "do.h5") == "do" and role_of({**do, "variant": "shared"}, "do.h5") == "do"
    assert role_of({**do, "variant": "split-2"}, "v.h5") == "split-2"
    stores = {
        "sso.h5": {"arch": "so", "tasks": ["surface"], "language": "en"},
        "mso.h5": {"arch": "so", "tasks": ["meaning"], "language": "en"},
        "do.h5": do,
        "sp.h5": {**do, "variant": "shared-private"},
    }
    assert assign_roles(stores)["en"]["shared-private"] == ["sp.h5"]
    with pytest.raises(CKAProbeError, match="no DO model"):
        assign_roles({k: v for k, v in stores.items() if k != "do.h5"})


def noisy(stream, rng, scale):
    return {name: x + scale * rng.standard_normal(x.shape) for name, x in stream.items()}


def with_variant(rng, n, seeds=2):
    """K replicates; DO's encoder averages SSO's and MSO's, split-2's surface branch is SSO's, its meaning one
    MSO's."""
    reps = {"sso": [], "mso": [], "do": [], "split-2": []}
    for _ in range(seeds):
        one = representations(rng, n)
        sso, mso = one["sso"]["encoder"], one["mso"]["encoder"]
        one["do"]["encoder"] = {
            k: 0.5 * sso[k] + 0.5 * mso[k] + 0.2 * rng.standard_normal(sso[k].shape) for k in sso
        }
        one["split-2"] = {
            "encoder": layers(rng, "encoder.layers", n, 1),
            "encoder/branch/surface": noisy(sso, rng, 0.2),
            "encoder/branch/meaning": noisy(mso, rng, 0.2),
            "decoder/surface": noisy(one["sso"]["decoder/surface"], rng, 0.3),
            "decoder/meaning": layers(rng, "decoders.meaning.layers", n, 2),
        }
        for role in reps:
            reps[role].append(one[role])
    return reps


@pytest.fixture(scope="module")
def variant_result():
    reps = with_variant(np.random.default_rng(0), 48)
    return reps, cross_task_arrays(reps, language="en", n_boot=60, n_perm=30, progress=False)


def test_the_comparison_set_gains_each_variant_stream_against_sso_and_mso(variant_result):
    reps, result = variant_result
    table = pooled(result.table)
    names = set(table.comparison)
    assert {
        "split-2-SSO",
        "split-2/branch/surface-SSO",
        "split-2/branch/meaning-MSO",
        "SSO-split-2/surface",
        "MSO-split-2/meaning",
        "MSO-split-2/surface",
        "SSO-split-2/meaning",
        "DO-SSO",
    } <= names
    row = table[
        (table.comparison == "split-2/branch/surface-SSO") & (table.index_a == 2) & (table.index_b == 2)
    ].iloc[0]
    by_hand = np.mean(
        [
            cka(
                linear_gram(reps["split-2"][k]["encoder/branch/surface"]["encoder.layers.2"]),
                linear_gram(reps["sso"][k]["encoder"]["encoder.layers.2"]),
                unbiased=True,
            )
            for k in range(2)
        ]
    )
    assert row.value == pytest.approx(by_hand, abs=1e-10)
    assert row.ci_low <= row.value <= row.ci_high and row.seeds == 2 and 0 <= row.p_adj <= 1
    decoder = diagonal(table[table.comparison == "SSO-split-2/surface"])
    assert (decoder.ci_low > 0.5).all()  # the variant's surface decoder is SSO's plus noise


def test_mitigation_lean_finds_the_branches_keep_the_tasks_apart(variant_result):
    reps, result = variant_result
    lean = mitigation_lean({"en": result})
    assert set(lean.task) == {"surface", "meaning"} and set(lean.variant) == {"split-2"}
    top = "encoder.layers.2"
    k0 = lean[(lean.seed == "0") & (lean.task == "surface")].iloc[0]
    g = {role: linear_gram(reps[role][0]["encoder"][top]) for role in ("sso", "mso", "do")}
    branch = linear_gram(reps["split-2"][0]["encoder/branch/surface"][top])
    assert k0.own_variant == pytest.approx(
        cka(branch, g["sso"], True) - cka(branch, g["mso"], True), abs=1e-10
    )
    assert k0.own_do == pytest.approx(cka(g["do"], g["sso"], True) - cka(g["do"], g["mso"], True), abs=1e-10)
    assert k0.stream == "encoder/branch/surface"
    for r in pooled(lean).itertuples():
        assert r.change > 0 and r.ci_low > 0 and r.seeds_agree


def evaluate_csv(path, task_errors, lengths, ed=2):
    """An evaluate CSV of one model: ``task_errors[task]`` = per-utterance errors."""
    rows = [
        {
            "id": f"u{i}",
            "language": "en",
            "task": task,
            "ref": "x",
            "hyp": "x",
            "errors": e,
            "ref_len": n,
            "surface_meaning_ed": ed,
            "ed_bin": "1-3",
        }
        for task, errors in task_errors.items()
        for i, (e, n) in enumerate(zip(errors, lengths))
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_mitigation_cer_is_the_paired_corpus_gap_against_so_and_do(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    lengths = rng.integers(10, 30, n)
    errors = {m: {t: rng.integers(0, 8, n) for t in ("surface", "meaning")} for m in ("so", "do", "split-2")}
    (tmp_path / "en").mkdir()
    paths = [
        evaluate_csv(tmp_path / "en/sso.csv", {"surface": errors["so"]["surface"]}, lengths),
        evaluate_csv(tmp_path / "en/mso.csv", {"meaning": errors["so"]["meaning"]}, lengths),
        evaluate_csv(tmp_path / "en/do.csv", errors["do"], lengths),
        evaluate_csv(tmp_path / "en/split-2.csv", errors["split-2"], lengths),
    ]
    plain, variants = split_variant_csvs(paths)
    assert plain == paths[:3] and variants == {"split-2": [paths[3]]}
    table = pooled(mitigation_cer(plain, variants, n_boot=200))
    for r in table.itertuples():
        ref = errors["so" if r.reference == "SO" else "do"][r.task]
        by_hand = 100 * (errors["split-2"][r.task].sum() - ref.sum()) / lengths.sum()
        assert r.gap == pytest.approx(by_hand) and r.ci_low <= r.gap <= r.ci_high and r.n == n
    assert len(table) == 4 and set(table.reference) == {"SO", "DO"}


def test_the_verdict_needs_resolved_intervals_and_agreeing_seeds(tmp_path):
    good = verdict_tables(tmp_path, (0.2, 0.1, 0.3), (-3, -5, -1), (0.5, -1, 2))
    assert "split-2 **reduced entanglement and closed the surface gap**" in good
    assert "did not" in verdict_tables(tmp_path, (0.2, -0.1, 0.3), (-3, -5, -1), (0.5, -1, 2))
    assert "did not close the surface gap" in verdict_tables(
        tmp_path, (0.2, 0.1, 0.3), (-3, -5, -1), (3, 1, 5)
    )
    assert "did not reduce entanglement; did not close" in verdict_tables(
        tmp_path, (0.2, 0.1, 0.3), (-3, -5, -1), (0.5, -1, 2), agree=False
    )


def test_plan_with_variants_trains_evaluates_and_extracts_them_beside_do(tmp_path):
    default = pipeline.plan(tmp_path, ["en"], pipeline.SCALES["tiny"], n=30)
    plan = pipeline.plan(
        tmp_path,
        ["en"],
        pipeline.SCALES["tiny"],
        n=30,
        seeds=2,
        variants=["shared-private", "split-2", "sparse-shared"],
    )
    by_name = {s.name: s for s in plan}
    for v in ("shared-private", "split-2", "sparse-shared"):
        for k, name in enumerate((v, f"{v}-s1")):
            train = by_name[f"train en {name}"].kwargs
            assert (train["arch"], train["variant"]) == ("do", v)
            assert train["seed"] == by_name[f"train en {'do' if k == 0 else 'do-s1'}"].kwargs["seed"]
            assert f"evaluate en {name}" in by_name and f"extract en {name}" in by_name
    assert (
        by_name["extract en sso"].kwargs["word_spans"] and "word_spans" not in by_name["extract en do"].kwargs
    )
    assert by_name["tables"].kwargs["word_level"]
    one_seed = pipeline.plan(tmp_path, ["en"], pipeline.SCALES["tiny"], n=30, variants=["split-2"])
    assert [s.name for s in default] == [s.name for s in one_seed if "split-2" not in s.name]
    assert all(
        "variant" not in s.kwargs and "word_spans" not in s.kwargs and "word_level" not in s.kwargs
        for s in default
    )


@pytest.mark.parametrize(
    "variants, message",
    [
        (["shared"], "'shared' is the plain DO model"),
        (["split-9"], "K must be between 1"),
        (["bogus"], "unknown variant 'bogus'"),
        (["split-2", "split-2"], "names a variant twice"),
    ],
)
def test_bad_variants_are_refused_before_anything_runs(tmp_path, variants, message):
    with pytest.raises(CKAProbeError, match=message):
        pipeline.plan(tmp_path, ["en"], pipeline.SCALES["tiny"], n=30, variants=variants)


def test_cli_reproduce_refuses_an_unknown_variant_in_one_line(tmp_path, capsys):
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path / "run"), "--variants", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'bogus'" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "run").glob("*/*"))


def write_role_store(path, attrs, streams, rng, n=24):
    """A store of per-utterance frames (lengths 2..4) with ``streams[stream] = number of layers``."""
    from cka_probe.store import StoreWriter

    lengths = rng.integers(2, 5, n)
    layers = {
        (stream, f"{stream.replace('/', '.')}.layers.{i}"): (rng.standard_normal((lengths.sum(), 5)), lengths)
        for stream, count in streams.items()
        for i in range(count)
    }
    with StoreWriter(path, attrs={"language": "en", **attrs}) as writer:
        writer.append([f"en-{u}" for u in range(n)], layers)
        writer.finish()


def test_a_run_with_a_variant_gets_tables_figures_and_the_mitigation_section(tmp_path):
    from cka_probe.figures.write import write_figures
    from cka_probe.study.report import write_report
    from cka_probe.study.tables import write_tables

    rng = np.random.default_rng(4)
    do = {"arch": "do", "tasks": ["surface", "meaning"]}
    acts, cer = tmp_path / "activations", tmp_path / "cer"
    acts.mkdir(), cer.mkdir()
    write_role_store(
        acts / "sso.h5", {"arch": "so", "tasks": ["surface"]}, {"encoder": 3, "decoder/surface": 2}, rng
    )
    write_role_store(
        acts / "mso.h5", {"arch": "so", "tasks": ["meaning"]}, {"encoder": 3, "decoder/meaning": 2}, rng
    )
    write_role_store(acts / "do.h5", do, {"encoder": 3, "decoder/surface": 2, "decoder/meaning": 2}, rng)
    write_role_store(
        acts / "split-2.h5",
        {**do, "variant": "split-2"},
        {
            "encoder": 1,
            "encoder/branch/surface": 2,
            "encoder/branch/meaning": 2,
            "decoder/surface": 2,
            "decoder/meaning": 2,
        },
        rng,
    )
    lengths = rng.integers(10, 20, 24)
    csvs = [
        evaluate_csv(cer / "sso.csv", {"surface": rng.integers(0, 5, 24)}, lengths),
        evaluate_csv(cer / "mso.csv", {"meaning": rng.integers(0, 5, 24)}, lengths),
        *(
            evaluate_csv(
                cer / f"{m}.csv", {t: rng.integers(0, 5, 24) for t in ("surface", "meaning")}, lengths
            )
            for m in ("do", "split-2")
        ),
    ]
    written = write_tables([acts], csvs, tmp_path / "tables", n_boot=30, n_perm=10, progress=False)
    assert {"mitigation_cer", "mitigation_lean", "cer"} <= set(written)
    write_figures(tmp_path / "tables", tmp_path / "figures")
    text = write_report(tmp_path, tmp_path / "report.md").read_text()
    assert "## Mitigation: structured multi-task variants" in text and "- en split-2:" in text
    assert "surface path `encoder/branch/surface`" in text and "verdict: split-2 " in text
    assert "split-2/branch/surface-SSO by layer" in text  # the variant's comparisons in the encoder section


def test_bundled_variant_stores_go_through_the_comparison_set_mitigation_and_word_level(tmp_path):
    """Random-weight bundled models of every variant, extracted over 6 noise utterances: real stream names."""
    from helpers import WORD_TEXTS, shrunk_config, untrained_checkpoint, word_manifest

    from cka_probe.extract.asr import extract_checkpoint
    from cka_probe.study.tables import write_tables

    manifest, rows = word_manifest(tmp_path)
    config = shrunk_config(3, 1)
    acts = tmp_path / "acts"
    models = {
        "sso": ("so", ("surface",), "shared"),
        "mso": ("so", ("meaning",), "shared"),
        "do": ("do", ("surface", "meaning"), "shared"),
        "split-2": ("do", ("surface", "meaning"), "split-2"),
        "shared-private": ("do", ("surface", "meaning"), "shared-private"),
        "sparse-shared": ("do", ("surface", "meaning"), "sparse-shared"),
    }
    for seed, (name, (arch, tasks, variant)) in enumerate(models.items()):
        ckpt = untrained_checkpoint(
            tmp_path / f"{name}.pt", config, rows, arch, tasks, variant, seed=seed, epoch=1
        )
        extract_checkpoint(ckpt, manifest, acts / f"{name}.h5", batch_size=6, word_spans=name == "sso")
    out = tmp_path / "tables"
    write_tables([acts], [], out, n_boot=20, n_perm=0, progress=False, word_level=True)
    lean = pd.read_csv(out / "mitigation_lean.csv", dtype={"seed": str})
    assert set(zip(lean.variant, lean.stream)) == {
        (v, f"encoder/{kind}/{t}")
        for v, kind in (("split-2", "branch"), ("shared-private", "private"), ("sparse-shared", "gated"))
        for t in ("surface", "meaning")
    }
    cross = pd.read_csv(out / "cross_task.csv", dtype={"seed": str})
    assert {"shared-private/private/surface-MSO", "SSO-sparse-shared/surface", "split-2-SSO"} <= set(
        cross.comparison
    )
    words = pd.read_csv(out / "word_cross_task.csv", dtype={"seed": str})
    assert set(words.words) == {"divergent", "identical"} and (words.n_utterances == len(WORD_TEXTS)).all()
