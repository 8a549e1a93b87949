"""``sweep``: the study over a grid of the testbed's dials, divergence level × meaning weight, and its slopes.

For each language, each divergence level d of the synthetic corpus
(``synth --divergence d``, one seed: every level has the same sentences,
speakers, splits and test utterances, only the surface forms differ) and each
seed replicate k, SSO and MSO are trained once (they do not depend on the
meaning weight) and DO once per meaning weight w; model m of replicate k
trains with seed ``seed + 3k + index(m)`` (SSO 0, MSO 1, DO 2) as in
``reproduce``, so that the cells of one replicate differ only by their dials.
Every model is evaluated and extracted on its level's test split, and each
cell (d, w) gets the study's tables of exactly its stores and CER files (its
level's SSO and MSO, its own DO; :func:`cka_probe.study.tables.write_tables`,
what ``reproduce`` writes for one cell). From the cells' tables come the
dose–response tables (:mod:`cka_probe.study.dose`) and their figures
(:mod:`cka_probe.figures.dose`).

With ``dynamics=E`` the trainings of replicate 0 keep their weights at
epoch 0 and after every E-th epoch, each of those snapshots of SSO, MSO and DO
is extracted, and every cell gets the encoder lean per saved epoch
(:mod:`cka_probe.study.dynamics`): replicate 0 only, since a lean per epoch
needs no pooling to show when it appears, and every cell, so that the curves
of the levels and weights can be told apart.

The run directory::

    data/<lang>/d<level>/                               the corpus of each level
    checkpoints/<lang>/d<level>/{sso,mso}[-s<k>]/        SO models, per level and replicate
    checkpoints/<lang>/d<level>/w<weight>/do[-s<k>]/     DO models, per cell and replicate
    cer/<lang>/d<level>/[w<weight>/]<model>.csv          per-utterance CER on the level's test split
    activations/<lang>/d<level>/[w<weight>/]<model>.h5   activation stores of the same
    dynamics/<lang>/d<level>/[w<weight>/]<model>/        with dynamics: a store per saved epoch
    cells/d<level>-w<weight>/tables/                     the study's tables of each cell
    cells/d<level>-w<weight>/dynamics.csv                with dynamics: the lean per saved epoch
    tables/dose.csv, dose_slopes.csv[, dynamics.csv]     the sweep's tables
    figures/                                             their figures (PNG and PDF)
    stages.csv, stages.json                              as for reproduce

Resumable and recipe-checked like ``reproduce`` (:mod:`cka_probe.pipeline.runner`): a rerun skips
each output made from its recipe, redoes one whose recipe changed with everything after it, resumes a
killed training or extraction, and one run at a time writes the directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.pipeline.runner import Stage, run_stages
from cka_probe.pipeline.study_plan import (
    MODELS,
    SCALES,
    Scale,
    evaluate_action,
    extract_action,
    on_available_device,
    replicate_name,
    synth_action,
    train_action,
    training_audio,
)

SO_MODELS = ("sso", "mso")
"""The models trained once per level and replicate; DO is trained once per cell."""


@dataclass(frozen=True)
class Grid:
    """The languages, divergence levels and meaning weights of a sweep, and its seed replicates."""

    langs: tuple[str, ...]
    levels: tuple[float, ...]
    weights: tuple[float, ...]
    seeds: int = 1

    @property
    def cells(self) -> list[tuple[float, float]]:
        """(level, weight) of every cell, level-major."""
        return [(level, weight) for level in self.levels for weight in self.weights]


def level_name(level: float) -> str:
    """``d1``, ``d0.5``: a level's folder."""
    return f"d{level:g}"


def weight_name(weight: float) -> str:
    """``w0.3``: a weight's folder."""
    return f"w{weight:g}"


def cell_name(level: float, weight: float) -> str:
    """``d1-w0.3``: a cell's folder."""
    return f"{level_name(level)}-{weight_name(weight)}"


