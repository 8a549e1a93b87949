"""Word level in the study: word-level cross-task CKA with utterance-grouped intervals, the word CER gap."""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cka_probe.errors import CKAProbeError
from cka_probe.inference.resampling import grouped_resamples
from cka_probe.measures.gram_resample import GramSet, point_estimate
from cka_probe.store import StoreWriter
from cka_probe.study.report import markdown, word_section
from cka_probe.study.schema import pooled
from cka_probe.study.tables import write_tables
from cka_probe.study.word_cer import divergent_words, word_cer_gaps, word_errors
from cka_probe.study.word_cross_task import grouped_bootstrap, word_cross_task
from cka_probe.text.cer import char_errors, normalize_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cka_reference import cka, linear_gram  # noqa: E402

N_UTT, DIM, LAYERS = 30, 6, 2
ATTRS = {"sso": ("so", ["surface"]), "mso": ("so", ["meaning"]), "do": ("do", ["surface", "meaning"])}


def sidecar(rng):
    """Per utterance 3–5 words of 2–4 frames, about a third of them divergent."""
    records = []
    for u in range(N_UTT):
        start, words = 0, []
        for i in range(int(rng.integers(3, 6))):
            length = int(rng.integers(2, 5))
            op = "substituted" if rng.random() < 0.35 else "identical"
            words.append(
                {
                    "index": i,
                    "word": f"w{i}",
                    "start": start,
                    "end": start + length,
                    "op": op,
                    "meaning_index": i,
                }
            )
            start += length
        records.append({"id": f"en-{u}", "n_frames": start, "words": words})
    return records


