"""Whisper (``WhisperForConditionalGeneration`` or ``WhisperModel``): encoder layers, teacher-forced decoder
layers.

Encoder (Radford et al. 2022): the log-mel input always fills the fixed
30-second window (3,000 frames of 10 ms, zero-padded audio), and the two
convolutions halve it to 1,500 frames; encoder frame ``i`` covers samples
``[2·hop·i, 2·hop·(i + 1))`` (``2·hop = 320`` at 16 kHz). Only the frames
that cover the audio are stored: ``⌈S / 320⌉`` of them for ``S`` samples
(the last one may cover fewer than 320 real samples); longer audio than the
window is an error.

Decoder: teacher-forced once per task on the manifest's transcript after the
model's standard prefix: ``<|startoftranscript|>`` [+ ``<|lang|>`` +
``<|transcribe|>`` for a multilingual model] + ``<|notimestamps|>``, then the
task's prompt if one is given (:meth:`WhisperAdapter.use_prompts`), then the
transcript tokenised by the folder's tokenizer. Stored rows, as in the
bundled decoders: the decoder prompt's last position (which predicts the first
transcript token) and every transcript token; each row keeps its input token
id. The decoder is causal, so right padding needs no mask. The tasks share
the cross-attention keys and values of the encoder output (computed once).

Task prompts (a dual-output model that is one decoder selecting its output by
a prompt) go after ``<|notimestamps|>``, not in place of ``<|transcribe|>``:
transformers accepts only ``transcribe`` and ``translate`` as Whisper's task
token (``TASK_IDS``), so a model fine-tuned with its tokenizer learns the
prefix tokens followed by the label text, and a task token written at the
start of the labels stands right after ``<|notimestamps|>``
(evaluation decodes greedily from prefix + prompt the same way).
Transformers' ``prompt_ids`` (previous text before ``<|startofprev|>``) are
context, not a task selector.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cka_probe.asr.data import pad_ids
from cka_probe.data.audio import load_audio
from cka_probe.errors import CKAProbeError
from cka_probe.extract.models.base import Batch, in_order
from cka_probe.extract.models.hf import (
    HFAdapter,
    architecture,
    base_prefix,
    feature_extractor,
    hf_config,
    library_errors,
    one_line,
    plain_settings,
    provenance,
    quiet,
    require_transformers,
)

TASKS = ("surface", "meaning")
MULTILINGUAL_VOCAB = 51865
"""OpenAI's rule when the generation config does not say: multilingual vocabularies have >= 51,865 tokens."""
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
"""Either set of files is a Whisper tokenizer."""
PROMPT_TOKENS = {
    False: ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"),
    True: ("<|endoftext|>", "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"),
}
"""The special tokens of the prompt and padding, by ``multilingual``."""
SPECIAL = re.compile(r"<\|[^|<>]*\|>")
"""A special token's spelling, as Whisper's are written (``<|notimestamps|>``)."""


def encode_prompt(tokenizer, text: str, vocab_size: int, where: str = "prompt") -> list[int]:
    """The token ids of a decoder prompt ``text`` (a task token such as ``<|surface|>`` or a text),
    tokenised as given by ``tokenizer``; refused with one line naming ``where`` when it is empty, spells a
    special token the tokenizer lacks (a byte-level tokenizer would split it into bytes) or has ids beyond
    the model's ``vocab_size``."""
    vocab = tokenizer.get_vocab()
    unknown = [t for t in SPECIAL.findall(text) if t not in vocab]
    if unknown:
        raise CKAProbeError(f"{where} {text!r}: {unknown[0]} is not a token of the tokenizer")
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if not ids:
        raise CKAProbeError(f"{where} {text!r}: the prompt has no tokens")
    if max(ids) >= vocab_size:
        raise CKAProbeError(
            f"{where} {text!r}: token id {max(ids)} is beyond the model's vocab_size {vocab_size}; "
            "resize its embeddings (resize_token_embeddings) when adding tokens"
        )
    return ids