def check_grid(grid: Grid, config: str, epochs: int, dynamics: int | None) -> None:
    """One line for a grid the sweep cannot run: an unknown or repeated language, a level outside the dial,
    fewer than two levels (no slope), a weight that leaves no surface loss, a value named twice, no seed,
    or snapshots rarer than the training's epochs."""
    from cka_probe.asr.config import load_config
    from cka_probe.asr.train import with_meaning_weight
    from cka_probe.data.synth import LANG_CODES, bin_weights

    for lang in grid.langs:
        if lang not in LANG_CODES:
            raise CKAProbeError(f"--lang {lang}: no synthetic corpus for it (known: {', '.join(LANG_CODES)})")
    for level in grid.levels:
        bin_weights(level)
    for weight in grid.weights:
        with_meaning_weight(load_config(config), "do", weight)
    for option, values, name in (
        ("--lang", grid.langs, str),
        ("--divergence", grid.levels, level_name),
        ("--meaning-weight", grid.weights, weight_name),
    ):
        if len({name(v) for v in values}) < len(values):
            raise CKAProbeError(f"{option} {','.join(map(str, values))}: names a value twice")
    if len(grid.levels) < 2:
        levels = ",".join(f"{level:g}" for level in grid.levels)
        raise CKAProbeError(f"--divergence {levels}: a slope over levels needs at least two levels")
    if grid.seeds < 1:
        raise CKAProbeError(f"--seeds must be at least 1, got {grid.seeds}")
    if dynamics is not None and not 1 <= dynamics <= epochs:
        raise CKAProbeError(f"--dynamics {dynamics}: must be from 1 to the {epochs} epochs of each training")


# -- the stage actions the sweep adds to reproduce's
# --------------------------------------------------------------------------------
def snapshots_action(partial: Path, *, training: Path, manifest: Path, device: str, role: str) -> None:
    """A store ``epoch-EEEE.h5`` of every snapshot ``epoch-EEEE.pt`` of ``training`` (finished ones kept), its
    ``role`` recorded: an epoch-0 SO store would otherwise be read as the untrained floor."""
    from cka_probe.asr.train import SNAPSHOTS

    for ckpt in sorted(training.glob(SNAPSHOTS)):
        extract_action(partial, ckpt=ckpt, manifest=manifest, name=ckpt.stem, device=device, role=role)


def cell_tables_action(
    partial: Path, *, stores: list[Path], cer: list[Path], n_boot: int, n_perm: int, seed: int
) -> None:
    """The study's tables of exactly one cell's stores and CER files (``reproduce``'s, for that cell)."""
    from cka_probe.study.tables import write_tables

    write_tables(stores, cer, partial, n_boot=n_boot, n_perm=n_perm, seed=seed)


def cell_dynamics_action(
    partial: Path,
    *,
    snapshots: list[Path],
    divergence: float,
    meaning_weight: float,
    n_boot: int,
    n_perm: int,
    seed: int,
) -> None:
    """``dynamics.csv``: the lean per epoch that every folder of ``snapshots`` (SSO, MSO, DO per language)
    has a store of, with the cell's dials first."""
    from cka_probe.study.dynamics import dynamics_table
    from cka_probe.study.schema import DOSE_DIVERGENCE, DOSE_WEIGHT, DYNAMICS_EPOCH

    names = set.intersection(*({p.name for p in Path(folder).glob("epoch-*.h5")} for folder in snapshots))
    stores = {
        int(Path(name).stem.removeprefix("epoch-")): [Path(f) / name for f in snapshots] for name in names
    }
    table = dynamics_table(stores, n_boot=n_boot, n_perm=n_perm, seed=seed)
    table.insert(0, DOSE_WEIGHT, meaning_weight)
    table.insert(0, DOSE_DIVERGENCE, divergence)
    atomic_write_text(
        partial / "dynamics.csv", table.sort_values(["language", DYNAMICS_EPOCH, "index"]).to_csv(index=False)
    )


def dose_tables_action(partial: Path, *, cells: list[dict], dynamics: list[Path]) -> None:
    """``dose.csv`` and ``dose_slopes.csv`` of the cells' tables, and ``dynamics.csv`` of the cells' own."""
    from cka_probe.study.dose import Cell, write_dose_tables
    from cka_probe.study.schema import read_table

    write_dose_tables([Cell(**cell) for cell in cells], partial)
    if dynamics:
        table = pd.concat([read_table(path) for path in dynamics], ignore_index=True)
        atomic_write_text(partial / "dynamics.csv", table.to_csv(index=False), point="tables")


def dose_figures_action(partial: Path, *, tables: Path) -> None:
    from cka_probe.figures.dose import write_dose_figures

    write_dose_figures(tables, partial)