def write(path, role, frames, records, *, sha=None, folder=None):
    """A store of ``role``; ``sha`` records a manifest sha256, ``folder`` each utterance's audio there."""
    arch, tasks = ATTRS[role]
    lengths = np.array([r["n_frames"] for r in records])
    layers = {("encoder", f"encoder.layers.{i}"): (frames[i], lengths) for i in range(LAYERS)}
    rng = np.random.default_rng(len(role))
    layers |= {
        (f"decoder/{t}", f"decoders.{t}.layers.{i}"): (rng.standard_normal(frames[0].shape), lengths)
        for t in tasks
        for i in range(LAYERS)
    }
    attrs = {"arch": arch, "tasks": tasks, "language": "en"} | ({"manifest_sha256": sha} if sha else {})
    sources = {"source": [f"/{folder}/{r['id']}.wav" for r in records]} if folder else None
    with StoreWriter(path, attrs=attrs) as writer:
        writer.append([r["id"] for r in records], layers, metadata=sources)
        writer.finish()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """SSO and MSO independent; DO's frames are SSO's on identical words and MSO's on divergent ones."""
    root = tmp_path_factory.mktemp("wordstudy")
    rng = np.random.default_rng(0)
    records = sidecar(rng)
    total = sum(r["n_frames"] for r in records)
    frames = {role: [rng.standard_normal((total, DIM)) for _ in range(LAYERS)] for role in ("sso", "mso")}
    divergent = np.concatenate(
        [
            np.concatenate([np.full(w["end"] - w["start"], w["op"] != "identical") for w in r["words"]])
            for r in records
        ]
    )
    frames["do"] = [
        np.where(divergent[:, None], m, s) + 0.1 * rng.standard_normal(s.shape)
        for s, m in zip(frames["sso"], frames["mso"])
    ]
    for role in ATTRS:
        write(root / f"{role}.h5", role, frames[role], records)
    (root / "sso.h5.words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root, records, frames


def word_means(frames, records, keep):
    """Word means by hand (of the float32 rows the store keeps): offsets from the records, one row per kept
    word."""
    frames = frames.astype(np.float32).astype(np.float64)
    offsets = np.cumsum([0] + [r["n_frames"] for r in records])
    return np.array(
        [
            frames[offsets[u] + w["start"] : offsets[u] + w["end"]].mean(0)
            for u, r in enumerate(records)
            for w in r["words"]
            if keep(w["op"])
        ]
    )


def test_word_cka_is_cka_of_word_means_and_the_pull_sits_on_divergent_words(stores):
    root, records, frames = stores
    cka_table, lean = word_cross_task([root], n_boot=100, seed=0)
    row = cka_table[
        (cka_table.words == "divergent") & (cka_table.comparison == "DO-MSO") & (cka_table["index"] == 1)
    ]
    keep = lambda op: op != "identical"
    by_hand = cka(
        linear_gram(word_means(frames["do"][1], records, keep)),
        linear_gram(word_means(frames["mso"][1], records, keep)),
        unbiased=True,
    )
    assert row.value.iloc[0] == pytest.approx(by_hand, abs=1e-10)
    assert row.n_words.iloc[0] == sum(keep(w["op"]) for r in records for w in r["words"])
    assert (cka_table.n_utterances == N_UTT).all()
    for r in pooled(lean).itertuples():  # lean ≈ +1 on identical words, ≈ −1 on divergent ones
        assert r.lean_identical > 0.5 > -0.5 > r.lean_divergent
        assert r.ci_high < 0 and r.p_adj < 0.05


def test_grouped_resamples_keep_each_utterances_words_together():
    groups = [np.array([0, 1]), np.array([2]), np.array([3, 4, 5])]
    draws = np.array([[2, 2, 0], [1, 1, 1]])
    assert [list(i) for i in grouped_resamples(groups, draws)] == [[3, 4, 5, 3, 4, 5, 0, 1], [2, 2, 2]]


def test_grouped_bootstrap_of_a_resample_without_repeats_is_cka_on_those_words(stores):
    _, records, frames = stores
    keep = lambda op: True
    x, y = (word_means(frames[r][0], records, keep) for r in ("do", "sso"))
    a, b = GramSet({"l": x}), GramSet({"l": y})
    identity = grouped_bootstrap(a, b, [np.arange(len(x))], debiased=True)
    np.testing.assert_allclose(identity[0], point_estimate(a, b, debiased=True), atol=1e-12)
    half = np.arange(0, len(x), 2)
    subset = grouped_bootstrap(a, b, [half], debiased=True)[0, 0, 0]
    assert subset == pytest.approx(cka(linear_gram(x[half]), linear_gram(y[half]), unbiased=True), abs=1e-10)


def test_write_tables_and_the_report_state_where_the_pull_lies(stores, tmp_path):
    root, _, _ = stores
    written = write_tables(
        [root], [], tmp_path, n_boot=60, n_perm=0, word_level=True, probes=False, progress=False
    )
    assert {"word_cross_task", "word_lean"} <= set(written)
    text = markdown(word_section(tmp_path))
    assert "pull toward MSO (away from SSO) is concentrated on divergent words at every layer" in text


def manifest_stores(root, stores, do_folder):
    """The fixture's stores, SSO and MSO of one manifest, DO of another whose audio lies in ``do_folder``."""
    _, records, frames = stores
    root.mkdir()
    for role in ATTRS:
        sha, folder = ("b" if role == "do" else "a") * 64, do_folder if role == "do" else "wav"
        write(root / f"{role}.h5", role, frames[role], records, sha=sha, folder=folder)
    (root / "sso.h5.words.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_word_tables_compare_stores_of_two_manifests_only_where_the_ids_name_the_same_audio(stores, tmp_path):
    options = dict(n_boot=5, n_perm=0, word_level=True, probes=False, progress=False)  # no manifests
    same = manifest_stores(tmp_path / "same", stores, "wav")
    written = write_tables([same], [], tmp_path / "t1", **options)
    assert "word_cross_task" in written and "manifests" not in written
    different = manifest_stores(tmp_path / "different", stores, "other")
    with pytest.raises(CKAProbeError, match=r"do\.h5 come from different manifests .* names different audio"):
        word_cross_task([different], n_boot=5)
    with pytest.raises(CKAProbeError, match="names different audio"):
        write_tables([different], [], tmp_path / "t2", **options)
    assert not (tmp_path / "t2").exists()
    with pytest.warns(UserWarning, match="compared anyway"):
        written = write_tables([different], [], tmp_path / "t3", allow_different_manifests=True, **options)
    assert {"word_cross_task", "word_lean", "manifests"} <= set(written)
    record = json.loads(written["manifests"].read_text())
    assert record["allow_different_manifests"] is True
    assert record["stores"][str(different / "do.h5")]["manifest_sha256"] == "b" * 64


def test_word_errors_sum_to_the_character_edit_distance():
    rng = np.random.default_rng(5)
    alphabet = list("ab c")
    for _ in range(200):
        ref = normalize_text("".join(rng.choice(alphabet, rng.integers(1, 9)))) or "a"
        hyp = normalize_text(
            "".join(rng.choice(alphabet, rng.integers(0, 9)))
        )  # evaluate's texts are normalised
        errors = word_errors(ref, hyp)
        assert len(errors) == len(ref.split(" ")) and errors.sum() == char_errors(ref, hyp)
    assert list(word_errors("he go park", "he goes park")) == [0, 2, 0]


def cer_csv(path, task, hyps, refs, others=None):
    rows = [
        {
            "id": f"u{i}",
            "language": "en",
            "task": t,
            "ref": r,
            "hyp": h,
            "errors": char_errors(r, h),
            "ref_len": len(r),
            "surface_meaning_ed": 3,
            "ed_bin": "1-3",
        }
        for t, rs, hs in ([(task, refs, hyps)] + (others or []))
        for i, (r, h) in enumerate(zip(rs, hs))
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_word_cer_gap_falls_on_the_divergent_words(tmp_path):
    surface, meaning = (
        ["he go park", "she have a cat", "we eat rice"] * 4,
        ["he goes to park", "she has a cat", "we ate rice"] * 4,
    )
    assert list(divergent_words("he go park", "he goes to park", "surface")) == [False, True, False]
    assert list(divergent_words("he goes to park", "he go park", "meaning")) == [False, True, True, False]
    # DO writes the meaning word on divergent words
    do_surface = ["he goes park", "she has a cat", "we ate rice"] * 4
    paths = [
        cer_csv(tmp_path / "sso.csv", "surface", surface, surface),
        cer_csv(tmp_path / "mso.csv", "meaning", meaning, meaning),
        cer_csv(tmp_path / "do.csv", "surface", do_surface, surface, [("meaning", meaning, meaning)]),
    ]
    table = pooled(word_cer_gaps(paths, n_boot=100)).set_index(["task", "words"])
    divergent_chars = sum(len(w) + 1 for w in ("go", "have", "eat")) * 4
    errors = sum(char_errors(a, b) for a, b in zip(surface, do_surface))
    assert table.loc[("surface", "divergent"), "gap"] == pytest.approx(100 * errors / divergent_chars)
    assert table.loc[("surface", "identical"), "gap"] == 0 and table.loc[("meaning", "divergent"), "gap"] == 0


def test_utterance_draws_redraw_resamples_with_too_few_words_of_a_set():
    from cka_probe.study.word_cross_task import utterance_draws

    divergent = [np.array([0, 1]), np.array([], dtype=int), np.array([], dtype=int), np.array([], dtype=int)]
    identical = [np.array([0]), np.array([1, 2]), np.array([3]), np.array([4, 5])]
    draws = utterance_draws([divergent, identical], 200, np.random.default_rng(0))
    assert draws.shape == (200, 4) and ((draws == 0).sum(axis=1) >= 2).all()  # ≥ 4 divergent words: u0 twice
    with pytest.raises(CKAProbeError, match="too few utterances"):
        utterance_draws(
            [[np.array([0])] + [np.array([], dtype=int)] * 30], 10, np.random.default_rng(0), tries=5
        )


def test_word_spans_given_per_language_are_the_ones_used(stores, tmp_path):
    root, records, _ = stores
    moved = tmp_path / "spans.jsonl"
    moved.write_text((root / "sso.h5.words.jsonl").read_text())
    default = word_cross_task([root], n_boot=50, seed=0)
    given = word_cross_task([root], n_boot=50, seed=0, spans={"en": moved})
    for a, b in zip(default, given):
        pd.testing.assert_frame_equal(a, b)
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(json.dumps(r) + "\n" for r in records[:-1]))
    with pytest.raises(CKAProbeError, match="has no word spans"):
        word_cross_task([root], n_boot=50, seed=0, spans={"en": fewer})


@pytest.mark.parametrize(
    "spans, brought, message",
    [
        ({"ko": "x.jsonl"}, set(), "ko is not a language of the run"),
        ({"en": "missing.ctm"}, set(), "no such file or folder"),
        ({}, {("en", "sso")}, "its SSO is brought, so its words need --spans en=PATH"),
    ],
)
def test_reproduce_spans_are_checked_before_anything_runs(tmp_path, spans, brought, message):
    from cka_probe.pipeline.study_plan import check_spans

    with pytest.raises(CKAProbeError, match=message):
        check_spans(["en"], {lang: tmp_path / path for lang, path in spans.items()}, brought)
