"""The reproduce pipeline's stage runner: skipping finished stages, clean restarts, the plan's layout."""

import time
from pathlib import Path

import pandas as pd
import pytest

from cka_probe import pipeline
from cka_probe.errors import CKAProbeError

CALLS: list[str] = []


def write_folder(partial: Path, *, text: str) -> None:
    CALLS.append(text)
    (partial / "out.txt").write_text(text)


def write_file(partial: Path, *, name: str, fail: bool = False) -> None:
    CALLS.append(name)
    (partial / f"{name}.summary.json").write_text("{}")
    (partial / f"{name}.csv").write_text("half")
    if fail:
        raise RuntimeError("interrupted")
    (partial / f"{name}.csv").write_text("a,b\n1,2\n")


def stages(run_dir: Path, fail: bool = False) -> list[pipeline.Stage]:
    return [
        pipeline.Stage("folder", run_dir / "data" / "en", write_folder, {"text": "corpus"}),
        pipeline.Stage("file", run_dir / "cer" / "en.csv", write_file, {"name": "en", "fail": fail}),
    ]


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def test_finished_stages_are_skipped(tmp_path):
    (tmp_path / "cer").mkdir()
    pipeline.run_stages(stages(tmp_path), tmp_path)
    assert CALLS == ["corpus", "en"]
    assert (tmp_path / "data/en/out.txt").read_text() == "corpus"
    assert (tmp_path / "cer/en.csv").read_text() == "a,b\n1,2\n" and (
        tmp_path / "cer/en.summary.json"
    ).exists()
    pipeline.run_stages(stages(tmp_path), tmp_path)
    assert CALLS == ["corpus", "en"]
    log = pd.read_csv(tmp_path / "stages.csv")
    assert list(log.status) == ["done", "done", "skipped", "skipped"]