# -- the plan
# -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Model:
    """One trained model of the sweep: its language, role, replicate, level and weight (None: an SO model)."""

    lang: str
    role: str
    k: int
    level: float
    weight: float | None

    def under(self, root: Path) -> Path:
        """Its folder under ``root``: ``<lang>/d<level>[/w<weight>]``."""
        folder = root / self.lang / level_name(self.level)
        return folder if self.weight is None else folder / weight_name(self.weight)

    @property
    def name(self) -> str:
        return replicate_name(self.role, self.k)

    @property
    def label(self) -> str:
        weight = [] if self.weight is None else [weight_name(self.weight)]
        return " ".join([self.lang, level_name(self.level), *weight, self.name])


def _models(grid: Grid) -> list[_Model]:
    """Every model to train: DO per cell first (the longer trainings), then SSO and MSO per level."""
    do = [
        _Model(lang, "do", k, level, weight)
        for lang in grid.langs
        for level, weight in grid.cells
        for k in range(grid.seeds)
    ]
    so = [
        _Model(lang, role, k, level, None)
        for lang in grid.langs
        for level in grid.levels
        for role in SO_MODELS
        for k in range(grid.seeds)
    ]
    return do + so


def plan(
    run_dir: Path,
    grid: Grid,
    scale: Scale,
    *,
    n: int | None = None,
    seed: int = 0,
    dynamics: int | None = None,
) -> list[Stage]:
    """The stages of a sweep, in order (the module docstring's layout)."""
    from cka_probe.asr.config import load_config

    epochs = scale.epochs or load_config(scale.config)["train"]["epochs"]
    check_grid(grid, scale.config, epochs, dynamics)
    size = {"n": n or scale.n, "test_n": scale.test_n if n is None else None}
    data = {
        (lang, level): run_dir / "data" / lang / level_name(level)
        for lang in grid.langs
        for level in grid.levels
    }
    stages = [
        Stage(
            f"synth {lang} {level_name(level)}",
            folder,
            synth_action,
            {"lang": lang, "seed": seed, **size, "divergence": level},
        )
        for (lang, level), folder in data.items()
    ]
    models = _models(grid)
    for m in models:
        stages.append(_training(run_dir, m, data[m.lang, m.level], scale, seed, dynamics))
    for m in models:
        stages += _scoring(run_dir, m, data[m.lang, m.level], scale.device, dynamics)
    cells = [_cell_tables(run_dir, models, level, weight, scale, seed) for level, weight in grid.cells]
    trajectories = (
        [_cell_dynamics(run_dir, models, level, weight, scale, seed) for level, weight in grid.cells]
        if dynamics
        else []
    )
    tables = run_dir / "tables"
    cell_records = [
        {"divergence": level, "meaning_weight": weight, "tables": stage.output}
        for (level, weight), stage in zip(grid.cells, cells, strict=True)
    ]
    dose = Stage(
        "tables",
        tables,
        dose_tables_action,
        {"cells": cell_records, "dynamics": [s.output for s in trajectories]},
        inputs=tuple(s.output for s in (*cells, *trajectories)),
    )
    figures = Stage("figures", run_dir / "figures", dose_figures_action, {"tables": tables}, inputs=(tables,))
    return [*stages, *cells, *trajectories, dose, figures]


def _training(run_dir: Path, m: _Model, data: Path, scale: Scale, seed: int, dynamics: int | None) -> Stage:
    """The training of ``m``: reproduce's options, the cell's meaning weight, snapshots for replicate 0."""
    kwargs = {
        "arch": MODELS[m.role][0],
        "task": MODELS[m.role][1],
        "data": data,
        "config": scale.config,
        "epochs": scale.epochs,
        "max_minutes": scale.train_minutes,
        "device": scale.device,
        "seed": seed + 3 * m.k + list(MODELS).index(m.role),
    }
    kwargs |= {"meaning_weight": m.weight} if m.weight is not None else {}
    kwargs |= {"save_every": dynamics} if dynamics and m.k == 0 else {}
    return Stage(
        f"train {m.label}",
        m.under(run_dir / "checkpoints") / m.name,
        train_action,
        kwargs,
        parallel="train",
        resumable=True,
        cost=training_audio,
        inputs=(data,),
    )


