"""A run directory never answers a new question with an old output: a rerun redoes what changed, only that."""

import json
import sys
from functools import partial
from pathlib import Path

import pytest

from cka_probe import pipeline
from cka_probe.cli import main
from cka_probe.pipeline import study_plan

CALLS: list[str] = []
ACTIONS = [
    "synth_action",
    "train_action",
    "untrained_action",
    "evaluate_action",
    "evaluate_brought_action",
    "extract_action",
    "tables_action",
    "figures_action",
    "report_action",
]


def fake_action(partial_path: Path, **options) -> None:
    """Any stage, in a millisecond: its output (with the sidecars the real stage writes) holds its options."""
    output = partial_path.name[1 : -len(".partial")]
    CALLS.append((partial_path.parent / output).as_posix())
    text = json.dumps(options, default=str)
    if "." not in output:
        (partial_path / "made.json").write_text(text)
        return
    (partial_path / output).write_text(text)
    stem = output.split(".")[0]
    sidecars = {".csv": [f"{stem}.summary.json"], ".md": [f"{stem}.html"]}.get(Path(output).suffix, [])
    for sidecar in sidecars + ([f"{output}.words.jsonl"] if options.get("word_spans") else []):
        (partial_path / sidecar).write_text(text)


@pytest.fixture(autouse=True)
def fake_stages(monkeypatch):
    CALLS.clear()
    for name in ACTIONS:
        monkeypatch.setattr(study_plan, name, fake_action)


def reproduce(run_dir: Path, *options: str) -> list[str]:
    """``cka-probe reproduce`` of one language on ``run_dir``; the outputs it made, relative to it."""
    CALLS.clear()
    assert main(["reproduce", "--lang", "en", "--jobs", "1", "--out", str(run_dir), *options]) == 0
    return sorted(Path(call).relative_to(run_dir).as_posix() for call in CALLS)


@pytest.fixture
def finished(tmp_path):
    run_dir = (tmp_path / "run").resolve()
    reproduce(run_dir)
    return run_dir


STUDY = ["figures", "report.md", "tables"]


def test_unchanged_rerun_skips_every_stage(finished, capsys):
    assert reproduce(finished) == []
    out = capsys.readouterr().out
    assert "redo" not in out and "[   done]" not in out and out.count("[skipped]") == 18


def test_adding_variants_redoes_tables_figures_and_report(finished, capsys):
    capsys.readouterr()
    made = reproduce(finished, "--variants", "split-2")
    # split-2 is new; the SSO store gains its word spans; everything reading stores is redone
    assert made == [
        "activations/en/split-2.h5",
        "activations/en/sso.h5",
        "cer/en/split-2.csv",
        "checkpoints/en/split-2",
        *STUDY,
    ]
    assert (finished / "activations/en/sso.h5.words.jsonl").exists()
    tables = json.loads((finished / "tables/made.json").read_text())
    assert tables["word_level"] is True and any("split-2.h5" in store for store in tables["stores"])
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[   redo]")]
    assert len(notes) == 4  # sso's extraction and the study; split-2's stages had nothing to redo
    assert "[   redo] extract en sso: its options changed (word_spans: unset -> true)" in notes
    tables_note = next(note for note in notes if note.startswith("[   redo] tables:"))
    assert "word_level: unset -> true" in tables_note
    changes = "new: activations/en/split-2.h5, cer/en/split-2.csv; changed: activations/en/sso.h5"
    assert f"its inputs changed ({changes})" in tables_note
    assert reproduce(finished, "--variants", "split-2") == []


def test_adding_seeds_trains_only_the_new_replicates(finished):
    # the second SSO (the ceiling's, seed 3) is replicate 1 of SSO: it is kept
    assert reproduce(finished, "--seeds", "2") == [
        "activations/en/do-s1.h5",
        "activations/en/mso-s1.h5",
        "cer/en/do-s1.csv",
        "cer/en/mso-s1.csv",
        "checkpoints/en/do-s1",
        "checkpoints/en/mso-s1",
        *STUDY,
    ]


def test_word_level_on_and_off_redoes_the_sso_store_and_removes_its_spans(finished):
    assert reproduce(finished, "--word-level") == ["activations/en/sso.h5", *STUDY]
    spans = finished / "activations/en/sso.h5.words.jsonl"
    assert spans.exists()
    assert reproduce(finished) == ["activations/en/sso.h5", *STUDY]
    assert not spans.exists()  # spans of the old store never sit beside a new one
    assert "word_level" not in json.loads((finished / "tables/made.json").read_text())


def test_changed_training_length_redoes_every_training_and_all_after_it(finished):
    made = reproduce(finished, "--epochs", "3")
    assert [m for m in made if m.startswith("checkpoints")] == [
        f"checkpoints/en/{m}" for m in ("do", "mso", "sso", "sso-s1")
    ]  # not the untrained floor
    assert "data/en" not in made and "activations/en/rand.h5" not in made and made[-3:] == STUDY


@pytest.fixture
def brought(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "valid", "test"):
        (data / f"{split}.jsonl").write_text("")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights 1")
    options = ["--data", f"en={data}", "--model", f"en:sso={model}"]
    reproduce(tmp_path / "run", *options)
    return tmp_path / "run", model, options


