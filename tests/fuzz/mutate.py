"""Seeded mutators: each breaks (or, for a no-op, rewrites) one file in place from a numpy Generator.

A :class:`Mutator` pairs the function with what its mutation means, which
decides what a success must look like (see :mod:`fuzz.oracle`):

- ``SAME``: the meaning is unchanged; the command must succeed with the clean run's output;
- ``SCALED``: the numbers are scaled by a constant; CKA must equal the clean value within 1e-6 (or exit 2);
- ``CHANGED``: the input still makes sense but says something else; a success must be finite and accepted;
- ``BAD``: the input is damaged; a success is a violation unless its output equals the clean run's
  (the command never read the damaged part).

Families: raw bytes (any file), trees (JSON, JSON Lines, checkpoint dicts: a key dropped, a value's type
changed, a number made non-finite or out of range), tensors (checkpoints, safetensors), HDF5 stores,
``.npz`` arrays, WAV audio and Python adapter files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import soundfile

SAME, SCALED, CHANGED, BAD = "same", "scaled", "changed", "bad"
Fn = Callable[[Path, np.random.Generator], None]


@dataclass(frozen=True)
class Mutator:
    """A mutation of the file at a path, what it means, and who else may be named for it."""

    fn: Fn
    expect: str
    culprits: tuple[str, ...] = ()


# -- raw bytes


def random_bytes(path: Path, rng: np.random.Generator) -> None:
    """Replace the file by 1 to 2×size+16 random bytes."""
    path.write_bytes(rng.bytes(int(rng.integers(1, 2 * path.stat().st_size + 17))))


def truncate(path: Path, rng: np.random.Generator) -> None:
    """Cut the file at a random offset (at least one byte is lost)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(rng.integers(0, max(len(data), 1)))])


def flip(path: Path, rng: np.random.Generator) -> None:
    """XOR 1 to 8 random bytes with a random non-zero byte."""
    data = bytearray(path.read_bytes())
    for _ in range(int(rng.integers(1, 9))):
        data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


def empty(path: Path, rng: np.random.Generator) -> None:
    """Make the file empty."""
    path.write_bytes(b"")


def byte_mutators(*, truncated: str, flipped: str, emptied: str = BAD) -> dict[str, Mutator]:
    """The raw-byte family, with the meaning each mutation has for one format."""
    return {
        "random_bytes": Mutator(random_bytes, BAD),
        "truncate": Mutator(truncate, truncated),
        "flip": Mutator(flip, flipped),
        "empty": Mutator(empty, emptied),
    }


# -- trees: nested dicts and lists (JSON, JSON Lines, checkpoint dicts)

BIG = "__1e309__"  # a JSON number literal that overflows a float, written as text by the JSON codecs
ODD_NUMBERS = [math.nan, math.inf, -math.inf, -1, 0, BIG, 10**30]
ODD_VALUES = ["x", 7, [], None, True, {}, 2.5]


def _slots(obj: object, numeric: bool = False) -> list[tuple[object, object]]:
    """Every (container, key) of nested dicts and lists; with ``numeric``, only int and float leaves."""
    found = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or is_number:
            found.append((obj, key))
        found += _slots(value, numeric)
    return found


def _pick(rng: np.random.Generator, slots: list) -> tuple[object, object]:
    return slots[int(rng.integers(len(slots)))]


def drop_key(tree: object, rng: np.random.Generator) -> object:
    """Delete a random entry (a dict key or a list item) anywhere in the tree."""
    container, key = _pick(rng, _slots(tree))
    del container[key]
    return tree


def retype(tree: object, rng: np.random.Generator) -> object:
    """Replace a random entry by a value of another type (str, int, list, null, bool, dict, float)."""
    container, key = _pick(rng, _slots(tree))
    others = [v for v in ODD_VALUES if type(v) is not type(container[key])]
    container[key] = others[int(rng.integers(len(others)))]
    return tree


def odd_number(tree: object, rng: np.random.Generator) -> object:
    """Set a random number (any entry when there is none) to NaN, ±inf, -1, 0, 1e309 or 10**30."""
    container, key = _pick(rng, _slots(tree, numeric=True) or _slots(tree))
    container[key] = ODD_NUMBERS[int(rng.integers(len(ODD_NUMBERS)))]
    return tree


def reorder(tree: object, rng: np.random.Generator) -> object:
    """Reverse the key order of every dict (a no-op for any reader of keys)."""
    if isinstance(tree, dict):
        return {k: reorder(tree[k], rng) for k in reversed(list(tree))}
    if isinstance(tree, list):
        return [reorder(v, rng) for v in tree]
    return tree


