"""``cka-probe sweep``: its plan, a real small sweep, its cells' tables against reproduce's, resuming."""

from __future__ import annotations

import json
import shutil
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from crash_harness import Harness, hidden_leftovers, reset, spread  # noqa: E402
from helpers import small_config  # noqa: E402

from cka_probe.cli import main  # noqa: E402
from cka_probe.errors import CKAProbeError  # noqa: E402
from cka_probe.pipeline import study_plan, sweep  # noqa: E402
from cka_probe.pipeline.study_plan import Scale  # noqa: E402

LEVELS, WEIGHTS = (0.0, 1.0), (0.3, 0.5)


def small_scale(folder: Path) -> Scale:
    """A sweep's scale sized for tests: 40 utterances per level (8 test), the small config, one epoch."""
    config = folder / "small.json"
    config.write_text(json.dumps(small_config(batch_size=8)))
    return Scale(n=40, config=str(config), device="cpu", epochs=1, n_boot=20, n_perm=10, test_n=8)


def run_small_sweep(root: str, dynamics: int | None = 1) -> None:
    """The sweep of the tests: English, levels 0 and 1, weights 0.3 and 0.5, one seed (a harness target)."""
    torch.set_num_threads(1)
    sweep.sweep(
        ["en"], LEVELS, WEIGHTS, small_scale(Path(root)), Path(root) / "run", jobs=1, dynamics=dynamics
    )


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    run_small_sweep(str(root))
    return root / "run"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a real sweep
# -----------------------------------------------------------------------------------------------------
def test_a_sweep_writes_every_cell_the_dose_tables_and_figures(small_sweep):
    assert sorted(p.name for p in (small_sweep / "cells").iterdir()) == [
        "d0-w0.3",
        "d0-w0.5",
        "d1-w0.3",
        "d1-w0.5",
    ]
    assert sorted(p.name for p in (small_sweep / "tables").iterdir()) == [
        "dose.csv",
        "dose_slopes.csv",
        "dynamics.csv",
    ]
    assert {p.name for p in (small_sweep / "figures").glob("*.png")} == {
        "dose_response.png",
        "dose_lean_by_layer.png",
        "dose_surface_heatmap.png",
        "dynamics.png",
    }
    dynamics = (small_sweep / "tables" / "dynamics.csv").read_text().splitlines()
    assert dynamics[0].startswith("divergence,meaning_weight,epoch,language")
    assert {line.split(",")[2] for line in dynamics[1:]} == {"0", "1"}  # the initial weights and epoch 1
    assert not hidden_leftovers(small_sweep)


def test_every_level_shares_its_test_utterances_and_so_models_are_trained_once_per_level(small_sweep):
    ids = [
        [
            json.loads(line)["id"]
            for line in (small_sweep / f"data/en/d{d:g}/test.jsonl").read_text().splitlines()
        ]
        for d in LEVELS
    ]
    assert ids[0] == ids[1]
    trained = sorted(
        p.relative_to(small_sweep / "checkpoints").as_posix()
        for p in small_sweep.glob("checkpoints/**/best.pt")
    )
    assert trained == [
        "en/d0/mso/best.pt",
        "en/d0/sso/best.pt",
        "en/d0/w0.3/do/best.pt",
        "en/d0/w0.5/do/best.pt",
        "en/d1/mso/best.pt",
        "en/d1/sso/best.pt",
        "en/d1/w0.3/do/best.pt",
        "en/d1/w0.5/do/best.pt",
    ]
    meaning = torch.load(small_sweep / "checkpoints/en/d1/w0.5/do/best.pt", weights_only=True)["config"][
        "loss"
    ]["do"]
    assert meaning["meaning"] == 0.5 and meaning["surface"] == pytest.approx(0.3)


def test_a_cells_tables_equal_reproduces_tables_stage_on_that_cell(small_sweep, tmp_path):
    """The cell d1-w0.5, laid out as ``reproduce`` lays out a run, through reproduce's own tables stage."""
    run = tmp_path / "reproduce"
    for role, folder in (("sso", "d1"), ("mso", "d1"), ("do", "d1/w0.5")):
        for kind, suffix in (("activations", "h5"), ("cer", "csv")):
            (run / kind / "en").mkdir(parents=True, exist_ok=True)
            shutil.copy(
                small_sweep / kind / "en" / folder / f"{role}.{suffix}",
                run / kind / "en" / f"{role}.{suffix}",
            )
    stores = [run / "activations/en" / f"{r}.h5" for r in ("do", "mso", "sso")]
    cer = [run / "cer/en" / f"{r}.csv" for r in ("do", "mso", "sso")]
    (tmp_path / "tables").mkdir()
    study_plan.tables_action(tmp_path / "tables", stores=stores, cer=cer, n_boot=20, n_perm=10, seed=0)
    cell = small_sweep / "cells/d1-w0.5/tables"
    for name in ("cer.csv", "cer_gaps.csv", "encoder_entanglement.csv", "cross_task.csv"):
        assert (cell / name).read_bytes() == (tmp_path / "tables" / name).read_bytes(), name