def test_changed_brought_model_redoes_its_extraction(brought, capsys):
    run_dir, model, options = brought
    assert reproduce(run_dir, *options) == []
    model.write_bytes(b"weights 2")
    capsys.readouterr()
    made = ["activations/en/rand.h5", "activations/en/sso.h5", "cer/en/sso.json"]  # the floor is SSO's
    assert reproduce(run_dir, *options) == [*made, *STUDY]
    assert f"[   redo] extract en sso: its inputs changed (changed: {model})" in capsys.readouterr().out


def test_changed_data_folder_redoes_every_stage_that_reads_it(brought):
    run_dir, model, options = brought
    (model.parent / "data" / "test.jsonl").write_text('{"id": "u0"}\n')
    made = reproduce(run_dir, *options)
    assert made == sorted(
        [*(f"checkpoints/en/{m}" for m in ("do", "mso")), *STUDY]
        + [f"cer/en/{m}.csv" for m in ("do", "mso")]
        + ["cer/en/sso.json"]
        + [f"activations/en/{m}.h5" for m in ("do", "mso", "rand", "sso")]
    )


def test_outputs_of_a_run_without_records_are_redone(finished, capsys):
    (finished / "stages.json").unlink()
    capsys.readouterr()
    assert len(reproduce(finished)) == 18
    assert "[   redo] tables: no record of what it was made from" in capsys.readouterr().out


def test_stages_csv_logs_each_stages_fingerprint(finished):
    records = json.loads((finished / "stages.json").read_text())["outputs"]
    rows = (finished / "stages.csv").read_text().splitlines()
    assert rows[0] == "stage,status,seconds,fingerprint"
    tables = next(row for row in rows if row.startswith("tables,"))
    assert tables.split(",")[-1] == records["tables"]["fingerprint"][:12]
    assert records["tables"]["options"]["stores"][0] == "activations/en/do.h5"  # relative to the run dir


def test_second_reproduce_on_one_run_dir_is_refused(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    second = []

    def meanwhile(partial_path: Path, **options) -> None:
        fake_action(partial_path, **options)
        second.append(main(["reproduce", "--lang", "en", "--jobs", "1", "--out", str(run_dir)]))

    monkeypatch.setattr(study_plan, "tables_action", meanwhile)
    reproduce(run_dir)
    err = capsys.readouterr().err
    assert second == [2] and len(err.strip().splitlines()) == 1
    assert f"{run_dir.resolve()}: another cka-probe run (pid" in err
    assert (run_dir / "report.md").exists()  # the first run finished


# -- a kill at any point of a rerun that redoes stages
# ------------------------------------------------------------------
def write_text_stage(partial_path: Path, *, text: str) -> None:
    """A stage action that writes a CSV and its summary sidecar."""
    from cka_probe.atomic import atomic_write_text

    output = Path(partial_path.name[1 : -len(".partial")])
    atomic_write_text(partial_path / output, text, point="action")
    atomic_write_text(partial_path / f"{output.stem}.summary.json", "{}", point="action")


def copy_stage(partial_path: Path, *, source: Path) -> None:
    """A stage action that reads an upstream output."""
    (partial_path / "copied.txt").write_text(source.read_text())


def run_small_plan(run_dir: str, text: str) -> None:
    """An upstream file stage with an option, and a folder stage that reads it (a harness target)."""
    run = Path(run_dir)
    upstream = run / "a" / "out.csv"
    pipeline.run_stages(
        [
            pipeline.Stage("write", run / "a" / "out.csv", write_text_stage, {"text": text}),
            pipeline.Stage("copy", run / "b", copy_stage, {"source": upstream}, inputs=(upstream,)),
            pipeline.Stage("other", run / "c.csv", write_text_stage, {"text": "same"}),
        ],
        run,
    )


@pytest.mark.parametrize("sweep", ["fast", pytest.param("full", marks=pytest.mark.slow)])
def test_a_rerun_killed_while_redoing_stages_finishes_as_an_uninterrupted_one(tmp_path, sweep):
    """Killed at the first point of each kind (fast) or at every point (full), between recording a recipe and
    publishing its output included."""
    import shutil

    sys.path.insert(0, str(Path(__file__).parent))
    from crash_harness import Harness, hidden_leftovers

    old, run_dir = tmp_path / "old", tmp_path / "run"
    run_small_plan(str(old), "old")
    shutil.copytree(old, run_dir)
    harness = Harness(partial(run_small_plan, str(run_dir), "new"), tmp_path / "work")
    points = harness.points()
    assert {"records:replaced", "stage:discard", "stage:publish"} <= set(points)
    want = files(run_dir)
    assert (run_dir / "b/copied.txt").read_text() == "new"
    firsts = {name: k for k, name in reversed(list(enumerate(points, start=1)))}
    for k in range(1, len(points) + 1) if sweep == "full" else sorted(firsts.values()):
        shutil.rmtree(run_dir)
        shutil.copytree(old, run_dir)
        harness.kill_and_finish(k)
        assert files(run_dir) == want, f"after a kill at point {k} ({points[k - 1]})"
        assert not hidden_leftovers(run_dir) and not list(run_dir.rglob(".*.old"))


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, the log of timings aside."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "stages.csv"
    }
