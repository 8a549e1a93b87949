"""What is fuzzed: per format, the seed files a case copies, the file it mutates, its mutators, the
commands that consume it and the names an error about it may give; and every numeric and device option.

A case is ``(format, mutator, seed)``: the consumer is ``consumers[seed % len(consumers)]``, so each case
is reproducible from those three values alone. Paths are relative to the case folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fuzz import mutate as m
from fuzz.mutate import BAD, CHANGED, JSON, JSONL, SAFETENSORS, SAME, TORCH, Mutator
from fuzz.seeds import has_transformers

DATA = ["--data", "corpus/m.jsonl"]
EXTRACT = ["extract", "model.pt", *DATA, "--out", "out.h5"]
EVALUATE = ["evaluate", "model.pt", *DATA, "--out", "cer.csv"]
COMPARE_NPZ = ["compare", "a.npz", "b.npz", "--out", "cka.csv"]
COMPARE_H5 = ["compare", "a.h5", "b.h5", "--out", "cka.csv"]
ROLES = ["roles/sso.h5", "roles/mso.h5", "roles/do.h5"]
CROSS_TASK = ["compare", "--cross-task", *ROLES, "--tables", "tables", "--n-boot", "20", "--n-perm", "20"]
TRAIN = ["train", "--arch", "do", *DATA, "--valid", "corpus/m.jsonl"]
TRAIN += ["--config", "small.json", "--out", "run", "--epochs", "1", "--max-minutes", "0.1"]


@dataclass(frozen=True)
class Format:
    """One input format: what a case copies and mutates, who consumes it, who may be blamed."""

    copies: tuple[str, ...]
    target: str
    consumers: tuple[tuple[str, ...], ...]
    culprits: tuple[str, ...]
    mutators: dict[str, Mutator] = field(default_factory=dict)


def _hf_mutators(json_files: tuple[str, ...], optional: tuple[str, ...], used: str) -> dict[str, Mutator]:
    """Per file of a Hugging Face folder: the JSON tree and byte mutators, the weights' tensor and byte
    mutators, and each file removed (``optional`` ones may be missing)."""
    found = {}
    for name in json_files:
        family = m.tree_mutators(JSON, noop=SAME) | m.byte_mutators(truncated=BAD, flipped=CHANGED)
        found |= {f"{name}:{k}": m.in_file(name, v) for k, v in family.items()}
    weights = m.tensor_mutators(SAFETENSORS, used) | m.byte_mutators(truncated=BAD, flipped=CHANGED)
    found |= {f"model.safetensors:{k}": m.in_file("model.safetensors", v) for k, v in weights.items()}
    for name in (*json_files, "model.safetensors"):
        found[f"{name}:remove"] = m.remove(name, CHANGED if name in optional else BAD)
    return found


def _hf_format(folder: str, json_files: tuple[str, ...], optional: tuple[str, ...]) -> Format:
    extract = ("extract", folder, *DATA, "--out", "out.h5", "--role", "sso")
    mutators = _hf_mutators(json_files, optional, "encoder.")
    return Format((folder, "corpus"), folder, (extract,), (folder,), mutators)


def formats() -> dict[str, Format]:
    """Every fuzzed input format (the Hugging Face ones where transformers is installed)."""
    model = ("model.pt", "corpus")
    found = {
        "checkpoint": Format(
            model,
            "model.pt",
            (tuple(EXTRACT), tuple(EVALUATE)),
            ("model.pt",),
            m.byte_mutators(truncated=BAD, flipped=CHANGED)
            | m.tree_mutators(TORCH)
            | m.tensor_mutators(TORCH, "encoder."),
        ),
        "manifest": Format(
            model,
            "corpus/m.jsonl",
            (tuple(EXTRACT), tuple(EVALUATE)),
            ("m.jsonl",),
            m.byte_mutators(truncated=CHANGED, flipped=CHANGED, emptied=CHANGED) | m.tree_mutators(JSONL),
        ),
        "audio": Format(
            model,
            "corpus/u1.wav",
            (tuple(EXTRACT), tuple(EVALUATE)),
            ("u1",),
            m.byte_mutators(truncated=CHANGED, flipped=CHANGED) | m.audio_mutators(),
        ),
        "store": Format(
            ("a.h5", "b.h5"),
            "a.h5",
            (("info", "a.h5"), tuple(COMPARE_H5), (*COMPARE_H5, "--pool", "frames")),
            ("a.h5",),
            m.byte_mutators(truncated=BAD, flipped=BAD) | m.store_mutators(),
        ),
        "npz": Format(
            ("a.npz", "b.npz"),
            "a.npz",
            (tuple(COMPARE_NPZ), (*COMPARE_NPZ, "--debiased"), (*COMPARE_NPZ, "--kernel", "rbf")),
            ("a.npz",),
            m.byte_mutators(truncated=BAD, flipped=CHANGED) | m.npz_mutators(),
        ),
        "adapter": Format(
            ("adapter.py", "corpus"),
            "adapter.py",
            (("extract", "adapter.py:adapter", *DATA, "--out", "out.h5", "--role", "sso"),),
            ("adapter.py",),
            m.byte_mutators(truncated=CHANGED, flipped=CHANGED) | m.adapter_mutators(),
        ),
    }
    if has_transformers():
        whisper_json = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json")
        found["whisper"] = _hf_format("whisper", whisper_json, ())
        found["wav2vec2"] = _hf_format(
            "wav2vec2", ("config.json", "preprocessor_config.json"), ("preprocessor_config.json",)
        )
    return found


# -- options: (command line, option) pairs and the values each is given

NUMBERS = ["0", "-1", "nan", "inf", "1e309", "99999999999999999999999", "abc", ""]
DEVICES = ["cuda", "cuda:7", "gpu", ""]
OPTION_COMMANDS = {
    "extract": (EXTRACT, ("model.pt", "corpus"), ["--batch-size", "--limit"]),
    "evaluate": (EVALUATE, ("model.pt", "corpus"), ["--batch-size", "--limit", "--beam", "--threads"]),
    "compare": (COMPARE_NPZ, ("a.npz", "b.npz"), ["--sigma", "--ridge"]),
    "cross-task": (CROSS_TASK, ("roles",), ["--n-boot", "--n-perm", "--seed"]),
    "train": (
        TRAIN,
        ("corpus", "small.json"),
        ["--epochs", "--lr", "--meaning-weight", "--max-minutes", "--seed", "--threads"],
    ),
}
# the options that only matter with another one
COMPANIONS = {"--sigma": ["--kernel", "rbf"], "--ridge": ["--measure", "cca"]}


@dataclass(frozen=True)
class OptionCase:
    """A command line with one option set to one value."""

    name: str
    argv: tuple[str, ...]
    copies: tuple[str, ...]
    option: str


def option_cases() -> list[OptionCase]:
    """Every numeric option of every command at every odd value, and ``--device`` at odd devices."""
    cases = []
    for command, (argv, copies, options) in OPTION_COMMANDS.items():
        pairs = [(o, v) for o in options for v in NUMBERS] + [("--device", v) for v in DEVICES]
        if command == "cross-task":
            pairs = [p for p in pairs if p[0] != "--device"]
        for option, value in pairs:
            extra = (*COMPANIONS.get(option, []), f"{option}={value}")
            cases.append(OptionCase(f"{command} {option}={value}", (*argv, *extra), copies, option))
    return cases
