"""What every Hugging Face adapter shares: the lazy ``transformers`` import, the folder's files, provenance.

``transformers`` is an optional extra (``pip install 'cka-probe[hf]'``) and is
imported only here, when an HF folder is read. Each file of a folder is read
by transformers' own classes, and anything they refuse is one line naming the
file: ``config.json`` (:func:`hf_config`), ``preprocessor_config.json`` or
``processor_config.json`` (:func:`feature_extractor`), the weights
(:func:`load_model`). The weights must agree with ``config.json`` key for key
and shape for shape, so no randomly initialised layer reaches a store unless
asked for: :meth:`HFAdapter.build_random` builds the folder's architecture
with fresh weights (the random-initialisation floor). Provenance of a folder: its path,
the sha256 of ``config.json`` and of each weights file, the config's
``_name_or_path``, and the transformers version.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Adapter
from cka_probe.paths import file_sha256

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
READ_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, RuntimeError, EOFError)
"""What transformers raises for a file it cannot read or a value it cannot use."""


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def library_errors() -> tuple[type[BaseException], ...]:
    """:data:`READ_ERRORS` plus the validation and file errors of transformers' own dependencies."""
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError

    return (*READ_ERRORS, StrictDataclassError, SafetensorError)


def require_transformers(folder: str | Path) -> ModuleType:
    """The ``transformers`` module, or a one-line error saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise CKAProbeError(
            f"{folder}: a Hugging Face model folder needs transformers; pip install 'cka-probe[hf]'"
        ) from None
    return transformers


@contextlib.contextmanager
def quiet(transformers: ModuleType) -> Iterator[None]:
    """transformers without its load report, progress bars and warnings, so an error stays one line."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def read_config(folder: str | Path) -> dict:
    """The folder's ``config.json`` as a dict (model_type, architectures, ...)."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CKAProbeError(f"{path}: not a readable config.json ({one_line(err)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise CKAProbeError(
            f"{path}: no model_type string; not a Hugging Face transformers config (re-save it with "
            "save_pretrained)"
        )
    return config


def hf_config(folder: str | Path, transformers: ModuleType):
    """``config.json`` as its transformers config class, checked by building the model on the meta device.

    A value of the wrong type, a size a layer cannot have (negative, not divisible
    by the heads) or a key transformers refuses is one line naming ``config.json``.
    """
    path = Path(folder) / "config.json"
    try:
        with quiet(transformers):
            config = transformers.AutoConfig.from_pretrained(str(folder))
    except library_errors() as err:
        raise CKAProbeError(
            f"{path}: {one_line(err)}; fix the value or re-save it with save_pretrained"
        ) from None
    return config


def check_buildable(folder: str | Path, cls: type, config, transformers: ModuleType) -> None:
    """Build ``cls`` (a model class or an ``Auto*`` class) from ``config`` on the meta device (no memory);
    a size no layer can have names config.json."""
    build = getattr(cls, "from_config", cls)
    try:
        with quiet(transformers), torch.device("meta"):
            build(config)
    except library_errors() as err:
        raise CKAProbeError(
            f"{Path(folder) / 'config.json'}: no {cls.__name__} can be built from it ({one_line(err)})"
        ) from None


def architecture(config: dict) -> str:
    """The first of ``architectures`` (``WhisperForConditionalGeneration``, ``Wav2Vec2ForCTC``, ...), or
    ''."""
    return str((config.get("architectures") or [""])[0])


def weights_files(folder: str | Path) -> list[Path]:
    """The folder's weights files (``model.safetensors``, ``pytorch_model.bin``, shards), sorted."""
    folder = Path(folder)
    weights = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not weights:
        raise CKAProbeError(f"{folder}: no weights file (model.safetensors or pytorch_model.bin)")
    return weights


def load_model(
    folder: str | Path, cls: type, config, transformers: ModuleType, *, unused: Sequence[str] = ()
) -> nn.Module:
    """``cls`` with the folder's weights, in eval mode, refused unless weights and ``config.json`` agree.

    ``unused`` names parameters the model never uses at inference (e.g. wav2vec2's
    ``masked_spec_embed``, a training-time mask), which the weights may lack.
    """
    check_buildable(folder, cls, config, transformers)
    names = ", ".join(p.name for p in weights_files(folder))
    try:
        with quiet(transformers):
            model, report = cls.from_pretrained(
                str(folder), config=config, output_loading_info=True, ignore_mismatched_sizes=True
            )
    except pickle.UnpicklingError:
        raise CKAProbeError(
            f"{folder}: {names} is not a weights-only PyTorch file (torch.load with weights_only=True "
            "refuses it); get model.safetensors from the model's source"
        ) from None
    except library_errors() as err:
        raise CKAProbeError(f"{folder}: the weights {names} cannot be read ({one_line(err)})") from None
    refuse_disagreement(folder, model, report, unused)
    return model.eval()


def _owned(model: nn.Module, key: str) -> bool:
    """Whether ``key`` names a weight of the base model or of one of ``model``'s own modules (not of a head
    it does not have)."""
    top = key.split(".", 1)[0]
    return (
        key.startswith(f"{model.base_model_prefix}.")
        or top in dict(model.named_children())
        or top in model._parameters
        or top in model._buffers
    )


def _shape(shape) -> str:
    return f"({', '.join(str(n) for n in shape)})"


