"""Training of the bundled single-output (SO) and dual-output (DO) CTC-attention models.

One epoch = one pass over the training manifest in length-grouped, shuffled
batches (``TrainBatches``), SpecAugmented (Park et al. 2019). Each step:

    L = Σ_k w_k L_k                  (model.forward: CTC + attention losses, label smoothing)
    g ← clip(∇L, ‖g‖₂ ≤ clip)       (Pascanu et al. 2013)
    θ ← AdamW(θ, g, lr(step))        (Loshchilov & Hutter 2019; lr: warm-up + cosine, schedule.py)

After each epoch the model is scored on the validation manifest: the same
losses without SpecAugment or dropout, and the CER of greedy attention
decoding per task. ``out_dir`` receives

- ``last.pt``: the latest epoch, with the optimizer state, the step count and
  the torch RNG state, so that ``resume=True`` continues exactly (the data
  order and the SpecAugment masks are functions of ``(seed, epoch)``);
- ``best.pt``: the epoch with the lowest validation loss (the weighted sum,
  the quantity training minimises; less noisy than the CER of a small set);
- ``log.csv``: one row per epoch (:func:`log_columns`);
- with ``save_every=E``, ``epoch-0000.pt`` (the initial weights, before any
  step) and ``epoch-EEEE.pt`` after every E-th epoch (:func:`snapshot_name`):
  the weights of that epoch in ``best.pt``'s format, without the optimizer,
  so ``load_checkpoint`` and ``extract`` read them; they trace the model over
  training.

Crash safety: each file is written atomically (``cka_probe.atomic``), and
``last.pt`` is written last in each epoch, so it is the commit: a run killed
at any moment resumes from the last epoch whose ``last.pt`` was renamed into
place, trains the lost epoch again and rewrites ``best.pt``, ``log.csv`` and
its ``epoch-EEEE.pt`` as an uninterrupted run would have (each is written
before ``last.pt``; a resumed run keeps the snapshots already written).
Rerunning the same command over a folder that holds a ``last.pt`` of the same
settings resumes it (``overwrite=True`` starts again, deleting the
snapshots too); over a finished run it only returns ``best.pt``.

Determinism: a fixed seed fixes initialisation, data order, SpecAugment and
dropout; results are bitwise repeatable for the same thread count on CPU.
Parameters, features and losses are float32 (the models' dtype); the lr
schedule and the logged means are Python floats (float64).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cka_probe.asr.checkpoint import check_count, load_state, read_checkpoint, save_checkpoint, usable_device
from cka_probe.asr.cmvn import GlobalCMVN
from cka_probe.asr.config import POSITIVE, check_config, load_config
from cka_probe.asr.data import TrainBatches, build_tokenizers, load_features
from cka_probe.asr.decode import transcribe
from cka_probe.asr.model import ASRModel, build_model, check_variant
from cka_probe.asr.schedule import warmup_cosine
from cka_probe.asr.tokenizer import CharTokenizer
from cka_probe.asr.variants.spec import DEFAULTS, variant_settings
from cka_probe.atomic import atomic_write_text
from cka_probe.data.manifest import read_manifest
from cka_probe.errors import CKAProbeError
from cka_probe.locks import output_lock
from cka_probe.paths import refuse_input_as_output
from cka_probe.text.cer import char_errors, normalize_text, percent

OUTPUTS = ("best.pt", "last.pt", "log.csv")
"""The files a training run writes into its output folder (and with ``save_every`` its snapshots)."""
SNAPSHOTS = "epoch-*.pt"
"""The names of the snapshots that ``save_every`` keeps (:func:`snapshot_name`)."""


def train(
    *,
    arch: str,
    task: str | None = None,
    variant: str = "shared",
    train_manifest: str | Path,
    valid_manifest: str | Path,
    config: str | Path | dict[str, Any],
    out_dir: str | Path,
    resume: bool = False,
    seed: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    meaning_weight: float | None = None,
    max_minutes: float | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    save_every: int | None = None,
) -> Path:
    """Train an SO (``task`` surface|meaning) or DO model; returns the path of ``best.pt``.

    ``config`` is a named config (``tiny``, ``paper``), a JSON path or a dict;
    ``seed``, ``epochs`` and ``lr`` override its ``train`` section;
    ``meaning_weight`` sets a DO model's ``loss.do.meaning`` and with it
    ``loss.do.surface = 1 − ctc − meaning_weight``, so the weights still sum to 1.
    ``variant`` (DO only) is the encoder's structure (:mod:`cka_probe.asr.variants.spec`);
    its settings are written into the saved config.
    A second training into the same ``out_dir`` is refused while one runs
    (:func:`cka_probe.locks.output_lock`).
    ``max_minutes`` bounds the wall time: after the first epoch the number of
    epochs is cut to what fits, so that the lr decay still completes.
    With ``resume=True`` training continues from ``out_dir/last.pt`` with its
    config (``epochs`` may be raised to train longer); without it, an existing
    ``last.pt`` is resumed if it was trained with the same config (all but its
    number of epochs), refused otherwise, and ignored with ``overwrite=True``.
    ``save_every=E`` keeps the weights at epoch 0 and after every E-th epoch
    (``epoch-EEEE.pt``); it is an output choice, not a setting, so a resumed run
    may change it.
    """
    out_dir = Path(out_dir)
    tasks = tasks_for(arch, task)
    check_overrides(seed=seed, epochs=epochs, lr=lr)
    check_count(save_every, "save_every", optional=True)
    device = usable_device(device)
    refuse_inputs_as_outputs(out_dir, train_manifest, valid_manifest, config)
    with output_lock(out_dir):  # one training per folder: two would resume one last.pt
        if overwrite:
            for path in (*(out_dir / name for name in OUTPUTS), *out_dir.glob(SNAPSHOTS)):
                path.unlink(missing_ok=True)
        last = read_checkpoint(out_dir / "last.pt") if resume or (out_dir / "last.pt").is_file() else None
        if last is not None:
            check_resumable(last, arch, tasks, variant, out_dir / "last.pt")
        if last is not None and not resume:
            fresh = fresh_config(config, arch, variant, meaning_weight, seed=seed, epochs=epochs, lr=lr)
            check_same_settings(last, fresh, out_dir / "last.pt")
            print(f"{out_dir / 'last.pt'}: resuming after epoch {last['epoch']}", flush=True)
        if last is not None:
            config = resolved_config(last["config"], seed=seed, epochs=epochs, lr=lr)
        else:
            config = fresh_config(config, arch, variant, meaning_weight, seed=seed, epochs=epochs, lr=lr)
        torch.manual_seed(config["train"]["seed"])
        manifests = Path(train_manifest), Path(valid_manifest)
        run = Run.prepare(arch, tasks, config, *manifests, last, device, variant)
        return run.fit(out_dir, max_minutes, save_every)


def untrained(
    *,
    arch: str,
    task: str | None = None,
    train_manifest: str | Path,
    valid_manifest: str | Path,
    config: str | Path | dict[str, Any],
    out_dir: str | Path,
    seed: int,
    device: str = "cpu",
) -> Path:
    """``out_dir/best.pt``: a model of ``arch`` initialised with ``seed`` and never trained (epoch 0).

    Tokenizers and CMVN come from the training set as in :func:`train`, so it
    is extracted the same way as a trained model: the random-initialisation
    floor of CKA (its store's ``checkpoint_epoch`` is 0).
    """
    check_overrides(seed=seed, epochs=None, lr=None)
    device = usable_device(device)
    refuse_inputs_as_outputs(Path(out_dir), train_manifest, valid_manifest, config)
    config = fresh_config(config, arch, "shared", None, seed=seed, epochs=None, lr=None)
    torch.manual_seed(config["train"]["seed"])
    run = Run.prepare(
        arch, tasks_for(arch, task), config, Path(train_manifest), Path(valid_manifest), None, device
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return save_checkpoint(
        Path(out_dir) / "best.pt",
        model=run.model,
        config=config,
        tokenizers=run.tokenizers,
        cmvn=run.cmvn,
        epoch=0,
        metrics={},
    )


def tasks_for(arch: str, task: str | None) -> tuple[str, ...]:
    """The tasks a model trains: SO needs ``task``; DO trains surface and meaning."""
    if arch == "so":
        if task not in ("surface", "meaning"):
            raise CKAProbeError("a single-output model needs --task surface or --task meaning")
        return (task,)
    if arch == "do":
        if task is not None:
            raise CKAProbeError("a dual-output model trains both tasks; drop --task")
        return ("surface", "meaning")
    raise CKAProbeError(f"arch must be 'so' or 'do', got '{arch}'")


def check_overrides(*, seed: object, epochs: object, lr: object) -> None:
    """Raise :class:`CKAProbeError` naming the argument for a seed, number of epochs or lr out of range."""
    check_count(seed, "seed", optional=True, minimum=0)
    check_count(epochs, "epochs", optional=True)
    test, wanted = POSITIVE
    if lr is not None and not test(lr):
        raise CKAProbeError(f"lr must be {wanted}, not {lr!r}")


def refuse_inputs_as_outputs(
    out_dir: Path, train_manifest: str | Path, valid_manifest: str | Path, config: str | Path | dict[str, Any]
) -> None:
    """Raise :class:`CKAProbeError` if ``best.pt``, ``last.pt`` or ``log.csv`` in ``out_dir`` is an input."""
    inputs = [train_manifest, valid_manifest, None if isinstance(config, dict) else config]
    for name in OUTPUTS:
        refuse_input_as_output(out_dir / name, inputs)


def resolved_config(
    config: str | Path | dict[str, Any], *, seed: int | None, epochs: int | None, lr: float | None
) -> dict[str, Any]:
    """A copy of the config with the given overrides written into its ``train`` section."""
    if isinstance(config, dict):
        check_config(config)
        config = copy.deepcopy(config)
    else:
        config = load_config(config)
    overrides = {"seed": seed, "epochs": epochs, "lr": lr}
    config["train"].update({k: v for k, v in overrides.items() if v is not None})
    return config


def fresh_config(
    config: str | Path | dict[str, Any],
    arch: str,
    variant: str,
    meaning_weight: float | None,
    **overrides: Any,
) -> dict[str, Any]:
    """The config a new run saves: overrides, the meaning weight and the variant's resolved settings
    applied."""
    config = resolved_config(config, **overrides)
    check_variant(arch, variant, config["encoder"]["n_layers"])
    return with_variant_settings(with_meaning_weight(config, arch, meaning_weight), variant)


def with_meaning_weight(config: dict[str, Any], arch: str, weight: float | None) -> dict[str, Any]:
    """``loss.do``'s meaning weight set to ``weight`` and its surface weight to ``1 − ctc − weight``."""
    if weight is None:
        return config
    ctc = config["loss"]["do"]["ctc"]
    if arch != "do" or not 0 < weight < 1 - ctc:
        raise CKAProbeError(
            f"--meaning-weight needs a dual-output model and 0 < weight < 1 − ctc = {1 - ctc:g}, "
            f"got {weight:g} for arch {arch}"
        )
    config["loss"]["do"].update(meaning=weight, surface=1 - ctc - weight)
    return config


def with_variant_settings(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """The config with the resolved settings of ``variant`` (if it has any) in its ``variants`` section."""
    if variant in DEFAULTS:
        config["variants"] = config.get("variants", {}) | {variant: variant_settings(config, variant)}
    return config


def check_resumable(
    last: dict[str, Any], arch: str, tasks: tuple[str, ...], variant: str, path: Path
) -> None:
    """``last.pt`` must be a training checkpoint of the same arch, variant and tasks."""
    if (last["arch"], tuple(last["tasks"]), last["variant"]) != (arch, tasks, variant):
        raise CKAProbeError(
            f"{path}: holds a {last['arch']} ({last['variant']}) model of {last['tasks']}, "
            f"not {arch} ({variant}) of {list(tasks)}"
        )
    if "optimizer" not in last or "train_state" not in last.get("extra", {}):
        raise CKAProbeError(f"{path}: has no optimizer or training state to resume from")


def check_same_settings(last: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """An unasked-for resume needs ``last.pt``'s config to equal ``config`` but for ``train.epochs``."""

    def without_epochs(c: dict[str, Any]) -> dict[str, Any]:
        return {**c, "train": {k: v for k, v in c["train"].items() if k != "epochs"}}

    ours, theirs = without_epochs(config), without_epochs(last["config"])
    for section in sorted(set(ours) | set(theirs)):
        if ours.get(section) != theirs.get(section):
            raise CKAProbeError(
                f"{path}: an interrupted training with another {section!r} config; "
                "pass --resume to continue it or --overwrite to start again"
            )


def log_columns(tasks: tuple[str, ...], aux: tuple[str, ...] = ()) -> list[str]:
    """Columns of ``log.csv``: losses as means per utterance (``aux``: a variant's auxiliary ones), CER in
    percent."""
    losses = ["loss", "ctc", *(f"att_{t}" for t in tasks), *aux]
    return [
        "epoch",
        "step",
        "lr",
        *(f"train_{k}" for k in losses),
        *(f"valid_{k}" for k in losses),
        *(f"valid_cer_{t}" for t in tasks),
        "seconds",
    ]


class Run:
    """The state of one training run: data, model, optimizer, counters."""

    def __init__(
        self, *, config, model, optimizer, tokenizers, cmvn, train_set, valid_set, valid_refs, device
    ):
        self.config, self.model, self.optimizer = config, model, optimizer
        self.tokenizers, self.cmvn = tokenizers, cmvn
        self.train_set, self.valid_set, self.valid_refs = train_set, valid_set, valid_refs
        self.device = device
        self.epoch, self.step, self.best_loss = 0, 0, math.inf
        self.log_rows: list[dict[str, Any]] = []

    @classmethod
    def prepare(
        cls,
        arch,
        tasks,
        config,
        train_manifest: Path,
        valid_manifest: Path,
        last,
        device,
        variant: str = "shared",
    ) -> Run:
        """Read the data, build tokenizers, CMVN, model and optimizer (from ``last`` when resuming)."""
        train_rows, valid_rows = read_manifest(train_manifest), read_manifest(valid_manifest)
        check_language(train_rows, train_manifest, valid_rows, valid_manifest)
        train_feats = load_features(train_rows, config["features"], desc="fbank train")
        tokenizers, cmvn = vocabularies_and_cmvn(train_rows, train_feats, tasks, config, last)
        tc = config["train"]
        train_set = TrainBatches(
            train_rows,
            train_feats,
            tokenizers,
            cmvn,
            tc["batch_size"],
            seed=tc["seed"],
            spec_augment=tc.get("spec_augment"),
        )
        valid_set = TrainBatches(
            valid_rows,
            load_features(valid_rows, config["features"], desc="fbank valid"),
            tokenizers,
            cmvn,
            tc["batch_size"],
            seed=tc["seed"],
        )
        model = build_model(
            config, arch, tasks, {t: tok.vocab_size for t, tok in tokenizers.items()}, variant
        ).to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=tc["lr"], betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"]
        )
        run = cls(
            config=config,
            model=model,
            optimizer=optimizer,
            tokenizers=tokenizers,
            cmvn=cmvn,
            train_set=train_set,
            valid_set=valid_set,
            valid_refs={r["id"]: r for r in valid_rows},
            device=device,
        )
        if last is not None:
            run.restore(last)
        return run

    def restore(self, last: dict[str, Any]) -> None:
        """Weights, optimizer, counters, log and RNG state of ``last.pt``."""
        load_state(self.model, last["model_state"], "last.pt")
        self.optimizer.load_state_dict(last["optimizer"])
        state = last["extra"]["train_state"]
        self.epoch, self.step, self.best_loss = last["epoch"], state["step"], state["best_loss"]
        self.log_rows = [row for row in state["log"] if row["epoch"] <= self.epoch]
        torch.set_rng_state(state["rng"])

    def lr_at(self, step: int) -> float:
        """The schedule over the planned steps; warm-up capped at a quarter of them, so a short run decays
        too."""
        tc = self.config["train"]
        total = tc["epochs"] * len(self.train_set)
        return warmup_cosine(step, peak=tc["lr"], warmup=min(tc["warmup_steps"], total // 4), total=total)

    def fit(self, out_dir: Path, max_minutes: float | None, save_every: int | None = None) -> Path:
        """Train until ``config.train.epochs`` (or the time budget); returns ``best.pt``.

        ``save_every=E``: ``epoch-0000.pt`` before the first step of a new run,
        ``epoch-EEEE.pt`` after every E-th epoch.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        if save_every and self.epoch == 0:
            save_checkpoint(out_dir / snapshot_name(0), **self.weights({}))
        started, first_epoch = time.perf_counter(), self.epoch
        while self.epoch < self.config["train"]["epochs"]:
            epoch_start = time.perf_counter()
            self.epoch += 1
            row = (
                {"epoch": self.epoch}
                | prefixed("train", self.train_epoch())
                | prefixed("valid", self.validate())
            )
            row |= {
                "step": self.step,
                "lr": self.lr_at(self.step - 1),
                "seconds": round(time.perf_counter() - epoch_start, 3),
            }
            self.log_rows.append(row)
            if max_minutes is not None:
                self.fit_budget(max_minutes * 60, time.perf_counter() - started, self.epoch - first_epoch)
            self.save(out_dir, row, snapshot=bool(save_every) and self.epoch % save_every == 0)
        if not (out_dir / "best.pt").is_file():
            raise CKAProbeError(
                f"{out_dir}: no epoch was trained (epochs = {self.config['train']['epochs']})"
            )
        return out_dir / "best.pt"

    def fit_budget(self, budget_s: float, elapsed_s: float, done: int) -> None:
        """Cut the planned epochs to those that fit ``budget_s``, at the mean time of the ``done`` epochs so
        far."""
        mean_epoch = elapsed_s / done
        fits = self.epoch + int((budget_s - elapsed_s) // mean_epoch)
        self.config["train"]["epochs"] = max(self.epoch, min(self.config["train"]["epochs"], fits))

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training batches; mean losses per utterance."""
        self.model.train()
        sums: dict[str, float] = defaultdict(float)
        batches = tqdm(
            self.train_set.epoch(self.epoch),
            total=len(self.train_set),
            desc=f"epoch {self.epoch}",
            unit="batch",
            leave=False,
            disable=None,
        )
        for batch in batches:
            losses = self.train_step(batch)
            for name, value in losses.items():
                sums[name] += value * len(batch["ids"])
            batches.set_postfix(loss=f"{losses['loss']:.3f}")
        return {name: total / len(self.train_set.ids) for name, total in sums.items()}

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, backward, clip, AdamW step at this step's lr; the losses as floats."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        losses = self.model(*model_inputs(batch, self.device))
        if not torch.isfinite(losses["loss"]):
            raise CKAProbeError(
                f"non-finite loss at epoch {self.epoch}, step {self.step}, "
                f"utterances {', '.join(batch['ids'])} (learning rate {self.config['train']['lr']:g}); "
                "lower --lr or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config["train"]["clip"])
        self.optimizer.step()
        self.step += 1
        return {name: float(value.detach()) for name, value in losses.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean validation losses per utterance and greedy-attention CER (%) per task.

        The losses cover the whole validation set; the CER covers the batches
        that hold its first ``train.valid_decode`` utterances (all when absent):
        greedy decoding costs ~10× the loss pass, most of an epoch's
        validation time on CPU, and the CER is only logged.
        """
        self.model.eval()
        sums: dict[str, float] = defaultdict(float)
        decode_limit = self.config["train"].get("valid_decode") or len(self.valid_set.ids)
        decoded = 0
        for batch in self.valid_set.epoch(0):
            feats, feat_lens, targets, target_lens, diverges = model_inputs(batch, self.device)
            for name, value in self.model(feats, feat_lens, targets, target_lens, diverges).items():
                sums[name] += float(value) * len(batch["ids"])
            if decoded >= decode_limit:
                continue
            decoded += len(batch["ids"])
            hyps = transcribe(self.model, self.tokenizers, feats, feat_lens, self.model.tasks)
            for task, texts in hyps.items():
                refs = [self.valid_refs[uid][task] for uid in batch["ids"]]
                sums[f"errors_{task}"] += sum(char_errors(r, h) for r, h in zip(refs, texts))
                sums[f"chars_{task}"] += sum(len(normalize_text(r)) for r in refs)
        n = len(self.valid_set.ids)
        means = {name: sums[name] / n for name in ("loss", *self.model.loss_names)}
        return means | {
            f"cer_{t}": percent(sums[f"errors_{t}"], sums[f"chars_{t}"]) for t in self.model.tasks
        }

    def weights(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What :func:`save_checkpoint` needs for a checkpoint of the model as it is now."""
        return dict(
            model=self.model,
            config=self.config,
            tokenizers=self.tokenizers,
            cmvn=self.cmvn,
            epoch=self.epoch,
            metrics=metrics,
        )

    def save(self, out_dir: Path, row: dict[str, Any], snapshot: bool = False) -> None:
        """``best.pt`` if the validation loss improved, ``epoch-EEEE.pt`` if ``snapshot``, ``log.csv``, then
        ``last.pt`` (the commit, see the module docstring)."""
        improved = row["valid_loss"] < self.best_loss
        self.best_loss = min(self.best_loss, row["valid_loss"])
        state = {
            "step": self.step,
            "best_loss": self.best_loss,
            "log": self.log_rows,
            "rng": torch.get_rng_state(),
        }
        common = self.weights(row)
        if improved:
            save_checkpoint(out_dir / "best.pt", **common)
        if snapshot:
            save_checkpoint(out_dir / snapshot_name(self.epoch), **common)
        write_log(out_dir / "log.csv", self.log_rows, log_columns(self.model.tasks, aux_names(self.model)))
        save_checkpoint(out_dir / "last.pt", **common, optimizer=self.optimizer, extra={"train_state": state})


def snapshot_name(epoch: int) -> str:
    """``epoch-0005.pt``: the file a ``save_every`` run keeps for ``epoch`` (zero-padded, so names sort)."""
    return f"epoch-{epoch:04d}.pt"


def vocabularies_and_cmvn(
    rows: list[dict[str, Any]],
    feats: list[torch.Tensor],
    tasks: tuple[str, ...],
    config: dict[str, Any],
    last: dict[str, Any] | None,
) -> tuple[dict[str, CharTokenizer], GlobalCMVN]:
    """Tokenizers and CMVN statistics from the training set, or those of ``last.pt`` when resuming."""
    if last is not None:
        return {t: CharTokenizer.from_dict(s) for t, s in last["tokenizers"].items()}, GlobalCMVN.from_dict(
            last["cmvn"]
        )
    return build_tokenizers(rows, tasks, config["tokenizer"]["korean_unit"]), GlobalCMVN.from_features(feats)


def model_inputs(batch: dict[str, Any], device: torch.device) -> tuple:
    """``(feats (B, T, 80), feat_lens (B,), targets {task: (B, L)}, target_lens {task: (B,)}, diverges (B,))``
    on ``device``."""
    return (
        batch["feats"].to(device),
        batch["feat_lens"].to(device),
        {t: y.to(device) for t, y in batch["targets"].items()},
        {t: n.to(device) for t, n in batch["target_lens"].items()},
        batch["diverges"].to(device),
    )


def aux_names(model: ASRModel) -> tuple[str, ...]:
    """The loss components of ``model`` beyond CTC and the attention decoders."""
    return tuple(name for name in model.loss_names if name != "ctc" and not name.startswith("att_"))


def prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{name}": value for name, value in values.items()}


def check_language(train_rows, train_path: Path, valid_rows, valid_path: Path) -> None:
    """One model, one language: every row of both manifests must share the first row's."""
    language = train_rows[0]["language"]
    for rows, path in ((train_rows, train_path), (valid_rows, valid_path)):
        for line, row in enumerate(rows, 1):
            if row["language"] != language:
                raise CKAProbeError(
                    f"{path}: utterance '{row['id']}' (row {line}) is '{row['language']}', "
                    f"the training set is '{language}'"
                )


def write_log(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """The whole per-epoch log as CSV, replaced atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue(), point="train:log")