def _json_text(value: object) -> str:
    return json.dumps(value).replace(f'"{BIG}"', "1e309")


def _unbig(tree: object) -> object:
    """``BIG`` as the float it overflows to, for codecs without a number literal."""
    if isinstance(tree, dict):
        return {k: _unbig(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unbig(v) for v in tree]
    return math.inf if isinstance(tree, str) and tree == BIG else tree


@dataclass(frozen=True)
class Codec:
    """How a file becomes a tree and back."""

    load: Callable[[Path], object]
    save: Callable[[Path, object], None]


JSON = Codec(lambda p: json.loads(p.read_text()), lambda p, t: p.write_text(_json_text(t)))
JSONL = Codec(
    lambda p: [json.loads(line) for line in p.read_text().splitlines()],
    lambda p, t: p.write_text("".join(_json_text(row) + "\n" for row in t)),
)


def _torch_load(path: Path) -> object:
    import torch

    return torch.load(path, weights_only=True)


def _torch_save(path: Path, tree: object) -> None:
    import torch

    torch.save(_unbig(tree), path)


TORCH = Codec(_torch_load, _torch_save)


def through(codec: Codec, edit: Callable[[object, np.random.Generator], object]) -> Fn:
    """A file mutator: load with ``codec``, apply the tree ``edit``, save."""

    def mutate(path: Path, rng: np.random.Generator) -> None:
        codec.save(path, edit(codec.load(path), rng))

    return mutate


def tree_mutators(codec: Codec, noop: str = SAME) -> dict[str, Mutator]:
    """Drop a key, change a type, an odd number, and the key-order no-op, through ``codec``."""
    return {
        "drop_key": Mutator(through(codec, drop_key), CHANGED),
        "retype": Mutator(through(codec, retype), CHANGED),
        "odd_number": Mutator(through(codec, odd_number), CHANGED),
        "reorder": Mutator(through(codec, reorder), noop),
    }


# -- tensors (a checkpoint's model_state and cmvn, a safetensors file)


def _tensors(tree: dict, used: str) -> list[tuple[dict, str]]:
    """(dict, key) of every floating tensor at least 1-d whose key contains ``used``."""
    found = []
    for key, value in tree.items():
        if isinstance(value, dict):
            found += _tensors(value, used)
        elif hasattr(value, "is_floating_point") and value.is_floating_point() and value.dim():
            found += [(tree, key)] if used in key else []
    return found


def nan_tensor(used: str) -> Callable[[object, np.random.Generator], object]:
    """Set a random tenth (at least one) of a tensor named ``*used*`` to NaN."""

    def edit(tree: dict, rng: np.random.Generator) -> dict:
        container, key = _pick(rng, _tensors(tree, used))
        flat = container[key].clone().reshape(-1)
        flat[rng.choice(flat.numel(), max(1, flat.numel() // 10), replace=False)] = math.nan
        container[key] = flat.reshape(container[key].shape)
        return tree

    return edit


def grow_tensor(tree: dict, rng: np.random.Generator) -> dict:
    """Add a zero row to a random tensor (its shape no longer fits the model)."""
    import torch

    container, key = _pick(rng, _tensors(tree, ""))
    value = container[key]
    container[key] = torch.cat([value, torch.zeros_like(value[:1])])
    return tree


def drop_tensor(tree: dict, rng: np.random.Generator) -> dict:
    """Delete a random tensor."""
    container, key = _pick(rng, _tensors(tree, ""))
    del container[key]
    return tree


def _safetensors_load(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def _safetensors_save(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})


SAFETENSORS = Codec(_safetensors_load, _safetensors_save)


def tensor_mutators(codec: Codec, used: str) -> dict[str, Mutator]:
    """NaN in a used weight, a tensor grown by a row, a tensor dropped."""
    return {
        "nan_weights": Mutator(through(codec, nan_tensor(used)), BAD),
        "grow_tensor": Mutator(through(codec, grow_tensor), BAD),
        "drop_tensor": Mutator(through(codec, drop_tensor), BAD),
    }


# -- HDF5 activation stores

FORMAT_ATTRS = ["format", "schema_version", "complete", "n_utterances", "n_batches", "streams", "dtype"]
WRONG_ATTRS = {
    "format": ["x", 7],
    "schema_version": [2, -1, "1"],
    "complete": ["yes", 2],
    "n_utterances": [0, -1, 99, 2],
    "n_batches": [0, -1, 1000],
    "streams": ["not json", '["encoder", "nope"]', "[]", '{"a": 1}'],
    "dtype": ["int8", "x"],
}


def _datasets(f: h5py.File, suffix: str = "", under: str = "") -> list[str]:
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(n for n in names if n.endswith(suffix) and n.startswith(under))


def drop_attr(path: Path, rng: np.random.Generator) -> None:
    """Delete one of the store's format attributes."""
    with h5py.File(path, "r+") as f:
        del f.attrs[FORMAT_ATTRS[int(rng.integers(len(FORMAT_ATTRS)))]]


def wrong_attr(path: Path, rng: np.random.Generator) -> None:
    """Give one format attribute a wrong value (unknown format or version, wrong counts, broken streams)."""
    name = FORMAT_ATTRS[int(rng.integers(len(FORMAT_ATTRS)))]
    values = WRONG_ATTRS[name]
    with h5py.File(path, "r+") as f:
        f.attrs[name] = values[int(rng.integers(len(values)))]


def mark_incomplete(path: Path, rng: np.random.Generator) -> None:
    """Mark the store as an unfinished one."""
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False


def drop_dataset(path: Path, rng: np.random.Generator) -> None:
    """Delete a random dataset."""
    with h5py.File(path, "r+") as f:
        names = _datasets(f)
        del f[names[int(rng.integers(len(names)))]]


def bad_offsets(path: Path, rng: np.random.Generator) -> None:
    """Break an encoder layer's offsets: past the rows, decreasing, or one boundary moved."""
    with h5py.File(path, "r+") as f:
        names = _datasets(f, "/offsets", "encoder/")
        ds = f[names[int(rng.integers(len(names)))]]
        offsets = ds[()]
        kind = int(rng.integers(3))
        if kind == 0:
            offsets[-1] += int(rng.integers(1, 5))
        elif kind == 1:
            offsets[1], offsets[2] = offsets[2], offsets[1]
        else:
            offsets[1 + int(rng.integers(len(offsets) - 2))] += 1
        ds[...] = offsets


def nan_rows(path: Path, rng: np.random.Generator) -> None:
    """Write NaN into a random row of an encoder layer's data or mean (checksums recomputed)."""
    with h5py.File(path, "r+") as f:
        names = _datasets(f, "/data", "encoder/") + _datasets(f, "/mean", "encoder/")
        ds = f[names[int(rng.integers(len(names)))]]
        ds[int(rng.integers(ds.shape[0]))] = np.nan


def _replace_by_virtual(path: Path, rng: np.random.Generator, source: str) -> None:
    """An encoder layer's ``mean`` becomes a virtual dataset reading ``source`` (beside the store)."""
    with h5py.File(path, "r+") as f:
        names = _datasets(f, "/mean", "encoder/")
        name = names[int(rng.integers(len(names)))]
        values = f[name][()]
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
        layout[...] = h5py.VirtualSource(source, "mean", shape=values.shape)
        del f[name]
        f.create_virtual_dataset(name, layout, fillvalue=0)
    if source != "gone.h5":
        with h5py.File(path.with_name(source), "w") as side:
            side["mean"] = values


def virtual_missing(path: Path, rng: np.random.Generator) -> None:
    """A layer's means read from a file that does not exist (HDF5 would give zeros)."""
    _replace_by_virtual(path, rng, "gone.h5")


def virtual_present(path: Path, rng: np.random.Generator) -> None:
    """A layer's means read, unchanged, from a side file."""
    _replace_by_virtual(path, rng, "side.h5")


def external_link(path: Path, rng: np.random.Generator) -> None:
    """An encoder layer's group becomes an external link to a file that does not exist."""
    with h5py.File(path, "r+") as f:
        layers = sorted(f["encoder"])
        name = f"encoder/{layers[int(rng.integers(len(layers)))]}"
        del f[name]
        f[name] = h5py.ExternalLink("gone.h5", "/x")


def store_mutators() -> dict[str, Mutator]:
    """Every HDF5 mutation of a store."""
    return {
        "drop_attr": Mutator(drop_attr, BAD),
        "wrong_attr": Mutator(wrong_attr, BAD),
        "mark_incomplete": Mutator(mark_incomplete, CHANGED),
        "drop_dataset": Mutator(drop_dataset, BAD),
        "bad_offsets": Mutator(bad_offsets, BAD),
        "nan_rows": Mutator(nan_rows, BAD),
        "virtual_missing": Mutator(virtual_missing, BAD),
        "virtual_present": Mutator(virtual_present, CHANGED),
        "external_link": Mutator(external_link, BAD),
    }


# -- .npz arrays (a.npz; b.npz beside it for the row counts)


def _npz_edit(edit: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Fn:
    """A file mutator applying ``edit`` to one random array of the ``.npz``."""

    def mutate(path: Path, rng: np.random.Generator) -> None:
        with np.load(path) as f:
            arrays = dict(f)
        key = sorted(arrays)[int(rng.integers(len(arrays)))]
        arrays[key] = edit(arrays[key], rng)
        np.savez(path, **arrays)

    return mutate


def _poke(value: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def edit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = x.copy()
        x[int(rng.integers(x.shape[0])), int(rng.integers(x.shape[1]))] = value
        return x

    return edit


def _complex(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffled rows as the real part, the rows as the imaginary part: dropping either part is wrong."""
    return rng.permutation(x) + 1j * x


def _constant_column(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    x[:, int(rng.integers(x.shape[1]))] = 3.0
    return x


def few_rows(path: Path, rng: np.random.Generator) -> None:
    """Keep the first 0 to 3 rows of every array of both files."""
    k = int(rng.integers(0, 4))
    for file in (path, path.with_name("b.npz")):
        with np.load(file) as f:
            arrays = {name: x[:k] for name, x in f.items()}
        np.savez(file, **arrays)


def drop_layer(path: Path, rng: np.random.Generator) -> None:
    """Delete one array (layer)."""
    with np.load(path) as f:
        arrays = dict(f)
    del arrays[sorted(arrays)[int(rng.integers(len(arrays)))]]
    np.savez(path, **arrays)


def resave(path: Path, rng: np.random.Generator) -> None:
    """Write the same arrays compressed (a no-op)."""
    with np.load(path) as f:
        arrays = dict(f)
    np.savez_compressed(path, **arrays)


def _scale(factor: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    return lambda x, rng: x * factor


def npz_mutators() -> dict[str, Mutator]:
    """Wrong dtypes and shapes, too few rows, non-finite and extreme values, constants, no-ops."""
    return {
        "dtype_str": Mutator(_npz_edit(lambda x, rng: x.astype(str)), BAD),
        "dtype_object": Mutator(_npz_edit(lambda x, rng: x.astype(object)), BAD),
        "dtype_complex": Mutator(_npz_edit(_complex), BAD),
        "dtype_bool": Mutator(_npz_edit(lambda x, rng: x > 0), CHANGED),
        "ndim1": Mutator(_npz_edit(lambda x, rng: x[:, 0]), CHANGED),
        "ndim3": Mutator(_npz_edit(lambda x, rng: x[:, None, :]), CHANGED),
        "ndim0": Mutator(_npz_edit(lambda x, rng: np.asarray(x[0, 0])), BAD),
        "few_rows": Mutator(few_rows, CHANGED, ("b.npz",)),
        "nan": Mutator(_npz_edit(_poke(math.nan)), BAD),
        "inf": Mutator(_npz_edit(_poke(math.inf)), BAD),
        "scale_1e200": Mutator(_npz_edit(_scale(1e200)), SCALED),
        "scale_1e-200": Mutator(_npz_edit(_scale(1e-200)), SCALED),
        "scale_2": Mutator(_npz_edit(_scale(2.0)), SCALED),
        "constant_column": Mutator(_npz_edit(_constant_column), CHANGED),
        "constant_layer": Mutator(_npz_edit(lambda x, rng: np.full_like(x, 1.5)), CHANGED),
        "drop_layer": Mutator(drop_layer, CHANGED),
        "resave": Mutator(resave, SAME),
    }


# -- WAV audio (int16 mono at 16 kHz)


def _rewrite(
    edit: Callable[[np.ndarray, np.random.Generator], np.ndarray], subtype: str, rate: int | None = None
) -> Fn:
    """A file mutator writing ``edit(samples as float64 in [-1, 1))`` back with ``subtype``."""

    def mutate(path: Path, rng: np.random.Generator) -> None:
        samples, sr = soundfile.read(path, dtype="float64")
        soundfile.write(path, edit(samples, rng), rate or sr, subtype=subtype, format="WAV")

    return mutate


def _poke_samples(value: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def edit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = x.copy()
        x[rng.choice(len(x), 5, replace=False)] = value
        return x

    return edit


def _channels(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """2 to 8 channels: the samples and noisy copies of them."""
    k = int(rng.integers(2, 9))
    return np.stack([x] + [x + 0.01 * rng.standard_normal(len(x)) for _ in range(k - 1)], axis=1)


def text_as_wav(path: Path, rng: np.random.Generator) -> None:
    """Plain text in the ``.wav``."""
    path.write_text("these are not samples\n")


def audio_mutators() -> dict[str, Mutator]:
    """Non-finite, empty, silent and huge samples, other bit depths, channels and rates, text."""
    same = lambda x, rng: x  # noqa: E731
    return {
        "nan_samples": Mutator(_rewrite(_poke_samples(math.nan), "FLOAT"), BAD),
        "inf_samples": Mutator(_rewrite(_poke_samples(math.inf), "FLOAT"), BAD),
        "zero_length": Mutator(_rewrite(lambda x, rng: x[:0], "PCM_16"), BAD),
        "silence": Mutator(_rewrite(lambda x, rng: np.zeros_like(x), "PCM_16"), CHANGED),
        "huge_float": Mutator(_rewrite(lambda x, rng: x * 1e30, "FLOAT"), CHANGED),
        "pcm_u8": Mutator(_rewrite(same, "PCM_U8"), CHANGED),
        "pcm_24": Mutator(_rewrite(same, "PCM_24"), SAME),
        "float32": Mutator(_rewrite(same, "FLOAT"), SAME),
        "channels": Mutator(_rewrite(_channels, "PCM_16"), CHANGED),
        "rate_8k": Mutator(_rewrite(same, "PCM_16", 8000), CHANGED),
        "rate_44k": Mutator(_rewrite(same, "PCM_16", 44100), CHANGED),
        "text_as_wav": Mutator(text_as_wav, BAD),
    }


# -- Python adapter files (a copy of examples/wenet_style_adapter.py)


def _edit_text(edit: Callable[[str], str]) -> Fn:
    def mutate(path: Path, rng: np.random.Generator) -> None:
        path.write_text(edit(path.read_text()))

    return mutate


def _raise_in(signature: str) -> Fn:
    """Make the method whose line starts with ``signature`` raise at once."""

    def edit(text: str) -> str:
        start = text.index(signature)
        end = text.index("\n", start) + 1
        return text[:end] + '        raise RuntimeError("boom")\n' + text[end:]

    return _edit_text(edit)


def _replace(old: str, new: str) -> Fn:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return _edit_text(edit)


FORWARD_RETURN = 'return {"encoder": TinyEncoder.output_lengths(batch["lengths"])}'


def adapter_mutators() -> dict[str, Mutator]:
    """A syntax error, raising duties, wrong objects and lengths, and a comment (no-op)."""
    return {
        "syntax_error": Mutator(_edit_text(lambda t: t + "\ndef broken(:\n"), BAD),
        "raise_build": Mutator(_raise_in("    def build("), BAD),
        "raise_batches": Mutator(_raise_in("    def batches("), BAD),
        "raise_forward": Mutator(_raise_in("    def forward(self, model"), BAD),
        "raise_import": Mutator(_edit_text(lambda t: t + '\nraise ImportError("no such framework")\n'), BAD),
        "returns_none": Mutator(_replace("return WenetStyleAdapter()", "return None"), BAD),
        "returns_int": Mutator(_replace("return WenetStyleAdapter()", "return 42"), BAD),
        "zero_lengths": Mutator(_replace(FORWARD_RETURN, FORWARD_RETURN[:-1] + " * 0}"), BAD),
        "long_lengths": Mutator(_replace(FORWARD_RETURN, FORWARD_RETURN[:-1] + " + 1000}"), BAD),
        "forward_tensor": Mutator(_replace(FORWARD_RETURN, 'return batch["lengths"]'), BAD),
        "no_ids": Mutator(_replace('"ids": [r["id"] for r in block],', ""), BAD),
        "comment": Mutator(_edit_text(lambda t: t + "\n# a comment\n"), SAME),
    }


# -- Hugging Face folders: one file of the folder per mutation


def in_file(name: str, mutator: Mutator) -> Mutator:
    """``mutator`` applied to the file ``name`` of the folder it is given."""
    return Mutator(lambda folder, rng: mutator.fn(folder / name, rng), mutator.expect, mutator.culprits)


def remove(name: str, expect: str) -> Mutator:
    """Delete the file ``name`` of the folder."""
    return Mutator(lambda folder, rng: (folder / name).unlink(), expect)