def test_an_interrupted_stage_leaves_no_output_and_restarts_cleanly(tmp_path):
    (tmp_path / "cer").mkdir()
    with pytest.raises(RuntimeError, match="interrupted"):
        pipeline.run_stages(stages(tmp_path, fail=True), tmp_path)
    assert (tmp_path / "data/en").exists()
    assert not (tmp_path / "cer/en.csv").exists() and not (tmp_path / "cer/en.summary.json").exists()
    assert (tmp_path / "cer/.en.csv.partial/en.csv").read_text() == "half"
    pipeline.run_stages(stages(tmp_path), tmp_path)
    assert CALLS == ["corpus", "en", "en"]
    assert (tmp_path / "cer/en.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in (tmp_path / "cer").iterdir()) == ["en.csv", "en.summary.json"]


def slow_write(partial: Path, *, seconds: float) -> None:
    time.sleep(seconds)
    (partial / "done.txt").write_text("trained")


def read_inputs(partial: Path, *, inputs: list[Path]) -> None:
    missing = [str(p) for p in inputs if not (p / "done.txt").exists()]
    (partial / "seen.txt").write_text("\n".join(missing) or "all")


def test_a_parallel_group_starts_after_the_previous_one_has_ended(tmp_path):
    """Two workers: a fast training must not free a worker for a scoring stage while a slow one runs."""
    trained = [tmp_path / "fast", tmp_path / "slow"]
    plan = [
        pipeline.Stage("train fast", trained[0], slow_write, {"seconds": 0.0}, parallel="train"),
        pipeline.Stage("train slow", trained[1], slow_write, {"seconds": 3.0}, parallel="train"),
        *(
            pipeline.Stage(
                f"score {i}", tmp_path / f"score{i}", read_inputs, {"inputs": trained}, parallel="score"
            )
            for i in range(3)
        ),
    ]
    pipeline.run_stages(plan, tmp_path, jobs=2)
    assert [(tmp_path / f"score{i}" / "seen.txt").read_text() for i in range(3)] == ["all"] * 3


def die(partial: Path, *, seconds: float) -> None:
    """A stage whose worker process is killed (as by the out-of-memory killer)."""
    import os
    import signal

    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_a_one_line_error_and_the_rerun_finishes(tmp_path):
    plan = [
        pipeline.Stage("train ok", tmp_path / "ok", slow_write, {"seconds": 0.0}, parallel="train"),
        pipeline.Stage("train dies", tmp_path / "dies", die, {"seconds": 0.5}, parallel="train"),
    ]
    with pytest.raises(
        CKAProbeError,
        match="a worker process of the stages train ok, train dies died "
        r"\(killed, or out of memory\); rerun the same command to resume",
    ):
        pipeline.run_stages(plan, tmp_path, jobs=2)
    plan[1] = pipeline.Stage("train dies", tmp_path / "dies", slow_write, {"seconds": 0.0}, parallel="train")
    pipeline.run_stages(plan, tmp_path, jobs=2)
    assert (tmp_path / "dies").is_dir() and not (tmp_path / ".dies.partial").exists()


def write_pid_and_wait(partial: Path, *, seconds: float) -> None:
    """A long stage that says which process runs it."""
    import os

    (partial.parent / f"{partial.name}.pid").write_text(str(os.getpid()))
    time.sleep(seconds)
    (partial / "done.txt").write_text("trained")


def run_two_long_stages(run_dir: str) -> None:
    run = Path(run_dir)
    pipeline.run_stages(
        [
            pipeline.Stage(
                f"train {name}", run / name, write_pid_and_wait, {"seconds": 60.0}, parallel="train"
            )
            for name in ("a", "b")
        ],
        run,
        jobs=2,
    )


def test_workers_die_with_a_killed_run(tmp_path):
    """A run killed with SIGKILL (out of memory) must not leave its workers training on into the partial
    folders."""
    import os
    import signal
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_pipeline; test_pipeline.run_two_long_stages({str(tmp_path)!r})"
    )
    run = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    pid_files = [tmp_path / ".a.partial.pid", tmp_path / ".b.partial.pid"]
    deadline = time.monotonic() + 60
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert time.monotonic() < deadline and run.poll() is None, "the workers did not start"
        time.sleep(0.1)
    run.send_signal(signal.SIGKILL)
    run.wait()
    workers = [int(p.read_text()) for p in pid_files]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_resumable_stage_keeps_its_partial_folder(tmp_path):
    def keep(partial: Path) -> None:
        CALLS.append(sorted(p.name for p in partial.iterdir()))
        (partial / "last.pt").write_text("epoch 1")

    stage = pipeline.Stage("train", tmp_path / "ckpt", keep, resumable=True)
    stage.partial.mkdir()
    (stage.partial / "last.pt").write_text("epoch 0")
    pipeline.run_stage(stage)
    assert CALLS == [["last.pt"]] and (tmp_path / "ckpt/last.pt").read_text() == "epoch 1"


def test_a_file_stage_must_write_its_output(tmp_path):
    stage = pipeline.Stage("nothing", tmp_path / "x.csv", lambda partial: None)
    with pytest.raises(CKAProbeError, match="stage nothing: finished without writing x.csv"):
        pipeline.run_stage(stage)


