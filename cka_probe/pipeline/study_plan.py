"""``reproduce``: from nothing (or the user's manifests) to the paper's tables, figures and report.

The run directory is laid out by stage::

    data/<lang>/{train,valid,test}.jsonl      synthetic corpus (skipped with --data)
    data/<lang>-s<k>/                        the corpus of seed replicate k (only with --resample-corpus)
    checkpoints/<lang>/<role>[-s<k>]/best.pt  SSO, MSO, DO per language and seed replicate k ≥ 1; rand:
    untrained;
                                             with --variants also each variant (role = its name, split-2, …)
    cer/<lang>/<role>[-s<k>].csv             per-utterance CER on the test split
    activations/<lang>/<role>[-s<k>].h5      per-utterance activations on the test split (with --variants or
                                             --word-level, sso.h5 also has the word spans sso.h5.words.jsonl)
    tables/*.csv, tables/cer.md              cross-task, cross-language, summary, CER
    figures/*.png|pdf                        heatmaps, diagonal plots, CER gap
    report.md                                the findings in numbers, key findings first, with the figures
    report.html                              the same report as one self-contained page (figures embedded)
    stages.csv                               what each stage did, how long it took, its recipe's fingerprint
    stages.json                              what each output was made from (its recipe)

With ``models`` (``--model LANG:ROLE#K=MODEL``) replicate K of a role of a
language is a model the user brings (a Hugging Face folder, a ``.pt`` or
``FILE.py:FUNCTION``; ``ROLE=`` is ``ROLE#0=``): it is not trained, is
evaluated (a model that cannot transcribe leaves a record saying so and the
study goes on without its CER) and extracted over ``test.jsonl`` with its role
and replicate recorded in the store, named like a trained replicate (only
``test.jsonl`` is then needed when every role of that language is brought).
The random-initialisation floor of a brought SSO is SSO replicate 0's
architecture with fresh weights (``extract --random-init SEED``: bundled
checkpoints, Hugging Face folders, Python adapters with ``build_random``).

Resumable: a stage writes into a hidden ``.<name>.partial`` path next to its
output and renames it on success, so an output that exists is complete; an
interrupted stage leaves only the partial path, which the next run removes and
starts again (training resumes its ``last.pt`` and extraction its store's last
commit). A partial path left beside a finished output (a kill while it was
being moved into place) is removed. Each move is a crash point
(:mod:`cka_probe.faults`) of the crash-safety tests.

A rerun answers the question it is asked: ``stages.json`` records each output's
recipe (its stage's options and its inputs' fingerprints, see
:mod:`~cka_probe.pipeline.runner`), an output whose recipe is the new plan's is
skipped, and one whose recipe changed (``--variants``, ``--seeds``,
``--word-level``, ``--epochs``, a brought model or data folder rewritten, ...)
is redone with everything downstream of it, with a ``[   redo]`` line saying
why. One ``reproduce`` at a time writes a run directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cka_probe.errors import CKAProbeError
from cka_probe.pipeline.runner import Stage, run_stages

MODELS: dict[str, tuple[str, str | None]] = {
    "sso": ("so", "surface"),
    "mso": ("so", "meaning"),
    "do": ("do", None),
}


@dataclass(frozen=True)
class Scale:
    """Corpus size, model config, training length and resampling counts of a run.

    ``epochs`` (None: the config's) is the same for every model, so that SO and
    DO models see the same data the same number of times, as in the paper;
    ``train_minutes`` (None: unbounded) optionally caps each training's wall
    time, at the cost of making the result depend on the machine's speed.
    """

    n: int
    config: str
    device: str
    epochs: int | None = None
    train_minutes: float | None = None
    n_boot: int = 200
    n_perm: int = 200
    test_n: int | None = None
    ceiling: bool = True


SCALES: dict[str, Scale] = {
    # 2-core CPU, <= 20 min in all (16-19 min measured from clean checkouts): 2 trainings at a time (1 thread
    # each), 8 trainings of 2.9-4.9 min (the tiny config's 10 epochs; the 7th and 8th are the second SSO seed
    # per
    # language, for the ceiling), those of the longer corpus first; 300 test utterances per language
    # (evaluation and
    # extraction take seconds, the tables' cost grows with n²).
    "tiny": Scale(n=1650, config="tiny", device="cpu", test_n=300),
    # the paper's Conformer (12 encoder layers), 50 epochs, on one GPU
    "paper": Scale(n=20000, config="paper", device="cuda", n_boot=1000, n_perm=1000),
}
FLOOR = "rand"
"""The untrained model (the SSO architecture) of the random-initialisation floor."""


@dataclass(frozen=True)
class Brought:
    """Replicate ``k`` of role ``role`` of language ``lang``: a model the user brings (``--model``)."""

    lang: str
    role: str
    k: int
    model: str

    @property
    def name(self) -> str:
        """Its stores' and files' name, as a trained replicate's (:func:`replicate_name`)."""
        return replicate_name(self.role, self.k)

    @property
    def option(self) -> str:
        return f"--model {self.lang}:{self.role}#{self.k}={self.model}"


def brought_models(models: dict[tuple[str, str], str]) -> list[Brought]:
    """``{(lang, "sso#1"): MODEL, (lang, "do"): MODEL}`` as :class:`Brought` models (``ROLE`` is ``ROLE#0``),
    ordered by language, role and replicate; a role not of :data:`MODELS`, a replicate not a count, one
    brought twice, or replicates not numbered 0..K−1 is one line naming the option."""
    found: dict[tuple[str, str, int], Brought] = {}
    for (lang, key), model in models.items():
        role, hash_, k = key.partition("#")
        if role not in MODELS or (hash_ and not k.isdigit()):
            raise CKAProbeError(
                f"--model {lang}:{key}={model}: expected LANG:ROLE=MODEL or LANG:ROLE#K=MODEL with ROLE "
                f"one of {', '.join(MODELS)} and K a replicate number 0, 1, ..."
            )
        one = Brought(lang, role, int(k or 0), model)
        if (lang, role, one.k) in found:
            raise CKAProbeError(f"{one.option}: replicate {one.k} of {lang}:{role} is brought twice")
        found[lang, role, one.k] = one
    for lang, role, k in found:
        if k and (lang, role, k - 1) not in found:
            raise CKAProbeError(
                f"{found[lang, role, k].option}: replicates of {lang}:{role} are numbered 0, 1, ... "
                f"without gaps; bring {lang}:{role}#{k - 1} too"
            )
    return [found[key] for key in sorted(found)]


def cer_csv(cer: Path, model: Brought) -> Path:
    """Where a brought model's CER file is (when it transcribes): ``cer/<lang>/<name>.csv``."""
    return cer / model.lang / f"{model.name}.csv"


def is_whisper_folder(model: str) -> bool:
    """Whether ``model`` is a Hugging Face Whisper folder (``model_type`` whisper in its ``config.json``)."""
    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "whisper"


def has_floor(model: str) -> bool:
    """Whether a brought model's random-initialisation floor can be drawn: its adapter builds it with fresh
    weights (bundled checkpoints and Hugging Face folders; a Python adapter with ``build_random``)."""
    from cka_probe.extract.models.python_adapter import is_python_adapter, load_python_adapter

    return not is_python_adapter(model) or hasattr(load_python_adapter(model), "build_random")


def prompts_of_model(prompts: Mapping[str, Any] | None, model: Brought) -> dict[str, str] | None:
    """The task prompts of a brought Whisper folder: the unscoped ones, updated by its role's
    (``{"do": {...}}``) and then its replicate's (``{"sso#1": {...}}``); None for other models."""
    if not prompts or not is_whisper_folder(model.model):
        return None
    scopes = (
        {k: v for k, v in prompts.items() if isinstance(v, str)},
        prompts.get(model.role),
        prompts.get(f"{model.role}#{model.k}"),
    )
    found = {task: prompt for scope in scopes for task, prompt in (scope or {}).items()}
    return found or None


def check_prompt_scopes(prompts: Mapping[str, Any] | None, brought: Sequence[Brought]) -> None:
    """Refuse (one line) prompts scoped to a role or replicate that no brought Whisper folder has."""
    whisper = {m for m in brought if is_whisper_folder(m.model)}
    names = {m.role for m in whisper} | {f"{m.role}#{m.k}" for m in whisper}
    for scope, value in (prompts or {}).items():
        if not isinstance(value, str) and scope not in names:
            raise CKAProbeError(
                f"--prompt {scope}:...: no Whisper folder is brought as {scope} "
                f"(brought Whisper folders: {', '.join(sorted(names)) or 'none'})"
            )


# -- the stage actions
# --------------------------------------------------------------------------------------------
def synth_action(
    partial: Path,
    *,
    lang: str,
    n: int,
    seed: int,
    test_n: int | None = None,
    exclude: Path | None = None,
    divergence: float | None = None,
) -> None:
    """The synthetic corpus (at level ``divergence`` of the dial, default the synthesiser's); with
    ``exclude`` (another corpus's test manifest) its sentences leave train and valid."""
    from cka_probe.data.manifest import read_manifest, write_manifest
    from cka_probe.data.synth import synthesize

    level = {} if divergence is None else {"divergence": divergence}
    paths = synthesize(lang=lang, n=n, out_dir=partial, seed=seed, test_n=test_n, **level)
    if exclude is not None:
        held_out = {row["surface"] for row in read_manifest(exclude, check_audio=False)}
        for split in ("train", "valid"):
            write_manifest(
                paths[split], [r for r in read_manifest(paths[split]) if r["surface"] not in held_out]
            )


def train_action(
    partial: Path,
    *,
    arch: str,
    task: str | None,
    data: Path,
    config: str,
    epochs: int | None,
    max_minutes: float | None,
    device: str,
    seed: int,
    variant: str = "shared",
    meaning_weight: float | None = None,
    save_every: int | None = None,
) -> None:
    """A training (resumed where ``last.pt`` exists), with a DO model's ``meaning_weight`` and snapshots
    every ``save_every`` epochs where given."""
    from cka_probe.asr.train import train

    train(
        arch=arch,
        task=task,
        train_manifest=data / "train.jsonl",
        valid_manifest=data / "valid.jsonl",
        config=config,
        out_dir=partial,
        resume=(partial / "last.pt").exists(),
        seed=seed,
        epochs=epochs,
        max_minutes=max_minutes,
        device=device,
        variant=variant,
        meaning_weight=meaning_weight,
        save_every=save_every,
    )


def evaluate_action(partial: Path, *, ckpt: Path, manifest: Path, name: str, device: str) -> None:
    from cka_probe.asr.evaluate import evaluate

    evaluate(ckpt, manifest, partial / f"{name}.csv", device=device)


def evaluate_brought_action(
    partial: Path,
    *,
    model: str,
    manifest: Path,
    name: str,
    device: str,
    tasks: Sequence[str] = ("surface", "meaning"),
    normalise: str = "basic",
    prompts: dict[str, str] | None = None,
) -> None:
    """``<name>.json``, the record of a brought model's CER, beside ``<name>.csv`` and its summary when the
    model transcribes: scored on its role's ``tasks`` (an SO model on its one task, so that the CER tables
    tell it from DO; references and hypotheses normalised by ``normalise``; each task after its prompt with
    ``prompts``); for one that cannot, the record says why
    and a line says the study goes on without it."""
    from cka_probe.extract.models.transcribe import CannotTranscribe, evaluate_model

    record: dict[str, Any] = {"model": model, "cer": f"{name}.csv"}
    try:
        evaluate_model(
            model,
            manifest,
            partial / f"{name}.csv",
            tasks=list(tasks),
            device=device,
            normalise=normalise,
            prompts=prompts,
        )
    except CannotTranscribe as err:
        print(f"{model} cannot transcribe: {err}; the study goes on without its CER", flush=True)
        record |= {"cer": None, "why": str(err)}
    (partial / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def untrained_action(partial: Path, *, data: Path, config: str, device: str, seed: int) -> None:
    from cka_probe.asr.train import untrained

    untrained(
        arch="so",
        task="surface",
        train_manifest=data / "train.jsonl",
        valid_manifest=data / "valid.jsonl",
        config=config,
        out_dir=partial,
        seed=seed,
        device=device,
    )


def extract_action(
    partial: Path,
    *,
    ckpt: Path | str,
    manifest: Path,
    name: str,
    device: str,
    role: str | None = None,
    word_spans: bool = False,
    replicate: int | None = None,
    random_init: int | None = None,
    prompts: dict[str, str] | None = None,
) -> None:
    """The store ``<name>.h5`` (each task teacher-forced after its prompt with ``prompts``); a brought
    model's records its ``role`` and ``replicate``, and the floor of a brought SSO is its architecture with
    fresh weights drawn with the seed ``random_init`` (role ``rand``)."""
    from cka_probe.extract.models import extract_model

    out = partial / f"{name}.h5"
    if not out.exists():  # a finished store, left by a kill before the stage was recorded, is kept
        extract_model(
            ckpt,
            manifest,
            out,
            device=device,
            role=role,
            replicate=replicate,
            random_init=random_init,
            word_spans=word_spans,
            prompts=prompts,
        )


def tables_action(
    partial: Path,
    *,
    stores: list[Path],
    cer: list[Path],
    n_boot: int,
    n_perm: int,
    seed: int,
    word_level: bool = False,
    spans: Mapping[str, str] | None = None,
    brought: Sequence[dict[str, Any]] = (),
) -> None:
    """The tables of exactly the plan's stores and the CER files of its languages with every role's
    (never a file another plan left behind); with ``brought`` models (language, role, replicate, model, its
    CER file), ``brought.json`` beside them, which says for each whether its CER is in the tables and after
    which text normalisation (:mod:`cka_probe.study.report.brought`)."""
    from cka_probe.study.report.brought import BROUGHT
    from cka_probe.study.tables import write_tables

    measured = measured_cer(cer)
    write_tables(
        stores, measured, partial, n_boot=n_boot, n_perm=n_perm, seed=seed, word_level=word_level, spans=spans
    )
    if brought:
        records = [model | {"cer": Path(model["cer"]) in measured} for model in brought]
        records = [
            r | {"normalise": normalisation(Path(m["cer"])) if r["cer"] else None}
            for r, m in zip(records, brought)
        ]
        (partial / BROUGHT).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def normalisation(cer_csv: Path) -> str | None:
    """The text normalisation a CER file's summary records (``basic`` or ``none``)."""
    from cka_probe.asr.evaluate import summary_path_for

    summary = summary_path_for(cer_csv)
    return json.loads(summary.read_text(encoding="utf-8")).get("normalise") if summary.exists() else None


def measured_cer(cer: Sequence[Path]) -> list[Path]:
    """The CER files of ``cer`` that exist, of the languages (folders) where SSO, MSO and DO each have one
    (the gaps pair SO with DO)."""
    present = [path for path in map(Path, cer) if path.exists()]
    names = {(path.parent, path.stem) for path in present}
    return [path for path in present if all((path.parent, m) in names for m in MODELS)]


def figures_action(partial: Path, *, tables: Path) -> None:
    from cka_probe.figures.write import write_figures

    write_figures(tables, partial)


def report_action(partial: Path, *, run_dir: Path) -> None:
    """``report.md`` and, beside it (published as its sidecar), ``report.html``."""
    from cka_probe.study.report import write_report

    write_report(run_dir, partial / "report.md")


def on_available_device(scale: Scale) -> Scale:
    """``scale`` on the CPU when it asks for CUDA and none is available."""
    import torch

    if scale.device.startswith("cuda") and not torch.cuda.is_available():
        return replace(scale, device="cpu")
    return scale


def training_audio(stage: Stage) -> float:
    """Seconds of training audio of a training stage, which its run time grows with (its ``Stage.cost``).

    Longest-first list scheduling (Graham 1969) of trainings whose corpora differ in length: started in the
    plan's order, the Korean trainings (their audio 1.3x the English) ended last, one core idle for 1.8 min of
    the ``tiny`` run.
    """
    from cka_probe.data.manifest import read_manifest

    manifest = Path(stage.kwargs.get("data", "")) / "train.jsonl"
    if not manifest.is_file():
        return 0.0
    rows = read_manifest(manifest, check_audio=False, require=())  # the training itself checks the rest
    return sum(float(row.get("duration", 0.0)) for row in rows)


# -- the plan
# -----------------------------------------------------------------------------------------------------
def _data_dirs(
    run_dir: Path, langs: Sequence[str], data: dict[str, Path] | None, models: Sequence[Brought]
) -> dict[str, Path]:
    """Where each language's train/valid/test manifests are: the user's folders or ``data/<lang>``."""
    dirs = {lang: (data or {}).get(lang, run_dir / "data" / lang) for lang in langs}
    for model in models:
        if model.lang not in (data or {}):
            raise CKAProbeError(
                f"{model.option}: give the manifests of {model.lang} with --data {model.lang}=DIR"
            )
    for lang, folder in (data or {}).items():
        if lang not in langs:
            raise CKAProbeError(f"--data {lang}={folder}: {lang} is not among --lang {' '.join(langs)}")
        brought = {m.role for m in models if m.lang == lang} == set(MODELS)
        for split in ("test",) if brought else ("train", "valid", "test"):
            if not (folder / f"{split}.jsonl").exists():
                raise CKAProbeError(f"--data {lang}={folder}: no {split}.jsonl in that folder")
    return dirs


def replicate_name(model: str, k: int) -> str:
    """``sso`` for seed replicate 0, ``sso-s1`` for replicate 1, ... (the analysis reads ``-s<k>`` as the
    replicate)."""
    return model if k == 0 else f"{model}-s{k}"


def trainings(seeds: int, ceiling: bool, variants: Sequence[str] = ()) -> list[tuple[str, int]]:
    """(model, replicate) of every training: K replicates of each role, plus a second SSO when K = 1 and
    ``ceiling``.

    The longest (the variants, DO) first, so that trainings side by side end close together (longest-first
    list
    scheduling).
    """
    runs = [(m, k) for m in (*variants, "do", "mso", "sso") for k in range(seeds)]
    return runs + [("sso", 1)] * (seeds == 1 and ceiling)


def _training_length(scale: Scale) -> dict[str, Any]:
    """The options of a training that ``scale`` sets (not its resampling counts: those are the tables')."""
    return {"config": scale.config, "epochs": scale.epochs, "max_minutes": scale.train_minutes}


def role_tasks(role: str) -> tuple[str, ...]:
    """The tasks a model of ``role`` is scored on: an SO model's one task, both for DO."""
    task = MODELS[role][1]
    return (task,) if task else ("surface", "meaning")


def model_file(model: str) -> Path:
    """The file or folder a brought model is read from (``FILE.py`` of ``FILE.py:FUNCTION``)."""
    file, colon, _ = model.rpartition(":")
    return Path(file) if colon and file.endswith(".py") else Path(model)


def _training(m: str) -> dict[str, Any]:
    """``arch``, ``task`` (and a variant's ``variant``) of the training of model ``m``."""
    if m in MODELS:
        return {"arch": MODELS[m][0], "task": MODELS[m][1]}
    return {"arch": "do", "task": None, "variant": m}


def check_variants(variants: Sequence[str], config: str) -> None:
    """Each of ``variants`` must be a structured variant that fits ``config`` (not ``shared``: that is DO)."""
    from cka_probe.asr.config import load_config
    from cka_probe.asr.variants.spec import parse_variant

    n_layers = load_config(config)["encoder"]["n_layers"]
    for name in variants:
        if name == "shared":
            raise CKAProbeError("--variants: 'shared' is the plain DO model, which every run trains")
        parse_variant(name, n_layers)
    if len(set(variants)) < len(variants):
        raise CKAProbeError(f"--variants: {' '.join(variants)} names a variant twice")


def check_spans(langs: Sequence[str], spans: Mapping[str, Path], brought: set[tuple[str, str]]) -> None:
    """Raise unless every language of ``spans`` is studied, each spans file exists, and every language
    whose SSO is ``brought`` (language, role) at word level has spans (only a trained SSO writes them)."""
    for lang, path in spans.items():
        if lang not in langs:
            raise CKAProbeError(f"--spans {lang}={path}: {lang} is not a language of the run")
        if not Path(path).exists():
            raise CKAProbeError(f"--spans {lang}={path}: no such file or folder")
    missing = sorted(lang for lang, role in brought if role == "sso" and lang not in spans)
    if missing:
        raise CKAProbeError(
            f"word level for {missing[0]}: its SSO is brought, so its words need --spans {missing[0]}=PATH "
            "(a TextGrid folder, a CTM or a word-span .jsonl, e.g. a bundled SSO's extract --word-spans)"
        )


def plan(
    run_dir: Path,
    langs: Sequence[str],
    scale: Scale,
    *,
    data: dict[str, Path] | None = None,
    n: int | None = None,
    seed: int = 0,
    seeds: int = 1,
    resample_corpus: bool = False,
    models: dict[tuple[str, str], str] | None = None,
    variants: Sequence[str] = (),
    word_level: bool = False,
    spans: Mapping[str, Path] | None = None,
    prompts: Mapping[str, Any] | None = None,
    normalise: str = "basic",
) -> list[Stage]:
    """The stages of a reproduction, in order.

    Model m of seed replicate k trains with seed ``seed + 3k + index(m)`` (initialisation and data order), so
    that no similarity is inherited from a shared start and K = 1 is the single-seed run; the untrained floor
    model takes seed ``seed + 3·max(K, 2)``, beyond every trained one. The corpus is the same for every
    replicate unless ``resample_corpus`` (replicate k then trains on a corpus drawn with seed ``seed + k``,
    from which replicate 0's test sentences are removed, and every model is scored on replicate 0's test
    split).
    ``models`` maps (language, ``role`` or ``role#k``) to a model the user brings (:func:`brought_models`):
    that role is not trained; its replicates are those brought, each evaluated and extracted; a language
    whose SSO is brought gets no trained second SSO for the ceiling (bring ``sso#1``), and its floor is SSO
    replicate 0's architecture with fresh weights (seeded as the trained floor) when its adapter can build
    one (:func:`has_floor`).
    ``prompts`` (task -> prompt, and ``ROLE`` or ``ROLE#K`` -> task -> prompt for the models of one role
    or replicate: :func:`prompts_of_model`) are given to the evaluation and the extraction of the brought
    Whisper folders. ``normalise`` (``basic`` or ``none``) is the text normalisation of the brought models'
    CER (:func:`cka_probe.extract.models.transcribe.evaluate_model`), which the report states.
    ``variants`` (structured DO variants, :mod:`cka_probe.asr.variants.spec`) train beside DO with DO's seed
    of
    their replicate (the same initialisation stream and data order), are evaluated and extracted like it,
    and extend the comparison set and the report (its "Mitigation" section). ``word_level`` (implied by
    ``variants``, and by ``spans``) writes the word spans of each language's trained SSO store and adds the
    word-level tables and probes; ``spans`` maps a language to its word spans from any aligner (a TextGrid
    folder, a CTM or a JSON Lines file, :func:`cka_probe.compare.span_sources.read_spans`), which a
    language whose SSO is brought needs.
    """
    brought = brought_models(models or {})
    roles = {(m.lang, m.role) for m in brought}
    check_variants(variants, scale.config)
    word_level = word_level or bool(variants) or bool(spans)
    check_spans(langs, spans or {}, roles if word_level else set())
    if seeds < 1:
        raise CKAProbeError(f"--seeds must be at least 1, got {seeds}")
    if resample_corpus and data:
        raise CKAProbeError(
            "--resample-corpus draws new synthetic corpora; it cannot be combined with --data"
        )
    dirs = _data_dirs(run_dir, langs, data, brought)
    scale = on_available_device(scale)
    size = {"n": n or scale.n, "test_n": scale.test_n if n is None else None}
    stages = [
        Stage(f"synth {lang}", dirs[lang], synth_action, {"lang": lang, "seed": seed, **size})
        for lang in langs
        if lang not in (data or {})
    ]
    corpus = {(lang, k): dirs[lang] for lang in langs for k in range(seeds)}
    for lang, k in list(corpus) if resample_corpus else []:
        if k:
            corpus[lang, k] = run_dir / "data" / f"{lang}-s{k}"
            stages.append(
                Stage(
                    f"synth {lang} s{k}",
                    corpus[lang, k],
                    synth_action,
                    {"lang": lang, "seed": seed + k, "exclude": dirs[lang] / "test.jsonl", **size},
                    inputs=(dirs[lang] / "test.jsonl",),
                )
            )
    runs = trainings(seeds, scale.ceiling, variants)
    ckpt = {}
    for m, k in runs:
        for lang in (lang for lang in langs if (lang, m) not in roles):
            name = replicate_name(m, k)
            ckpt[lang, name] = run_dir / "checkpoints" / lang / name
            kwargs = {
                **_training(m),
                "data": corpus.get((lang, k), dirs[lang]),
                **_training_length(scale),
                "device": scale.device,
                "seed": seed + 3 * k + list(MODELS).index(m if m in MODELS else "do"),
            }
            stages.append(
                Stage(
                    f"train {lang} {name}",
                    ckpt[lang, name],
                    train_action,
                    kwargs,
                    parallel="train",
                    resumable=True,
                    cost=training_audio,
                    inputs=(kwargs["data"],),
                )
            )
    floor_seed = seed + 3 * max(seeds, 2)
    for lang in (lang for lang in langs if (lang, "sso") not in roles):
        ckpt[lang, FLOOR] = run_dir / "checkpoints" / lang / FLOOR
        stages.append(
            Stage(
                f"init {lang} {FLOOR}",
                ckpt[lang, FLOOR],
                untrained_action,
                {
                    "data": dirs[lang],
                    "config": scale.config,
                    "device": scale.device,
                    "seed": floor_seed,
                },
                parallel="train",
                inputs=(dirs[lang],),
            )
        )
    for (lang, name), folder in ckpt.items():
        common = {
            "ckpt": folder / "best.pt",
            "manifest": dirs[lang] / "test.jsonl",
            "name": name,
            "device": scale.device,
        }
        if name != FLOOR:
            stages.append(
                Stage(
                    f"evaluate {lang} {name}",
                    run_dir / "cer" / lang / f"{name}.csv",
                    evaluate_action,
                    common,
                    parallel="score",
                    inputs=(common["ckpt"], dirs[lang]),
                )
            )
        spans = {"word_spans": True} if word_level and name == "sso" else {}
        stages.append(
            Stage(
                f"extract {lang} {name}",
                run_dir / "activations" / lang / f"{name}.h5",
                extract_action,
                common | spans,
                parallel="score",
                resumable=True,
                inputs=(common["ckpt"], dirs[lang]),
            )
        )
    check_prompt_scopes(prompts, brought)
    for model in brought:
        stages += _brought_stages(
            run_dir, model, dirs[model.lang], scale.device, prompts_of_model(prompts, model), normalise
        )
    stages += [
        _floor_stage(
            run_dir, model, dirs[model.lang], scale.device, floor_seed, prompts_of_model(prompts, model)
        )
        for model in brought
        if model.role == "sso" and model.k == 0 and has_floor(model.model)
    ]
    return stages + _study_stages(run_dir, stages, scale, seed, word_level, brought, spans or {})


def _brought_stages(
    run_dir: Path, model: Brought, data: Path, device: str, prompts: dict[str, str] | None, normalise: str
) -> list[Stage]:
    """The evaluation (its text ``normalise``-d) and the extraction of a brought model, with its task
    ``prompts``."""
    common = {"manifest": data / "test.jsonl", "name": model.name, "device": device}
    if prompts:
        common["prompts"] = prompts
    inputs = (model_file(model.model), data)
    return [
        Stage(
            f"evaluate {model.lang} {model.name}",
            run_dir / "cer" / model.lang / f"{model.name}.json",
            evaluate_brought_action,
            common | {"model": model.model, "tasks": role_tasks(model.role), "normalise": normalise},
            parallel="score",
            inputs=inputs,
        ),
        Stage(
            f"extract {model.lang} {model.name}",
            run_dir / "activations" / model.lang / f"{model.name}.h5",
            extract_action,
            common | {"ckpt": model.model, "role": model.role, "replicate": model.k},
            parallel="score",
            resumable=True,
            inputs=inputs,
        ),
    ]


def _floor_stage(
    run_dir: Path, sso: Brought, data: Path, device: str, seed: int, prompts: dict[str, str] | None
) -> Stage:
    """The random-initialisation floor of a brought SSO: the store (role ``rand``) of its architecture with
    fresh weights drawn with ``seed``, extracted as it is (with its ``prompts``)."""
    extract = {"ckpt": sso.model, "manifest": data / "test.jsonl", "name": FLOOR, "device": device}
    return Stage(
        f"extract {sso.lang} {FLOOR}",
        run_dir / "activations" / sso.lang / f"{FLOOR}.h5",
        extract_action,
        extract
        | {"role": FLOOR, "replicate": 0, "random_init": seed}
        | ({"prompts": prompts} if prompts else {}),
        parallel="score",
        resumable=True,
        inputs=(model_file(sso.model), data),
    )


def _study_stages(
    run_dir: Path,
    scoring: Sequence[Stage],
    scale: Scale,
    seed: int,
    word_level: bool,
    brought: Sequence[Brought] = (),
    spans: Mapping[str, Path] | None = None,
) -> list[Stage]:
    """Tables of the stores and CER files that the ``scoring`` stages write (a brought model's evaluation
    writes its record, and its CER file when it transcribes) and of the languages' word ``spans``, then the
    figures and the report."""
    made = {kind: [s.output for s in scoring if s.name.startswith(kind)] for kind in ("extract", "evaluate")}
    cer = run_dir / "cer"
    records = [
        {"language": m.lang, "role": m.role, "replicate": m.k, "model": m.model, "cer": cer_csv(cer, m)}
        for m in brought
    ]
    tables, figures = run_dir / "tables", run_dir / "figures"
    options = {
        "stores": made["extract"],
        "cer": [path.with_suffix(".csv") for path in made["evaluate"]],
        "n_boot": scale.n_boot,
        "n_perm": scale.n_perm,
    }
    return [
        Stage(
            "tables",
            tables,
            tables_action,
            options
            | {"seed": seed}
            | ({"word_level": True} if word_level else {})
            | ({"spans": {lang: str(path) for lang, path in spans.items()}} if spans else {})
            | ({"brought": records} if records else {}),
            inputs=(*made["extract"], *made["evaluate"], *(spans or {}).values()),
        ),
        Stage("figures", figures, figures_action, {"tables": tables}, inputs=(tables,)),
        Stage("report", run_dir / "report.md", report_action, {"run_dir": run_dir}, inputs=(tables, figures)),
    ]


def reproduce(
    langs: Sequence[str],
    scale: str,
    out: str | Path,
    *,
    data: dict[str, Path] | None = None,
    n: int | None = None,
    seed: int = 0,
    jobs: int = 2,
    epochs: int | None = None,
    train_minutes: float | None = None,
    seeds: int = 1,
    resample_corpus: bool = False,
    ceiling: bool = True,
    models: dict[tuple[str, str], str] | None = None,
    variants: Sequence[str] = (),
    word_level: bool = False,
    spans: Mapping[str, Path] | None = None,
    prompts: Mapping[str, Any] | None = None,
    normalise: str = "basic",
) -> Path:
    """Run (or resume) the whole pipeline into ``out``; returns the path of ``report.md``.

    A rerun on a run directory skips each stage whose output was made from the
    recipe the new options give, and redoes (with a note why) each one whose
    recipe changed and everything downstream of it; a second ``reproduce`` on
    the same directory while one runs is refused.

    ``scale``: ``tiny`` (2-core CPU, about 20 minutes) or ``paper`` (the paper's
    configuration, for a GPU). ``data`` maps a language to a folder with the
    user's ``train.jsonl``, ``valid.jsonl`` and ``test.jsonl``. ``jobs``
    trainings run side by side with one thread each. ``epochs`` replaces the
    config's number of epochs (for every model); ``train_minutes`` caps each
    training's wall time. ``seeds`` trains that many seed replicates of every
    role (with one, ``tiny`` still trains a second SSO for the seed-to-seed
    ceiling, unless ``ceiling`` is False); ``resample_corpus`` gives each
    replicate its own training corpus. ``models`` maps ``(language, role)`` or
    ``(language, "role#k")`` to a model the user brings instead of training one (see the module
    docstring). ``variants`` also trains, evaluates, extracts and compares those structured DO variants
    (``split-2``, ``shared-private``, ``sparse-shared``); ``word_level`` (implied by ``variants``) adds
    the word-level analysis and probes, on the word spans of ``spans`` (language -> a TextGrid folder,
    CTM or JSON Lines file) where given. ``prompts`` (task -> prompt, or scoped to a role:
    :func:`plan`) select the output of each brought Whisper folder whose one decoder takes a task prompt,
    in its evaluation and extraction; ``normalise`` the text normalisation of the brought models' CER.
    """
    if scale not in SCALES:
        raise CKAProbeError(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    run_dir = Path(out)
    chosen = replace(
        SCALES[scale],
        ceiling=ceiling,
        **{k: v for k, v in (("epochs", epochs), ("train_minutes", train_minutes)) if v is not None},
    )
    stages = plan(
        run_dir,
        list(langs),
        chosen,
        data=data,
        n=n,
        seed=seed,
        seeds=seeds,
        resample_corpus=resample_corpus,
        models=models,
        variants=variants,
        word_level=word_level,
        spans=spans,
        prompts=prompts,
        normalise=normalise,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    run_stages(stages, run_dir, jobs=jobs)
    return run_dir / "report.md"