class WhisperAdapter(HFAdapter):
    """A local HF Whisper folder."""

    tasks = TASKS

    def __init__(self, folder: str | Path, config: dict):
        self.transformers = require_transformers(folder)
        self.folder, self.config, self.name = Path(folder), config, str(folder)
        self.hf_config = hf_config(folder, self.transformers)
        mel_bins = {"feature_size": self.hf_config.num_mel_bins}
        self.features = feature_extractor(
            folder, self.transformers.WhisperFeatureExtractor, require=mel_bins, **mel_bins
        )
        self.conditional = architecture(config) != "WhisperModel"
        self.model_class = (
            self.transformers.WhisperForConditionalGeneration
            if self.conditional
            else self.transformers.WhisperModel
        )
        self.prefix = "model." if self.conditional else ""
        self.multilingual = self._multilingual()
        self._tokenizer = None
        self.prompts: dict[str, str] = {}
        self.prompt_ids: dict[str, list[int]] = {}
        self._task: str | None = None
        """The task the decoder runs now: :meth:`forward` sets it, :meth:`select` reads it."""

    def _multilingual(self) -> bool:
        generation = self.folder / "generation_config.json"
        if generation.is_file():
            try:
                with quiet(self.transformers):
                    found = self.transformers.GenerationConfig.from_pretrained(str(self.folder)).to_dict()
            except library_errors() as err:
                raise CKAProbeError(f"{generation}: {one_line(err)}") from None
            if found.get("is_multilingual") is not None:
                return bool(found["is_multilingual"])
        return self.hf_config.vocab_size >= MULTILINGUAL_VOCAB

    @property
    def tokenizer(self):
        """The folder's Whisper tokenizer (see :meth:`load_tokenizer`), loaded once."""
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return self._tokenizer

    def load_tokenizer(self):
        """The folder's Whisper tokenizer, refused unless its files exist and read, it encodes a text, it has
        the prompt's tokens and its ids fit the model's vocabulary."""
        if not any(all((self.folder / f).is_file() for f in files) for files in TOKENIZER_FILES):
            raise CKAProbeError(
                f"{self.folder}: no tokenizer files (tokenizer.json, or vocab.json and merges.txt): the "
                "decoder needs them to teacher-force the transcripts; extract the encoder only with --tasks"
            )
        try:
            with quiet(self.transformers):
                tok = self.transformers.WhisperTokenizer.from_pretrained(str(self.folder))
                tok("a", add_special_tokens=False)  # a bad tokenizer_config.json value fails only when used
        except Exception as err:  # the tokenizers library raises a bare Exception for a malformed file
            raise CKAProbeError(
                f"{self.folder}: the tokenizer files cannot be read ({one_line(err)}); the decoder needs "
                "them to teacher-force the transcripts; extract the encoder only with --tasks"
            ) from None
        vocab = tok.get_vocab()
        lacking = [t for t in PROMPT_TOKENS[self.multilingual] if t not in vocab]
        if lacking:
            raise CKAProbeError(
                f"{self.folder}: the tokenizer lacks {', '.join(lacking)} of Whisper's decoder prompt; "
                "use the tokenizer saved with this model"
            )
        top = max(vocab.values())
        if top >= self.hf_config.vocab_size:
            raise CKAProbeError(
                f"{self.folder}: the tokenizer has token ids up to {top}, but config.json's "
                f"vocab_size is {self.hf_config.vocab_size}; use the tokenizer saved with this model"
            )
        return tok

    def ready(self, model: nn.Module) -> nn.Module:
        self.prefix = base_prefix(model)
        return model

    def default_layers(self, tasks: Sequence[str]) -> list[str]:
        return [f"{self.prefix}encoder.layers.*", *([f"{self.prefix}decoder.layers.*"] if tasks else [])]

    def is_decoder(self, name: str) -> bool:
        return name.startswith(f"{self.prefix}decoder.")

    def streams_of(self, name: str, tasks: Sequence[str]) -> list[str]:
        if not self.is_decoder(name):
            return ["encoder"]
        if not tasks:
            raise CKAProbeError(f"layer {name} is in the decoder, but no task is extracted (--tasks)")
        return [f"decoder/{task}" for task in tasks]

    def required_fields(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """The manifest fields the batches read; with ``tasks`` the tokenizer is loaded (and checked) too, as
        the decoder cannot run without it."""
        if tasks and self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return ("id", "audio", *tasks, *(("language",) if tasks and self.multilingual else ()))

    def use_prompts(self, prompts: Mapping[str, str], tasks: Sequence[str]) -> None:
        """Teacher-force each of ``tasks`` after its prompt in ``prompts`` (task -> text); refused unless
        every prompt names a task of the model, every task has one and each prompt encodes
        (:func:`encode_prompt`)."""
        unknown = [t for t in prompts if t not in TASKS]
        if unknown:
            raise CKAProbeError(f"prompt for {unknown[0]!r}: not a task (tasks: {', '.join(TASKS)})")
        lacking = [t for t in tasks if t not in prompts]
        if lacking:
            raise CKAProbeError(
                f"{self.folder}: no prompt for task {lacking[0]} (give one per extracted task, or --tasks)"
            )
        self.prompt_ids = {
            task: encode_prompt(self.tokenizer, text, self.hf_config.vocab_size, f"prompt for {task}")
            for task, text in prompts.items()
        }
        self.prompts = dict(prompts)

    def decoder_prompt(self, language: str | None, task: str) -> list[int]:
        """The decoder's prompt ids for ``task``: the standard prefix, then the task's prompt if any."""
        return self.prefix_ids(language) + self.prompt_ids.get(task, [])

    def first_row(self, task: str) -> int:
        """Position of the decoder prompt's last token for ``task``: the first stored row."""
        return self.prefix_length + len(self.prompt_ids.get(task, [])) - 1

    def prefix_ids(self, language: str | None) -> list[int]:
        """The standard prefix's token ids for an utterance in ``language`` (ignored by English-only
        models)."""
        tok = self.tokenizer
        if self.multilingual:
            try:
                tok.set_prefix_tokens(language=language, task="transcribe", predict_timestamps=False)
            except ValueError as err:
                raise CKAProbeError(f"{self.folder}: language {language!r}: {err}") from None
        else:
            tok.set_prefix_tokens(language=None, task=None, predict_timestamps=False)
        prefix = list(tok.prefix_tokens)
        if len(prefix) != self.prefix_length:
            raise CKAProbeError(
                f"{self.folder}: the tokenizer's prompt {tok.convert_ids_to_tokens(prefix)} is not the "
                f"{self.prefix_length} tokens of a {'multi' if self.multilingual else 'mono'}lingual Whisper"
            )
        return prefix

    def select(self, name: str, output: object) -> torch.Tensor:
        """Decoder outputs ``(B, U, D)`` from the running task's :meth:`first_row` on (see the module
        docstring); encoder outputs whole."""
        tensor = super().select(name, output)
        return tensor[:, self.first_row(self._task) :] if self.is_decoder(name) else tensor

    @property
    def prefix_length(self) -> int:
        """Tokens of the standard prefix: 4 (multilingual) or 2; the language token is one token."""
        return 4 if self.multilingual else 2

    def batches(self, rows: Sequence[dict], batch_size: int, tasks: Sequence[str]) -> Iterator[Batch]:
        for block in in_order(rows, batch_size):
            yield self.collate(block, tasks)

    def collate(self, rows: Sequence[dict], tasks: Sequence[str]) -> Batch:
        rate, window = self.features.sampling_rate, self.features.n_samples
        waves = [load_audio(r["audio"], rate, r.get("start"), r.get("end"), utterance=r["id"]) for r in rows]
        for row, wave in zip(rows, waves):
            if len(wave) > window:
                raise CKAProbeError(
                    f"{row['audio']}: utterance {row['id']!r} lasts {len(wave) / rate:.2f} s, longer "
                    f"than Whisper's {window / rate:.0f}-second window; cut it with start/end"
                )
        feats = self.features(waves, sampling_rate=rate, return_tensors="pt")["input_features"]
        samples = torch.tensor([len(w) for w in waves])
        per_frame = 2 * self.features.hop_length
        batch = {
            "ids": [r["id"] for r in rows],
            "input_features": feats,
            "tasks": list(tasks),
            "enc_lens": -(-samples // per_frame),
            "metadata": {"n_samples": samples.tolist()},
            "tokens": {},
            "dec_lens": {},
            "decoder_ids": {},
        }
        for task in tasks:
            ids, lens = self.decoder_inputs(rows, task)
            batch["decoder_ids"][task] = ids
            batch["dec_lens"][task] = lens - self.first_row(task)
            batch["tokens"][f"decoder/{task}"] = ids[:, self.first_row(task) :]
        return batch

    def decoder_inputs(self, rows: Sequence[dict], task: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder prompt + transcript ids ``(B, U)`` padded with end-of-text, and their lengths ``(B,)``."""
        limit = self.hf_config.max_target_positions
        seqs = [
            self.decoder_prompt(r.get("language"), task)
            + self.tokenizer(r[task], add_special_tokens=False).input_ids
            for r in rows
        ]
        for row, seq in zip(rows, seqs):
            if len(seq) > limit:
                raise CKAProbeError(
                    f"utterance {row['id']!r}: its {task} transcript makes {len(seq)} decoder "
                    f"tokens with the prompt, more than the model's {limit}"
                )
        return pad_ids(seqs, self.tokenizer.eos_token_id)

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Encodes the windows once and runs the decoder once per task; the cross-attention keys and values of
        the encoder output are computed by the first task and reused by the others (the same numbers: about
        half of the decoder's time; held for the batch, 2 x layers x (B, 1500, D) floats)."""
        whisper = model.model if self.conditional else model
        encoded = whisper.encoder(batch["input_features"]).last_hidden_state
        cross = self.transformers.DynamicCache(config=whisper.config)
        for task in batch["tasks"]:
            self._task = task
            cache = self.transformers.EncoderDecoderCache(
                self.transformers.DynamicCache(config=whisper.config), cross
            )
            whisper.decoder(
                input_ids=batch["decoder_ids"][task],
                encoder_hidden_states=encoded,
                cache=cache,
                use_cache=True,
            )
        return {
            "encoder": batch["enc_lens"],
            **{f"decoder/{t}": batch["dec_lens"][t] for t in batch["tasks"]},
        }

    def attrs(self) -> dict:
        attrs = {
            "adapter": "whisper",
            **provenance(self.folder, self.config),
            "arch": "whisper",
            "tasks": list(TASKS),
            "multilingual": self.multilingual,
            "preprocessor": plain_settings(self.features),
            "encoder_frames": "ceil(samples / (2 * hop_length)) of the 30-second window",
        }
        if self._tokenizer is not None:
            tok = self._tokenizer
            attrs["tokenizer"] = {
                "class": type(tok).__name__,
                "vocab_size": len(tok),
                "folder": str(self.folder),
            }
            attrs["decoder_prompt"] = (
                "<|startoftranscript|> "
                + ("<|LANG|> <|transcribe|> " if self.multilingual else "")
                + "<|notimestamps|>"
                + (" PROMPT" if self.prompts else "")
            )
        if self.prompts:
            attrs["prompts"], attrs["prompt_ids"] = self.prompts, self.prompt_ids
        return attrs