def _scoring(run_dir: Path, m: _Model, data: Path, device: str, dynamics: int | None) -> list[Stage]:
    """The evaluation and extraction of ``m`` on its level's test split, and with ``dynamics`` those of its
    snapshots (replicate 0)."""
    training = m.under(run_dir / "checkpoints") / m.name
    common = {"ckpt": training / "best.pt", "manifest": data / "test.jsonl", "name": m.name, "device": device}
    stages = [
        Stage(
            f"{verb} {m.label}",
            m.under(run_dir / folder) / f"{m.name}.{suffix}",
            action,
            common,
            parallel="score",
            resumable=resumable,
            inputs=(training, data),
        )
        for verb, folder, suffix, action, resumable in (
            ("evaluate", "cer", "csv", evaluate_action, False),
            ("extract", "activations", "h5", extract_action, True),
        )
    ]
    if dynamics and m.k == 0:
        snapshots = {"training": training, "manifest": data / "test.jsonl", "device": device, "role": m.role}
        stages.append(
            Stage(
                f"snapshots {m.label}",
                m.under(run_dir / "dynamics") / m.name,
                snapshots_action,
                snapshots,
                parallel="score",
                resumable=True,
                inputs=(training, data),
            )
        )
    return stages


def _of_cell(models: Sequence[_Model], level: float, weight: float) -> list[_Model]:
    """The models of cell (level, weight): the level's SSO and MSO and the cell's DO, every replicate."""
    return [m for m in models if m.level == level and m.weight in (None, weight)]


def _cell_tables(
    run_dir: Path, models: Sequence[_Model], level: float, weight: float, scale: Scale, seed: int
) -> Stage:
    """The tables of one cell, from exactly its models' stores and CER files."""
    mine = _of_cell(models, level, weight)
    stores = [m.under(run_dir / "activations") / f"{m.name}.h5" for m in mine]
    cer = [m.under(run_dir / "cer") / f"{m.name}.csv" for m in mine]
    options = {"stores": stores, "cer": cer, "n_boot": scale.n_boot, "n_perm": scale.n_perm, "seed": seed}
    return Stage(
        f"tables {cell_name(level, weight)}",
        run_dir / "cells" / cell_name(level, weight) / "tables",
        cell_tables_action,
        options,
        inputs=(*stores, *cer),
    )


def _cell_dynamics(
    run_dir: Path, models: Sequence[_Model], level: float, weight: float, scale: Scale, seed: int
) -> Stage:
    """The lean per saved epoch of one cell, from the snapshots of its replicate-0 models."""
    snapshots = [m.under(run_dir / "dynamics") / m.name for m in _of_cell(models, level, weight) if m.k == 0]
    options = {
        "snapshots": snapshots,
        "divergence": level,
        "meaning_weight": weight,
        "n_boot": scale.n_boot,
        "n_perm": scale.n_perm,
        "seed": seed,
    }
    return Stage(
        f"dynamics {cell_name(level, weight)}",
        run_dir / "cells" / cell_name(level, weight) / "dynamics.csv",
        cell_dynamics_action,
        options,
        inputs=tuple(snapshots),
    )


def sweep(
    langs: Sequence[str],
    levels: Sequence[float],
    weights: Sequence[float],
    scale: str | Scale,
    out: str | Path,
    *,
    seeds: int = 1,
    n: int | None = None,
    seed: int = 0,
    jobs: int = 2,
    epochs: int | None = None,
    train_minutes: float | None = None,
    dynamics: int | None = None,
) -> Path:
    """Run (or resume) a sweep into ``out``; returns its ``tables`` folder.

    ``scale``: a name of :data:`~cka_probe.pipeline.study_plan.SCALES` (``tiny`` for a 2-core CPU,
    ``paper`` for a GPU) or a :class:`~cka_probe.pipeline.study_plan.Scale`; ``epochs`` and
    ``train_minutes`` replace its training length. ``seeds`` replicates of every model; ``n`` synthetic
    utterances per language and level; ``jobs`` trainings side by side, one thread each; ``dynamics=E``
    keeps replicate 0's weights every E epochs and adds the lean over training.
    """
    if isinstance(scale, str):
        if scale not in SCALES:
            raise CKAProbeError(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
        scale = SCALES[scale]
    lengths = {"epochs": epochs, "train_minutes": train_minutes}
    scale = on_available_device(replace(scale, **{k: v for k, v in lengths.items() if v is not None}))
    run_dir = Path(out)
    grid = Grid(tuple(langs), tuple(levels), tuple(weights), seeds)
    stages = plan(run_dir, grid, scale, n=n, seed=seed, dynamics=dynamics)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_stages(stages, run_dir, jobs=jobs)
    return run_dir / "tables"
