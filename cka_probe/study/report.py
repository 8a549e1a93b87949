"""``report.md``: the findings of a run in numbers, written from its tables, with its figures.

Every statement is read off a table (never recomputed) and carries its 95 %
bootstrap interval and n; the pooled rows (``seed == "all"``: the mean over
seed replicates with its seeds-and-utterances interval) carry the findings, and each
seed's value is shown beside them. A verdict needs the pooled interval to
exclude 0 *and* every seed to agree in sign; "at layers …" lists use the
Benjamini–Hochberg-adjusted p-values (``p_adj`` < 0.05). With one seed per
role the report says that training variance was not measured.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cka_probe.atomic import atomic_write_text
from cka_probe.study.schema import CEILING, FLOOR_NAME, POOLED, diagonal
from cka_probe.text.cer import ED_BINS


def _interval(value: float, low: float, high: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def _direction(low: float, high: float, up: str, down: str) -> str:
    """``up`` if the interval lies above 0, ``down`` below, else a plain statement of no clear effect."""
    if low > 0:
        return up
    if high < 0:
        return down
    return "no clear change (the interval includes 0)"


ALPHA = 0.05
"""The level of the BH-adjusted p-values behind every "at layers …" list."""


def _read(tables: Path, name: str, *, per_seed: bool = False) -> pd.DataFrame | None:
    """A table of the run; its pooled rows only unless ``per_seed``."""
    path = tables / f"{name}.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path, dtype={"ed_bin": str, "seed": str})
    return table if per_seed or "seed" not in table else table[table["seed"] == POOLED].reset_index(drop=True)


def _per_seed(tables: Path, name: str, keys: dict, column: str, digits: int = 2) -> str:
    """``" (seeds: +1.20, −0.30)"``: the per-seed values of one pooled row, when there are several seeds."""
    table = _read(tables, name, per_seed=True)
    if "seed" not in table:
        return ""
    rows = table[table["seed"] != POOLED]
    for key, value in keys.items():
        rows = rows[rows[key] == value]
    return f" (seeds: {', '.join(f'{v:+.{digits}f}' for v in rows[column])})" if len(rows) > 1 else ""


def _cleared(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose BH-adjusted p is below :data:`ALPHA` and (pooled over seeds) whose seeds agree in sign."""
    agree = rows["seeds_agree"].map(_agree) if "seeds_agree" in rows else True
    return rows[(rows["p_adj"] < ALPHA) & agree]


def cer_section(tables: Path) -> list[str]:
    """SO vs DO CER per language and task, and the direction in which MTL moved each."""
    cer = _read(tables, "cer")
    if cer is None:
        return []
    lines = [
        "## Recognition: single-output (SO) vs dual-output (DO)",
        "",
        (tables / "cer.md").read_text(),
        "",
    ]
    for r in cer[cer["unit"] == "char"].itertuples(index=False):
        verdict = _direction(r.ci_low, r.ci_high, "MTL made it **worse**", "MTL made it **better**")
        if not _agree(getattr(r, "seeds_agree", True)) and "interval includes" not in verdict:
            verdict = "no clear change (the pooled interval excludes 0 but the seeds disagree in sign)"
        seeds = _per_seed(tables, "cer", {"language": r.language, "task": r.task, "unit": "char"}, "gap")
        count = getattr(r, "seeds", 1)
        lines.append(
            f"- {r.language} {r.task} (n = {r.n}, {count} seed{'s' * (count > 1)}): SO {r.so_cer:.2f} % "
            f"→ DO {r.do_cer:.2f} %, DO − SO = {_interval(r.gap, r.ci_low, r.ci_high)} points{seeds}: {verdict} "
            f"(oracle {r.oracle_cer:.1f} %).{_undertrained(r.so_cer, r.do_cer, r.oracle_cer)}"
        )
    return lines + [""]


def _undertrained(so_cer: float, do_cer: float, oracle_cer: float) -> str:
    """A caution when both models err more than the two transcripts differ (the oracle CER).

    Then neither model separates what was said from what was meant, and a CER
    difference between them is not evidence about multi-task learning.
    """
    if min(so_cer, do_cer) <= oracle_cer:
        return ""
    return (
        f" **Caution:** both models' CER exceeds the oracle CER ({oracle_cer:.1f} %): they do not yet "
        "separate the two transcripts, so this difference says nothing about multi-task learning "
        "(train longer)."
    )