def test_plan_lays_out_the_run_by_stage(tmp_path):
    plan = pipeline.plan(tmp_path, ["en", "ko"], pipeline.SCALES["tiny"], n=30)
    outputs = [str(s.output.relative_to(tmp_path)) for s in plan]
    assert outputs[:2] == ["data/en", "data/ko"]
    assert (
        "checkpoints/ko/do" in outputs and "cer/en/mso.csv" in outputs and "activations/ko/sso.h5" in outputs
    )
    assert outputs[-3:] == ["tables", "figures", "report.md"]
    trainings = [s.name for s in plan if s.name.startswith("train")]
    # the longest (DO) first; with one seed, a second SSO per language for the seed-to-seed ceiling
    assert trainings == [f"train {lang} {m}" for m in ("do", "mso", "sso", "sso-s1") for lang in ("en", "ko")]
    assert all(s.parallel == "train" for s in plan if s.name.split()[0] in ("train", "init"))
    assert all(s.parallel == "score" for s in plan if s.name.split()[0] in ("evaluate", "extract"))
    assert not any(s.parallel for s in plan[-3:] + plan[:2])  # synthesis has its own worker processes
    assert plan[0].kwargs["n"] == 30 and plan[0].kwargs["test_n"] is None  # --n: the default 10 % test split
    seeds = {
        s.name.split()[-1]: s.kwargs["seed"]
        for s in plan
        if s.name.split()[:2] in (["train", "en"], ["init", "en"])
    }
    assert seeds == {"sso": 0, "mso": 1, "do": 2, "sso-s1": 3, "rand": 6}
    # the untrained floor is extracted like every model, never evaluated
    assert "activations/en/rand.h5" in outputs and "cer/en/rand.csv" not in outputs


def test_seed_replicates_share_the_corpus_unless_it_is_resampled(tmp_path):
    plan = pipeline.plan(tmp_path, ["en"], pipeline.SCALES["tiny"], seeds=3)
    trains = {s.name.split()[-1]: s for s in plan if s.name.startswith("train")}
    assert sorted(trains) == ["do", "do-s1", "do-s2", "mso", "mso-s1", "mso-s2", "sso", "sso-s1", "sso-s2"]
    assert [trains[f"sso{r}"].kwargs["seed"] for r in ("", "-s1", "-s2")] == [0, 3, 6]
    assert {t.kwargs["data"] for t in trains.values()} == {tmp_path / "data" / "en"}
    assert (
        plan[0].kwargs["test_n"] == 300
        and next(s for s in plan if s.name == "init en rand").kwargs["seed"] == 9
    )
    resampled = pipeline.plan(tmp_path, ["en"], pipeline.SCALES["tiny"], seeds=2, resample_corpus=True)
    synth = {s.name: s for s in resampled if s.name.startswith("synth")}
    assert synth["synth en s1"].kwargs["exclude"] == tmp_path / "data" / "en" / "test.jsonl"
    trains = {s.name.split()[-1]: s for s in resampled if s.name.startswith("train")}
    assert (
        trains["do-s1"].kwargs["data"] == tmp_path / "data" / "en-s1"
        and trains["do"].kwargs["data"] == tmp_path / "data" / "en"
    )
    scored = {s.kwargs["manifest"] for s in resampled if s.name.split()[0] in ("evaluate", "extract")}
    assert scored == {tmp_path / "data" / "en" / "test.jsonl"}  # every replicate on one test split