def test_the_dose_table_holds_each_cells_pooled_gap(small_sweep):
    import pandas as pd

    dose = pd.read_csv(small_sweep / "tables/dose.csv")
    cer = pd.read_csv(small_sweep / "cells/d1-w0.5/tables/cer.csv", dtype={"seed": str})
    want = cer[(cer["seed"] == "all") & (cer["task"] == "surface")]["gap"].item()
    got = dose[
        (dose["quantity"] == "surface CER gap (DO − SSO)")
        & (dose["divergence"] == 1)
        & (dose["meaning_weight"] == 0.5)
    ]
    assert got["value"].item() == pytest.approx(want)


# -- the plan, with stages that take a millisecond
# ---------------------------------------------------------------------------------------
CALLS: list[str] = []
ACTIONS = [
    "synth_action",
    "train_action",
    "evaluate_action",
    "extract_action",
    "snapshots_action",
    "cell_tables_action",
    "cell_dynamics_action",
    "dose_tables_action",
    "dose_figures_action",
]


def fake_action(partial_path: Path, **options) -> None:
    """Any stage: its output holds its options."""
    output = partial_path.name[1 : -len(".partial")]
    CALLS.append((partial_path.parent / output).as_posix())
    target = partial_path / ("made.json" if "." not in output else output)
    target.write_text(json.dumps(options, default=str, sort_keys=True))


@pytest.fixture
def fake_stages(monkeypatch):
    CALLS.clear()
    for name in ACTIONS:
        monkeypatch.setattr(sweep, name, fake_action)


def run_cli(run_dir: Path, *options: str, status: int = 0) -> list[str]:
    """``cka-probe sweep`` on ``run_dir`` (exit ``status``); the outputs it made, relative to it."""
    CALLS.clear()
    grid = ["--divergence", "0,1", "--meaning-weight", "0.3,0.5", "--seeds", "2", "--jobs", "1"]
    assert main(["sweep", "--lang", "en", *grid, "--out", str(run_dir), *options]) == status
    return sorted(Path(call).relative_to(run_dir).as_posix() for call in CALLS)


def test_so_models_are_trained_once_per_level_and_seed_and_shared_by_every_weight(tmp_path, fake_stages):
    made = run_cli(tmp_path)
    trainings = [m for m in made if m.startswith("checkpoints")]
    assert len(trainings) == 2 * 2 * (2 + 2)  # levels x seeds x (SSO, MSO, DO per weight)
    tables = json.loads((tmp_path / "cells/d1-w0.5/tables/made.json").read_text())
    assert sorted(Path(s).relative_to(tmp_path).as_posix() for s in tables["stores"]) == [
        "activations/en/d1/mso-s1.h5",
        "activations/en/d1/mso.h5",
        "activations/en/d1/sso-s1.h5",
        "activations/en/d1/sso.h5",
        "activations/en/d1/w0.5/do-s1.h5",
        "activations/en/d1/w0.5/do.h5",
    ]
    seeds = {m: json.loads((tmp_path / m / "made.json").read_text())["seed"] for m in trainings}
    assert seeds["checkpoints/en/d0/w0.3/do-s1"] == seeds["checkpoints/en/d1/w0.5/do-s1"] == 5  # 0 + 3k + 2
    assert "meaning_weight" not in json.loads((tmp_path / "checkpoints/en/d0/sso/made.json").read_text())


def test_adding_a_weight_trains_only_its_do_models(tmp_path, fake_stages):
    run_cli(tmp_path)
    made = run_cli(tmp_path, "--meaning-weight", "0.3,0.5,0.7")
    assert [m for m in made if m.startswith("checkpoints")] == [
        f"checkpoints/en/d{d}/w0.7/do{s}" for d in (0, 1) for s in ("", "-s1")
    ]
    assert "cells/d0-w0.3/tables" not in made and "tables" in made and "figures" in made