def _by_bin(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of one language and task indexed by ``ed_bin``, from the lowest bin to the highest present."""
    return rows.set_index("ed_bin").reindex([b for b in ED_BINS if b in set(rows["ed_bin"])])


def gap_section(tables: Path) -> list[str]:
    """The DO−SO gap per edit-distance bin, and whether it grows with the distance."""
    gaps = _read(tables, "cer_gaps")
    if gaps is None:
        return []
    lines = [
        "## The CER gap by surface–meaning edit distance",
        "",
        "![CER gap](figures/cer_gap_by_ed.png)",
        "",
    ]
    for (language, task), rows in gaps[gaps["unit"] == "char"].groupby(["language", "task"], sort=False):
        rows = _by_bin(rows)
        cells = ", ".join(
            f"ED {b} (n={int(r.n)}): {_interval(r.gap, r.ci_low, r.ci_high)}" for b, r in rows.iterrows()
        )
        first, last = rows.iloc[0], rows.iloc[-1]
        trend = "grows" if last.gap > first.gap else "does not grow"
        separated = last.ci_low > first.ci_high or last.ci_high < first.ci_low
        lines.append(
            f"- {language} {task}: {cells}. From the lowest to the highest bin the gap {trend} "
            f"({first.gap:+.2f} → {last.gap:+.2f}); the two intervals "
            f"{'do not overlap' if separated else 'overlap'}."
        )
    return lines + [""]


PAPER_EXPECTS = {"meaning": -1, "surface": +1}
"""The paper's CER findings as the sign of DO − SO: MTL helps the meaning task and hurts the surface task."""


def _verdict(
    sign: int, low: float, high: float, unresolved: str = "the interval includes 0", seeds_agree: bool = True
) -> str:
    """Whether an interval agrees with the expected ``sign``, contradicts it, or leaves it open.

    A direction needs the interval to exclude 0 and every seed to agree in sign (``seeds_agree``).
    """
    if not (low > 0 or high < 0):
        return f"not resolved ({unresolved})"
    if not seeds_agree:
        return "not resolved (the pooled interval excludes 0 but the seeds disagree in sign)"
    if (low > 0 and sign > 0) or (high < 0 and sign < 0):
        return "as in the paper"
    return "**the opposite** of the paper"


def _agree(value) -> bool:
    """A ``seeds_agree`` cell read from CSV: True unless it says False (missing: a per-seed row)."""
    return str(value).strip().lower() not in ("false", "0", "0.0")


def paper_section(tables: Path) -> list[str]:
    """Each of the paper's CER findings, per language, held against this run's intervals.

    Overall: DO − SO below 0 for meaning, above 0 for surface. With edit
    distance: the same effect larger in the highest bin than in the lowest
    (their difference read off the two bins' intervals).
    """
    cer, gaps = _read(tables, "cer"), _read(tables, "cer_gaps")
    if cer is None or gaps is None:
        return []
    lines = [
        "## Against the paper's findings",
        "",
        "| language | the paper finds | this run | verdict |",
        "|---|---|---|---|",
    ]
    for r in cer[cer["unit"] == "char"].itertuples(index=False):
        sign = PAPER_EXPECTS[r.task]
        claim = f"MTL {'helps' if sign < 0 else 'hurts'} {r.task} (DO − SO {'<' if sign < 0 else '>'} 0)"
        seeds = _per_seed(tables, "cer", {"language": r.language, "task": r.task, "unit": "char"}, "gap")
        n = f", n = {r.n}" if "n" in cer else ""
        lines.append(
            f"| {r.language} | {claim} | {_interval(r.gap, r.ci_low, r.ci_high)}{n}{seeds} | "
            f"{_verdict(sign, r.ci_low, r.ci_high, seeds_agree=_agree(getattr(r, 'seeds_agree', True)))} |"
        )
        bins = _by_bin(
            gaps[(gaps["unit"] == "char") & (gaps["language"] == r.language) & (gaps["task"] == r.task)]
        )
        first, last = bins.iloc[0], bins.iloc[-1]
        growth = _verdict(
            sign, last.ci_low - first.ci_high, last.ci_high - first.ci_low, "the intervals overlap"
        )
        lines.append(
            f"| {r.language} | … more so at larger edit distance (ED {last.name} vs ED {first.name}) | "
            f"{_interval(first.gap, first.ci_low, first.ci_high)} → "
            f"{_interval(last.gap, last.ci_low, last.ci_high)} | {growth} |"
        )
    return lines + [
        "",
        "A verdict needs the interval pooled over seeds to exclude 0 and every seed to agree in sign; "
        "an edit-distance verdict is resolved only when the two bins' intervals do not overlap.",
        "",
    ]


def _short(layer: str) -> str:
    """The last part of a layer name: ``encoder.layers.3`` -> ``3``, ``encoder.embed`` -> ``embed``."""
    return layer.split(".")[-1]


def _layer_list(layers: list[str]) -> str:
    return ", ".join(map(_short, layers)) or "none"


def _layers_text(rows: pd.DataFrame) -> str:
    return ", ".join(
        f"{_short(r.layer_a)}: {r.cka:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in rows.itertuples()
    )


REFERENCE_LABELS = {
    CEILING: "seed-to-seed ceiling SSO~SSO′",
    FLOOR_NAME: "random-initialisation floor SSO~RAND",
}


def reference_lines(tables: Path, language: str, part: str) -> list[str]:
    """Where the part's comparisons sit between the ceiling and the floor (pooled, BH-adjusted), per layer."""
    gaps = _read(tables, "reference_gaps")
    gaps = gaps[(gaps["language"] == language) & (gaps["part"] == part)] if gaps is not None else gaps
    lines = []
    if gaps is None or (gaps["reference"] != CEILING).all():
        lines.append(
            "  - the seed-to-seed ceiling (SSO~SSO′) needs two SSO seeds: run with `--seeds 2` or more"
        )
    if gaps is None:
        return lines
    for (name, reference), rows in gaps.groupby(["comparison", "reference"], sort=False):
        cleared = _cleared(rows)
        same = _layer_list([r.layer for r in rows.itertuples() if r.layer not in set(cleared["layer"])])
        below = _layer_list(list(cleared.loc[cleared["difference"] < 0, "layer"]))
        above = _layer_list(list(cleared.loc[cleared["difference"] > 0, "layer"]))
        differs = ", ".join(
            f"{_short(r.layer)}: {_interval(r.difference, r.ci_low, r.ci_high)}" for r in rows.itertuples()
        )
        lines.append(
            f"  - {name} against the {REFERENCE_LABELS[reference]}: indistinguishable at layers {same}, "
            f"below it at layers {below}, above it at layers {above} (BH-adjusted p < {ALPHA}); "
            f"{name} − reference by layer: {differs}"
        )
    return lines


def _comparison_lines(rows: pd.DataFrame) -> list[str]:
    """``name by layer: 0: 0.81 [0.78, 0.84], ...`` per comparison, references labelled."""
    return [
        f"  - {name}{f' ({REFERENCE_LABELS[name]})' if name in REFERENCE_LABELS else ''} by layer: "
        f"{_layers_text(comp)}"
        for name, comp in rows.groupby("comparison", sort=False)
    ]


def encoder_section(tables: Path) -> list[str]:
    """Encoder CKA per language, its reference levels, and where the shared encoder leans."""
    cross, lean = _read(tables, "cross_task"), _read(tables, "encoder_entanglement")
    lines = [
        "## Encoders",
        "",
        "![encoder heatmaps](figures/heatmap_encoder.png)",
        "",
        "![encoder diagonals](figures/diagonal_encoder.png)",
        "",
    ]
    enc = diagonal(cross[cross["part"] == "encoder"])
    for language, rows in enc.groupby("language"):
        n, chance = int(rows["n"].iloc[0]), rows["null_mean"].mean()
        seeds = int(rows["seeds"].max()) if "seeds" in rows else 1
        lines.append(
            f"- {language} (n = {n} utterances, {rows['estimator'].iloc[0]} linear CKA, {seeds} "
            f"seed{'s' * (seeds > 1)}; shuffled-utterance chance level ≈ {chance:.2f}):"
        )
        lines += _comparison_lines(rows)
        lines += reference_lines(tables, language, "encoder")
        own = lean[lean["language"] == language]
        cleared = _cleared(own)
        to_sso = _layer_list([r.layer for r in cleared.itertuples() if r.lean > 0])
        to_mso = _layer_list([r.layer for r in cleared.itertuples() if r.lean < 0])
        leans = ", ".join(
            f"{_short(r.layer)}: {_interval(r.lean, r.ci_low, r.ci_high)}" for r in own.itertuples()
        )
        lines.append(
            f"  - the DO encoder is closer to the SSO encoder at layers {to_sso}, to the MSO encoder at "
            f"layers {to_mso} (BH-adjusted p < {ALPHA}, every seed agreeing), and not distinguishably "
            f"closer to either elsewhere (lean DO~SSO − DO~MSO, n = {n}: {leans})."
        )
    return lines + [""]


def decoder_section(tables: Path) -> list[str]:
    """How much each DO decoder keeps of its SO counterpart, and where it moves toward the other task."""
    dep = _read(tables, "decoder_departure")
    cross = _read(tables, "cross_task")
    lines = [
        "## Decoders",
        "",
        "![decoder heatmaps](figures/heatmap_decoder.png)",
        "",
        "![decoder diagonals](figures/diagonal_decoder.png)",
        "",
    ]
    for language, rows in diagonal(cross[cross["part"] == "decoder"]).groupby("language"):
        references = rows[rows["comparison"].isin(list(REFERENCE_LABELS))]
        lines.append(f"- {language} reference levels (surface decoder, n = {int(rows['n'].iloc[0])}):")
        lines += _comparison_lines(references) + reference_lines(tables, language, "decoder")
    for (language, decoder), rows in dep.groupby(["language", "decoder"], sort=False):
        own = ", ".join(f"{_short(r.layer)}: {r.cka_own:.2f}" for r in rows.itertuples())
        pull = ", ".join(
            f"{_short(r.layer)}: {_interval(r.pull, r.ci_low, r.ci_high)}" for r in rows.itertuples()
        )
        moved = _layer_list([r.layer for r in _cleared(rows).itertuples() if r.pull > 0])
        n = f" (n = {int(rows['n'].iloc[0])})" if "n" in rows else ""
        lines.append(
            f"- {language} {decoder}{n}: CKA to its own SO decoder by layer {own}; pull toward the other "
            f"task's SO decoder {pull}; clearly toward the other task (BH-adjusted p < {ALPHA}, pull > 0) "
            f"at layers {moved}."
        )
    return lines + [""]


def _resolved(row) -> int:
    """+1 / −1 when a pooled row's interval lies above / below 0 and every seed agrees, else 0."""
    if not _agree(getattr(row, "seeds_agree", True)):
        return 0
    return 1 if row.ci_low > 0 else -1 if row.ci_high < 0 else 0


def _mitigation_verdict(lean, surface_vs_do, surface_vs_so) -> str:
    """Reduced entanglement (surface path's change > 0) and closed the surface gap (V − DO < 0, V − SO not >
    0)."""
    reduced = lean is not None and _resolved(lean) > 0
    closed = surface_vs_do is not None and _resolved(surface_vs_do) < 0 and _resolved(surface_vs_so) <= 0
    if reduced and closed:
        return "**reduced entanglement and closed the surface gap**"
    missing = [
        text
        for ok, text in ((reduced, "did not reduce entanglement"), (closed, "did not close the surface gap"))
        if not ok
    ]
    return f"**did not** reduce entanglement and close the surface gap ({'; '.join(missing)})"


def mitigation_section(tables: Path) -> list[str]:
    """Per variant and language: CER against SO and plain DO, the task paths' lean against DO's, a verdict."""
    cer, lean = _read(tables, "mitigation_cer"), _read(tables, "mitigation_lean")
    if cer is None and lean is None:
        return []
    cer = cer[cer["unit"] == "char"] if cer is not None else pd.DataFrame(columns=["language", "variant"])
    lean = lean if lean is not None else pd.DataFrame(columns=["language", "variant"])
    lines = [
        "## Mitigation: structured multi-task variants",
        "",
        "CER gaps in points (variant − reference), encoder lean own_t = CKA(task path, own SO encoder) − "
        "CKA(task path, other SO encoder) at the top layers, its change against plain DO (positive: the "
        "variant keeps the task apart better). A variant *reduced entanglement* when the surface path's change "
        "is above 0 and *closed the surface gap* when its surface CER is below plain DO's and not above SO's "
        "(each: the pooled interval excludes 0 and every seed agrees).",
        "",
    ]
    keys = pd.concat([cer[["language", "variant"]], lean[["language", "variant"]]]).drop_duplicates()
    for language, variant in keys.itertuples(index=False):
        rows = cer[(cer["language"] == language) & (cer["variant"] == variant)].set_index(
            ["task", "reference"]
        )
        paths = lean[(lean["language"] == language) & (lean["variant"] == variant)].set_index("task")
        lines.append(f"- {language} {variant}:")
        for (task, reference), r in rows.iterrows():
            lines.append(
                f"  - {task} CER {r.variant_cer:.2f} % vs {reference} {r.reference_cer:.2f} % (n = {int(r.n)}, "
                f"{int(r.seeds)} seed{'s' * (r.seeds > 1)}): {variant} − {reference} = "
                f"{_interval(r.gap, r.ci_low, r.ci_high)} points (p (BH) = {r.p_adj:.3f})"
            )
        for task, r in paths.iterrows():
            lines.append(
                f"  - {task} path `{r.stream}` (n = {int(r.n)}): own {r.own_variant:+.3f} vs DO "
                f"{r.own_do:+.3f}, change {_interval(r.change, r.ci_low, r.ci_high, 3)}"
            )
        get = lambda index, table: table.loc[index] if index in table.index else None
        verdict = _mitigation_verdict(
            get("surface", paths), get(("surface", "DO"), rows), get(("surface", "SO"), rows)
        )
        lines.append(f"  - verdict: {variant} {verdict}.")
    return lines + [""]


def word_section(tables: Path) -> list[str]:
    """Word-level encoder CKA on divergent vs identical words, where the DO encoder's pull lies, the word CER
    gap."""
    cka, lean, cer = _read(tables, "word_cross_task"), _read(tables, "word_lean"), _read(tables, "word_cer")
    if cka is None or lean is None:
        return []
    lines = [
        "## Word level: divergent vs identical words",
        "",
        "Encoder CKA on word means (utterance-grouped bootstrap intervals); concentration = lean on divergent "
        "words − lean on identical words, lean = CKA(DO, SSO) − CKA(DO, MSO): negative where the DO encoder's "
        "pull toward MSO (away from SSO) is stronger on the words where the transcripts differ.",
        "",
    ]
    for language, rows in lean.groupby("language", sort=False):
        own = cka[cka["language"] == language]
        lines.append(f"- {language} (n = {int(rows['n_utterances'].iloc[0])} utterances):")
        for (words, name), comp in own.groupby(["words", "comparison"], sort=False):
            lines.append(
                f"  - {name} on {words} words (n = {int(comp['n_words'].iloc[0])} words): "
                + ", ".join(
                    f"{_short(r.layer)}: {r.cka:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]"
                    for r in comp.itertuples()
                )
            )
        cleared = _cleared(rows)
        toward = _layer_list(list(cleared.loc[cleared["concentration"] < 0, "layer"]))
        away = _layer_list(list(cleared.loc[cleared["concentration"] > 0, "layer"]))
        values = ", ".join(
            f"{_short(r.layer)}: {_interval(r.concentration, r.ci_low, r.ci_high)}" for r in rows.itertuples()
        )
        answer = "is" if toward != "none" else "is not"
        lines.append(
            f"  - the DO encoder's pull toward MSO (away from SSO) {answer} concentrated on divergent words: "
            f"at layers {toward} (BH-adjusted p < {ALPHA}, every seed agreeing); the reverse at layers {away}; "
            f"concentration by layer: {values}."
        )
    for r in cer.itertuples(index=False) if cer is not None else ():
        lines.append(
            f"- {r.language} {r.task} CER on {r.words} words (n = {r.n} utterances): SO {r.so_cer:.2f} % → "
            f"DO {r.do_cer:.2f} %, DO − SO = {_interval(r.gap, r.ci_low, r.ci_high)} points"
        )
    return lines + [""]


def cross_lang_section(tables: Path) -> list[str]:
    """Encoder SSO–MSO and DO–SO differences between languages, per layer."""
    diff = _read(tables, "cross_lang")
    if diff is None:
        return []
    lines = ["## Between languages", ""]
    for (part, name), rows in diff.groupby(["part", "comparison"], sort=False):
        a, b = rows["language_a"].iloc[0], rows["language_b"].iloc[0]
        clear = _layer_list(list(_cleared(rows)["layer_a"]))
        diffs = ", ".join(
            f"{_short(r.layer_a)}: {_interval(r.diff, r.ci_low, r.ci_high)}" for r in rows.itertuples()
        )
        n = f" (n = {int(rows['n_a'].iloc[0])} and {int(rows['n_b'].iloc[0])})"
        lines.append(
            f"- {part} {name}, CKA({a}) − CKA({b}) by layer{n}: {diffs}; "
            f"intervals excluding 0 (BH-adjusted p < {ALPHA}, every seed agreeing) at layers {clear}."
        )
    return lines + [""]


def seeds_section(tables: Path) -> list[str]:
    """How many seeds per role the findings pool, and what that leaves unmeasured."""
    cross = _read(tables, "cross_task")
    seeds = (
        int(cross.loc[~cross["comparison"].isin(list(REFERENCE_LABELS)), "seeds"].min())
        if "seeds" in cross
        else 1
    )
    if seeds > 1:
        return [
            f"Every finding pools {seeds} training seeds per role: the mean over seeds, with an interval that "
            f"holds the spread between seeds, read with Student's t on {seeds - 1} degrees of freedom, as well "
            "as the sampling of utterances (CKA: the seed mean's bootstrap draws plus a t-distributed seed "
            "part; CER gaps: Banerjee's interval on the two parts). Each "
            "seed's value is in the tables' `seed` column.",
            "",
        ]
    return [
        "**Training variance was not measured**: each role was trained with one seed, so the intervals cover "
        "the sampling of utterances only, and a rerun with other seeds (or on another machine) can move a "
        "finding across zero. Run `cka-probe reproduce --seeds 3` for findings that pool seeds.",
        "",
    ]


def stage_section(run_dir: Path) -> list[str]:
    """How long each stage took in the run that produced it."""
    path = run_dir / "stages.csv"
    if not path.exists():
        return []
    stages = pd.read_csv(path)
    done = stages[stages["status"] == "done"].drop_duplicates("stage", keep="last")
    rows = [f"| {r.stage} | {r.seconds:.0f} |" for r in done.itertuples()]
    return ["## Stages", "", "| stage | seconds |", "|---|---:|", *rows, ""]


def write_report(run_dir: str | Path, out: str | Path) -> Path:
    """Write the Markdown report of ``run_dir`` (its ``tables/``, ``figures/``, ``stages.csv``) to ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    tables = run_dir / "tables"
    sections = [
        [
            "# cka-probe report",
            "",
            f"Run directory `{run_dir.name}`. Intervals are 95 % bootstrap intervals for the population value "
            "(over utterances, and over seeds where several are pooled); "
            "CER in percent, CER gaps in percentage points "
            "(DO − SO: positive means multi-task learning hurt).",
            "",
        ],
        seeds_section(tables),
        paper_section(tables),
        cer_section(tables),
        gap_section(tables),
        encoder_section(tables),
        decoder_section(tables),
        mitigation_section(tables),
        word_section(tables),
        cross_lang_section(tables),
        stage_section(run_dir),
    ]
    return atomic_write_text(out, "\n".join(line for section in sections for line in section), point="report")