def test_user_manifests_replace_the_synthetic_corpus(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.jsonl").write_text("")
    plan = pipeline.plan(tmp_path / "run", ["en"], pipeline.SCALES["tiny"], data={"en": tmp_path})
    assert not any(s.name.startswith("synth") for s in plan)
    assert next(s for s in plan if s.name == "evaluate en do").kwargs["manifest"] == tmp_path / "test.jsonl"
    with pytest.raises(CKAProbeError, match="no test.jsonl"):
        (tmp_path / "test.jsonl").unlink()
        pipeline.plan(tmp_path / "run", ["en"], pipeline.SCALES["tiny"], data={"en": tmp_path})


def test_compare_figures_and_report_from_small_stores(tmp_path):
    from helpers import write_cer, write_store

    from cka_probe.cli import main
    from cka_probe.study.report import write_report

    acts = tmp_path / "activations"
    for language in ("en", "ko"):
        (acts / language).mkdir(parents=True)
        for role, seed in (("sso", 1), ("mso", 2), ("do", 1 if language == "en" else 3)):
            write_store(acts / language / f"{role}.h5", role, language, encoder_seed=seed, seed=seed)
    (tmp_path / "cer").mkdir()
    cer = [str(p) for p in write_cer(tmp_path / "cer")]
    tables = tmp_path / "tables"
    args = [
        "--cross-task",
        str(acts),
        "--cross-lang",
        "--cer",
        *cer,
        "--tables",
        str(tables),
        "--n-boot",
        "30",
    ]
    assert main(["compare", *args, "--n-perm", "10"]) == 0
    assert {p.name for p in tables.iterdir()} == {
        "cross_task.csv",
        "cross_lang.csv",
        "encoder_entanglement.csv",
        "decoder_departure.csv",
        "reference_gaps.csv",
        "defences.csv",
        "cer.csv",
        "cer_gaps.csv",
        "cer.md",
    }
    assert main(["figures", str(tables), "--out", str(tmp_path / "figures")]) == 0
    assert (
        len(list((tmp_path / "figures").glob("*.png"))) == 5
        and len(list((tmp_path / "figures").glob("*.pdf"))) == 5
    )
    text = write_report(tmp_path, tmp_path / "report.md").read_text()
    assert "en surface (n = 8, 1 seed): SO 11.25 % → DO 21.88 %" in text and "MTL made it **worse**" in text
    assert "**Training variance was not measured**" in text and "needs two SSO seeds" in text
    assert (
        "the DO encoder is closer to the SSO encoder at every layer, to the MSO encoder at no layer" in text
    )
    for figure in ("heatmap_encoder", "diagonal_decoder", "cer_gap_by_ed"):
        assert f"(figures/{figure}.png)" in text and (tmp_path / "figures" / f"{figure}.png").exists()


def test_compare_without_inputs_is_a_one_line_error(capsys):
    from cka_probe.cli import main

    assert main(["compare"]) == 2
    assert "give two inputs A B, or --cross-task" in capsys.readouterr().err


def test_report_cautions_when_both_models_err_more_than_the_transcripts_differ(tmp_path):
    from cka_probe.study.report import cer_section, markdown

    rows = [  # language, task, so_cer, do_cer, oracle_cer
        ("en", "surface", 79.1, 132.4, 12.3),  # both above the oracle: undertrained
        ("en", "meaning", 8.0, 14.0, 11.7),  # SO below the oracle: a real comparison
    ]
    table = pd.DataFrame(
        [
            {
                "language": lang,
                "task": task,
                "unit": "char",
                "n": 150,
                "so_cer": so,
                "do_cer": do,
                "gap": do - so,
                "ci_low": do - so - 1,
                "ci_high": do - so + 1,
                "p": 0.01,
                "oracle_cer": oracle,
            }
            for lang, task, so, do, oracle in rows
        ]
    )
    table.to_csv(tmp_path / "cer.csv", index=False)
    (tmp_path / "cer.md").write_text("| table |\n")
    report = markdown(cer_section(tmp_path)).splitlines()
    lines = {line.split(" (n =")[0]: line for line in report if line.startswith("- ")}
    assert "**Caution:** both models' CER exceeds the oracle CER (12.3 %)" in lines["- en surface"]
    assert "Caution" not in lines["- en meaning"]


def test_report_holds_each_finding_of_the_paper_against_the_intervals(tmp_path):
    from cka_probe.study.report import markdown, paper_section

    # language, task, gap, ci_low, ci_high: overall, then the lowest and highest edit-distance bins
    overall = [("en", "meaning", -2.0, -3.0, -1.0), ("en", "surface", -2.0, -3.0, -1.0)]
    bins = {
        ("en", "meaning"): [("0", 0.0, -1.0, 1.0), (">10", -5.0, -7.0, -3.0)],  # helps more at ED >10
        ("en", "surface"): [("0", 0.0, -1.0, 1.0), (">10", 0.5, -0.5, 1.5)],
    }  # overlapping bins
    pd.DataFrame(
        [
            {"language": lang, "task": task, "unit": "char", "gap": g, "ci_low": lo, "ci_high": hi}
            for lang, task, g, lo, hi in overall
        ]
    ).to_csv(tmp_path / "cer.csv", index=False)
    pd.DataFrame(
        [
            {
                "language": lang,
                "task": task,
                "unit": "char",
                "ed_bin": b,
                "n": 10,
                "gap": g,
                "ci_low": lo,
                "ci_high": hi,
            }
            for (lang, task), rows in bins.items()
            for b, g, lo, hi in rows
        ]
    ).to_csv(tmp_path / "cer_gaps.csv", index=False)
    report = markdown(paper_section(tmp_path)).splitlines()
    rows = [line.split(" | ") for line in report if line.startswith("| en")]
    verdicts = {(r[1], r[-1].rstrip(" |")) for r in rows}
    assert ("MTL helps meaning (DO − SO < 0)", "as in the paper") in verdicts
    assert ("MTL hurts surface (DO − SO > 0)", "**the opposite** of the paper") in verdicts
    assert ("… more so at larger edit distance (ED >10 vs ED 0)", "as in the paper") in verdicts  # meaning
    assert (
        "… more so at larger edit distance (ED >10 vs ED 0)",
        "not resolved (the intervals overlap)",
    ) in verdicts


def test_reproduce_cli_passes_epochs_and_time_cap_to_every_training(tmp_path, monkeypatch):
    from cka_probe.cli import main

    planned = []
    monkeypatch.setattr(
        pipeline.study_plan, "run_stages", lambda stages, run_dir, jobs: planned.extend(stages)
    )
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path), "--epochs", "3"]) == 0
    trainings = [s.kwargs for s in planned if s.name.startswith("train")]
    # with the second SSO
    assert len(trainings) == 4 and {(t["epochs"], t["max_minutes"]) for t in trainings} == {(3, None)}
    planned.clear()
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path), "--train-minutes", "2.5"]) == 0
    assert {(s.kwargs["epochs"], s.kwargs["max_minutes"]) for s in planned if s.name.startswith("train")} == {
        (None, 2.5)
    }
    planned.clear()
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path), "--seeds", "2", "--no-ceiling"]) == 0
    assert sorted(s.name for s in planned if s.name.startswith("train")) == [
        f"train en {m}" for m in ("do", "do-s1", "mso", "mso-s1", "sso", "sso-s1")
    ]
    planned.clear()
    assert main(["reproduce", "--lang", "en", "--out", str(tmp_path), "--no-ceiling"]) == 0
    assert sorted(s.name for s in planned if s.name.startswith("train")) == [
        f"train en {m}" for m in ("do", "mso", "sso")
    ]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--epochs", "0", "argument --epochs: 0 must be from 1 to"),
        ("--seeds", "0", "argument --seeds: 0 must be from 1 to 100"),
        ("--train-minutes", "-1", "argument --train-minutes: -1 must be greater than 0"),
    ],
)
def test_reproduce_refuses_a_bad_training_length(tmp_path, capsys, option, value, message):
    from cka_probe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "--lang", "en", "--out", str(tmp_path / "run"), option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_trainings_of_the_longer_corpus_start_first(tmp_path):
    for lang, seconds in (("en", 2.0), ("ko", 3.0)):  # Korean audio is the longer, as in the synthetic corpus
        (tmp_path / "data" / lang).mkdir(parents=True)
        (tmp_path / "data" / lang / "train.jsonl").write_text(
            "".join(f'{{"id": "u{i}", "audio": "u{i}.wav", "duration": {seconds}}}\n' for i in range(4))
        )
    plan = pipeline.plan(tmp_path, ["en", "ko"], pipeline.SCALES["tiny"], seeds=1)
    trains = [s for s in plan if s.parallel == "train"]
    assert [s.expected_cost() for s in trains if s.name.startswith("train")] == [8.0, 12.0] * 4
    assert next(s for s in trains if s.name.startswith("init")).expected_cost() == 0.0
    order = [s.name for s in sorted(trains, key=pipeline.Stage.expected_cost, reverse=True)]
    # then en, in plan order
    assert order[:4] == ["train ko do", "train ko mso", "train ko sso", "train ko sso-s1"]