def test_dynamics_keeps_snapshots_of_replicate_0_only(tmp_path, fake_stages):
    made = run_cli(tmp_path, "--dynamics", "2")
    assert sorted(m for m in made if m.startswith("dynamics")) == sorted(
        [f"dynamics/en/d{d}/{m}" for d in (0, 1) for m in ("sso", "mso")]
        + [f"dynamics/en/d{d}/w{w}/do" for d in (0, 1) for w in (0.3, 0.5)]
    )
    assert json.loads((tmp_path / "checkpoints/en/d0/sso/made.json").read_text())["save_every"] == 2
    assert "save_every" not in json.loads((tmp_path / "checkpoints/en/d0/sso-s1/made.json").read_text())
    assert len([m for m in made if m.endswith("dynamics.csv")]) == 4


def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path, fake_stages, monkeypatch):
    run_cli(tmp_path / "whole")
    want = files(tmp_path / "whole")
    calls = 0

    def interrupted(partial_path: Path, **options) -> None:
        nonlocal calls
        calls += 1
        if calls == 20:  # among the evaluations and extractions
            raise KeyboardInterrupt
        fake_action(partial_path, **options)

    for name in ACTIONS:
        monkeypatch.setattr(sweep, name, interrupted)
    run_cli(tmp_path / "run", status=130)  # Ctrl-C
    done = len(CALLS)
    for name in ACTIONS:
        monkeypatch.setattr(sweep, name, fake_action)
    redone = run_cli(tmp_path / "run")
    assert len(redone) == len(want_outputs(want)) - done  # nothing made before the interruption is made again
    got = files(tmp_path / "run")
    assert {k: v for k, v in got.items() if not k.startswith("stages")} == {
        k: v.replace(b"/whole/", b"/run/") for k, v in want.items() if not k.startswith("stages")
    }


def want_outputs(want: dict[str, bytes]) -> set[str]:
    """The stage outputs among an uninterrupted run's files."""
    return {k.removesuffix("/made.json") for k in want if not k.startswith("stages")}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--divergence", "0,2.5"], "--divergence must be from 0 to 2, got 2.5"),
        (["--divergence", "1"], "a slope over levels needs at least two levels"),
        (["--meaning-weight", "0.8"], "0 < weight < 1 − ctc = 0.8"),
        (["--meaning-weight", "0.3,0.30"], "--meaning-weight 0.3,0.3: names a value twice"),
        (["--lang", "fr"], "--lang fr: no synthetic corpus for it (known: en, ko)"),
        (["--dynamics", "11"], "--dynamics 11: must be from 1 to the 10 epochs of each training"),
    ],
)
def test_a_bad_grid_is_a_one_line_error(tmp_path, capsys, options, message):
    assert main(["sweep", "--out", str(tmp_path / "run"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_grid_value_that_is_not_a_number_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "--out", str(tmp_path), "--divergence", "0,x"])
    assert stop.value.code == 2 and "argument --divergence: 'x' is not a number" in capsys.readouterr().err


def test_the_paper_scale_is_the_papers_configuration(tmp_path):
    stages = sweep.plan(tmp_path, sweep.Grid(("en",), LEVELS, WEIGHTS), study_plan.SCALES["paper"])
    synth = next(s for s in stages if s.name == "synth en d1")
    training = next(s for s in stages if s.name == "train en d1 w0.5 do")
    assert synth.kwargs["n"] == 20000 and training.kwargs["config"] == "paper"
    assert training.kwargs["device"] == "cuda" and training.kwargs["meaning_weight"] == 0.5
    with pytest.raises(CKAProbeError, match="--scale must be one of"):
        sweep.sweep(["en"], LEVELS, WEIGHTS, "huge", tmp_path)


# -- killed anywhere, a real sweep finishes with an uninterrupted one's tables
# ----------------------------------------------------------------------------
def main_process_points(points: list[str], prefix: str, k: int) -> list[str]:
    """``k`` kill points ``PREFIX:K`` spread over the points named ``PREFIX...``, which the sweep's own
    process reaches (its corpus's audio is written by worker processes, each counting its own points)."""
    return [f"{prefix}:{i}" for i in spread(sum(p.startswith(prefix) for p in points), k)]


@pytest.mark.slow
def test_a_sweep_killed_at_crash_points_finishes_with_the_same_tables(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    harness = Harness(partial(run_small_sweep, str(root), None), tmp_path / "work")
    points = harness.points()
    run_dir = root / "run"
    want = {**files(run_dir / "tables"), **files(run_dir / "cells")}
    kills = [*main_process_points(points, "stage", 3), *main_process_points(points, "train", 1)]
    for point in [*kills, *main_process_points(points, "store", 1)]:
        reset(run_dir)
        harness.kill_and_finish(point)
        assert {**files(run_dir / "tables"), **files(run_dir / "cells")} == want, f"after a kill at {point}"
        assert not hidden_leftovers(run_dir)