def refuse_disagreement(folder: str | Path, model: nn.Module, report: dict, unused: Sequence[str]) -> None:
    """One line unless transformers' loading report is clean.

    Refused: weights the model needs that the files lack (they would be random),
    weights of the model's own modules that it has no place for (``config.json``
    says fewer layers than the weights hold), weights of another shape, and any
    error transformers recorded. Ignored: ``unused`` parameters, and weights of
    a head the loaded class does not have (``lm_head`` of a ``*ForCTC`` file read
    as the bare model). Tied weights never appear in the report.
    """
    missing = sorted(k for k in report["missing_keys"] if k.rsplit(".", 1)[-1] not in unused)
    unexpected = sorted(k for k in report["unexpected_keys"] if _owned(model, k))
    mismatched = sorted(report["mismatched_keys"])
    parts = [f"{len(missing)} weights missing (e.g. {missing[0]})"] if missing else []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if mismatched:
        key, stored, wanted = mismatched[0]
        parts.append(
            f"{len(mismatched)} of another shape (e.g. {key}: {_shape(stored)} in the weights, "
            f"{_shape(wanted)} by config.json)"
        )
    parts += [one_line(msg, 200) for msg in report.get("error_msgs", [])[:1]]
    if parts:
        raise CKAProbeError(
            f"{folder}: config.json and the weights disagree: {', '.join(parts)}; a layer without its "
            "weights would be random: use the config.json saved with these weights"
        )


def provenance(folder: str | Path, config: dict) -> dict:
    """Folder, config and weights sha256, ``_name_or_path`` and the transformers version."""
    folder = Path(folder)
    return {
        "hf_folder": str(folder.resolve()),
        "config_sha256": file_sha256(folder / "config.json"),
        "weights_sha256": {p.name: file_sha256(p) for p in weights_files(folder)},
        "name_or_path": str(config.get("_name_or_path", "")),
        "model_type": config["model_type"],
        "architecture": architecture(config),
        "transformers_version": require_transformers(folder).__version__,
    }


PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Where transformers finds a folder's feature-extractor settings: its own file, or the ``feature_extractor``
entry of the processor's file (what a processor's ``save_pretrained`` writes in transformers 5)."""


def feature_extractor(folder: str | Path, cls: type, *, require: Mapping[str, object] = {}, **defaults):
    """The folder's feature extractor as ``cls.from_pretrained`` reads it (from ``preprocessor_config.json``
    or ``processor_config.json``), or ``cls(**defaults)`` with one warning when the folder has neither file.

    A file transformers cannot read, a setting other than ``require`` says (what
    the model's config.json needs), or settings that cannot turn a tenth of a
    second of silence into features, is one line naming the file.
    """
    files = [Path(folder) / name for name in PREPROCESSOR_FILES if (Path(folder) / name).is_file()]
    if not files:
        warnings.warn(
            f"{folder}: no preprocessor_config.json or processor_config.json; using the {cls.__name__} "
            f"defaults {defaults}",
            stacklevel=3,
        )
        return cls(**defaults)
    transformers = require_transformers(folder)
    try:
        with quiet(transformers):
            features = cls.from_pretrained(str(folder))
            check_settings(features, require)
            rate = features.sampling_rate
            features([np.zeros(rate // 10, np.float32)], sampling_rate=rate, return_tensors="pt")
    except (*library_errors(), MemoryError) as err:
        names = " or ".join(map(str, files))
        raise CKAProbeError(f"{names}: {one_line(err)}; use the preprocessor saved with this model") from None
    return features


def check_settings(features, require: Mapping[str, object]) -> None:
    """Raise ``ValueError`` unless ``sampling_rate`` is a positive integer and ``require``'s settings hold."""
    rate = features.sampling_rate
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise ValueError(f"sampling_rate {rate!r} is not a positive integer")
    for key, value in require.items():
        if getattr(features, key, None) != value:
            raise ValueError(
                f"{key} is {getattr(features, key, None)!r}, but the model's config.json needs {value!r}"
            )


def base_prefix(model) -> str:
    """``"wav2vec2."`` for ``Wav2Vec2ForCTC``, ``"model."`` for Whisper's generation head, ``""`` for a bare
    model."""
    for name, module in model.named_modules():
        if module is model.base_model:
            return f"{name}." if name else ""
    return ""


def plain_settings(features) -> dict:
    """A feature extractor's scalar settings (its arrays, e.g. Whisper's mel filters, left out)."""
    return {
        k: v for k, v in features.to_dict().items() if isinstance(v, (str, int, float, bool)) or v is None
    }


def fresh_model(folder: str | Path, cls: type, config, transformers: ModuleType, seed: int) -> nn.Module:
    """``cls`` built from ``config`` with fresh weights drawn after ``torch.manual_seed(seed)`` by the
    class's own initialisation, in eval mode (the random-initialisation floor of ``folder``)."""
    check_buildable(folder, cls, config, transformers)
    torch.manual_seed(seed)
    with quiet(transformers):
        model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    return model.eval()


class HFAdapter(Adapter):
    """What the Hugging Face families share: their ``model_class`` read from the folder (:meth:`build`) or
    built with fresh weights (:meth:`build_random`), then made ready by the family (:meth:`ready`)."""

    folder: Path
    transformers: ModuleType
    model_class: type
    unused: Sequence[str] = ()
    """Parameters the model never uses at inference, which the weights may lack (:func:`load_model`)."""

    def build(self, device: str) -> nn.Module:
        """The model with the folder's weights, refused unless they agree with ``config.json``."""
        model = load_model(
            self.folder, self.model_class, self.hf_config, self.transformers, unused=self.unused
        )
        return self.ready(model.to(device))

    def build_random(self, device: str, seed: int) -> nn.Module:
        """The folder's architecture with fresh weights (:func:`fresh_model`), the weights files unread."""
        model = fresh_model(self.folder, self.model_class, self.hf_config, self.transformers, seed)
        return self.ready(model.to(device))

    def ready(self, model: nn.Module) -> nn.Module:
        """What the family learns from the built ``model`` before extracting with it; returns it."""
        return model
