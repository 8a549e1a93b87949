"""Recognition error of a model that is not bundled: its own transcripts of a manifest, scored as
``cka-probe evaluate`` scores a bundled checkpoint.

:func:`evaluate_model` resolves MODEL (:func:`cka_probe.extract.models.resolve.resolve`)
and transcribes with the decoding the model itself offers:

- a Whisper folder (``WhisperForConditionalGeneration`` with its tokenizer):
  ``generate`` greedily (``num_beams=1``, ``do_sample=False``) after the prompt
  its generation config makes (``<|startoftranscript|>`` [+ ``<|lang|>`` from
  the manifest's ``language`` + ``<|transcribe|>``] + ``<|notimestamps|>``), at
  most ``max_target_positions`` decoder tokens (prompt included: the model's own
  limit, which also caps the long output of an untrained model), decoded by the
  folder's tokenizer without special tokens; ``decoding`` = ``greedy``. With
  ``prompts`` (task -> a task token or text, a dual-output Whisper selecting its
  output by a prompt), each task is generated greedily (transformers' plain
  ``GenerationMixin.generate``) after its own decoder prompt
  (:meth:`WhisperAdapter.decoder_prompt`: that prefix, then the task's prompt),
  and decoded from the first token after it;
- a wav2vec2-family ``*ForCTC`` folder with its CTC tokenizer (``vocab.json``):
  the argmax of the logits over each utterance's valid frames, decoded by the
  tokenizer's ``batch_decode`` (repeats collapsed, blanks dropped); ``decoding`` =
  ``ctc``;
- a ``FILE.py:FUNCTION`` adapter with the optional ``transcribe(model, batch)``
  duty (task -> B texts); ``decoding`` = ``adapter``.

Whisper models without prompts and CTC models have one output; it is scored against the reference of
every task asked for. A model that cannot transcribe (no language-model or CTC
head, no tokenizer, a generation config without Whisper's prompt tokens, an
adapter without ``transcribe``) raises :class:`CannotTranscribe` before any
audio is read. References and hypotheses are normalised alike (``normalise``:
``basic`` = transformers' ``BasicTextNormalizer``, lower case with punctuation and
symbols removed; ``none`` = as written), then compared exactly as the bundled
``evaluate`` compares them (:func:`cka_probe.text.cer.normalize_text`: NFC, white
space folded), into the same per-utterance CSV and summary JSON
(:func:`cka_probe.asr.evaluate.write_evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from cka_probe.asr.evaluate import read_references, refuse_outputs, write_evaluation
from cka_probe.errors import CKAProbeError
from cka_probe.extract.models import model_files
from cka_probe.extract.models.base import Adapter, Batch
from cka_probe.extract.models.resolve import resolve
from cka_probe.extract.models.wav2vec2 import Wav2Vec2Adapter
from cka_probe.extract.models.whisper import TASKS, WhisperAdapter
from cka_probe.text.cer import normalize_text

NORMALISERS = ("basic", "none")
Transcriber = Callable[[nn.Module, Batch, Sequence[dict]], dict[str, list[str]]]
"""(model, batch, the batch's manifest rows) -> task -> the batch's texts."""


class CannotTranscribe(CKAProbeError):
    """The model has no way to transcribe (one line saying why); the study goes on without its CER."""


def evaluate_model(
    model: str | Path,
    manifest: str | Path,
    out_csv: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    limit: int | None = None,
    normalise: str = "basic",
    prompts: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Transcribe ``manifest`` with ``model`` (an HF folder or ``FILE.py:FUNCTION``), write the per-utterance
    CER CSV and its summary JSON; returns the per-utterance table.

    ``tasks`` are the references scored (default: both for a one-output model, every task an adapter's
    ``transcribe`` returns). ``prompts`` (task -> prompt, one for each task scored; Whisper folders) gives
    each task its own hypotheses, generated after its prompt; the summary records them. Raises
    :class:`CannotTranscribe` for a model that cannot transcribe.
    """
    from cka_probe.asr.checkpoint import check_count, usable_device

    check_count(batch_size, "batch_size")
    check_count(limit, "limit", optional=True)
    usable_device(device)
    normaliser = text_normaliser(normalise)
    refuse_outputs(out_csv, [manifest, *model_files(model)])
    if Path(str(model)).suffix == ".pt":
        raise CKAProbeError(f"{model}: a bundled checkpoint is evaluated by cka_probe.asr.evaluate.evaluate")
    adapter = resolve(model)
    unknown = [t for t in tasks or () if t not in TASKS]
    if unknown:
        raise CKAProbeError(f"task {unknown[0]!r}: not a task (tasks: {', '.join(TASKS)})")
    if prompts and not isinstance(adapter, WhisperAdapter):
        raise CKAProbeError(f"{model}: --prompt needs a decoder that takes a task prompt (a Whisper folder)")
    make, decoding = transcriber_for(adapter, model, tasks)
    if prompts:
        adapter.use_prompts(prompts, tuple(tasks or TASKS))
    references = read_references(manifest)
    rows = list(references.values())[:limit]
    net = adapter.build(device)
    hyps = transcribe_rows(adapter, net, make(net), rows, batch_size, device)
    info = {"model": str(model), "manifest": str(manifest), "decoding": decoding, "normalise": normalise}
    info |= {"prompts": dict(prompts)} if prompts else {}
    return write_evaluation(references, hyps, out_csv, decoding=decoding, info=info, normalise=normaliser)


def text_normaliser(normalise: str) -> Callable[[str], str]:
    """``basic``: transformers' ``BasicTextNormalizer`` then :func:`normalize_text`; ``none``: the latter."""
    if normalise not in NORMALISERS:
        raise CKAProbeError(f"--normalise must be one of {', '.join(NORMALISERS)}, not {normalise!r}")
    if normalise == "none":
        return normalize_text
    try:
        from transformers.models.whisper.english_normalizer import BasicTextNormalizer
    except ImportError:
        raise CKAProbeError(
            "--normalise basic needs transformers: pip install 'cka-probe[hf]', or use --normalise none"
        ) from None
    basic = BasicTextNormalizer()
    return lambda text: normalize_text(basic(text))


def transcriber_for(
    adapter: Adapter, model: str | Path, tasks: Sequence[str] | None
) -> tuple[Callable[[nn.Module], Transcriber], str]:
    """The model's transcriber, made from the built model, and its ``decoding`` name; raises
    :class:`CannotTranscribe` when it has none."""
    from cka_probe.extract.models.python_adapter import PythonAdapter

    if isinstance(adapter, PythonAdapter):
        if not hasattr(adapter, "transcribe"):
            raise CannotTranscribe(f"{model}: the adapter has no transcribe(model, batch) duty")
        return lambda net: adapter_texts(adapter, model, tasks), "adapter"
    if isinstance(adapter, WhisperAdapter):
        return whisper_transcriber(adapter, model, tuple(tasks or TASKS)), "greedy"
    if isinstance(adapter, Wav2Vec2Adapter):
        return ctc_transcriber(adapter, model, tuple(tasks or TASKS)), "ctc"
    raise CannotTranscribe(f"{model}: {type(adapter).__name__} models have no transcription here")


def whisper_transcriber(
    adapter: WhisperAdapter, model: str | Path, tasks: tuple[str, ...]
) -> Callable[[nn.Module], Transcriber]:
    """Greedy ``generate`` of a Whisper folder (see the module docstring)."""
    from cka_probe.extract.models.hf import library_errors, one_line, quiet
    from cka_probe.extract.models.whisper import TOKENIZER_FILES

    if not adapter.conditional:
        raise CannotTranscribe(f"{model}: a WhisperModel has no language-model head to transcribe with")
    if not any(all((adapter.folder / f).is_file() for f in files) for files in TOKENIZER_FILES):
        raise CannotTranscribe(f"{model}: no tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    tokenizer = adapter.tokenizer

    def make(net: nn.Module) -> Transcriber:
        check_generation_config(net.generation_config, adapter.multilingual, model)
        options = {"num_beams": 1, "do_sample": False, "max_length": adapter.hf_config.max_target_positions}

        def generated(net: nn.Module, batch: Batch, rows: Sequence[dict]) -> list[str]:
            language = (
                {"language": [r["language"] for r in rows], "task": "transcribe"}
                if adapter.multilingual
                else {}
            )
            ids = net.generate(batch["input_features"], **options, **language)
            return tokenizer.batch_decode(ids, skip_special_tokens=True)

        def prompted(net: nn.Module, batch: Batch, rows: Sequence[dict], task: str) -> list[str]:
            features = batch["input_features"]
            prompt = torch.tensor(
                [adapter.decoder_prompt(r.get("language"), task) for r in rows], device=features.device
            )
            # the plain generate: Whisper's own override does not stop when given decoder_input_ids
            generate = adapter.transformers.GenerationMixin.generate
            ids = generate(net, input_features=features, decoder_input_ids=prompt, **options)
            return tokenizer.batch_decode(ids[:, prompt.shape[1] :], skip_special_tokens=True)

        def transcribe(net: nn.Module, batch: Batch, rows: Sequence[dict]) -> dict[str, list[str]]:
            try:
                with quiet(adapter.transformers):
                    if not adapter.prompts:
                        return dict.fromkeys(tasks, generated(net, batch, rows))
                    return {task: prompted(net, batch, rows, task) for task in tasks}
            except library_errors() as err:
                raise CKAProbeError(f"{model}: generate failed: {one_line(err)}") from None

        return transcribe

    return make


def check_generation_config(generation, multilingual: bool, model: str | Path) -> None:
    """Refuse (:class:`CannotTranscribe`) a generation config that cannot make Whisper's prompt."""
    needed = ["decoder_start_token_id", "no_timestamps_token_id"]
    if multilingual:
        needed += ["lang_to_id", "task_to_id"]
    lacking = [key for key in needed if getattr(generation, key, None) is None]
    if lacking:
        raise CannotTranscribe(
            f"{model}: its generation config (generation_config.json) lacks {', '.join(lacking)}, "
            "which generate needs for Whisper's prompt"
        )


def ctc_transcriber(
    adapter: Wav2Vec2Adapter, model: str | Path, tasks: tuple[str, ...]
) -> Callable[[nn.Module], Transcriber]:
    """Greedy CTC of a wav2vec2-family ``*ForCTC`` folder (see the module docstring)."""
    if adapter.model_class is not adapter.transformers.AutoModelForCTC:
        kind = adapter.config["model_type"]
        raise CannotTranscribe(f"{model}: a {kind} model without a CTC head (*ForCTC) cannot transcribe")
    tokenizer = ctc_tokenizer(adapter, model)

    def make(net: nn.Module) -> Transcriber:
        def transcribe(net: nn.Module, batch: Batch, rows: Sequence[dict]) -> dict[str, list[str]]:
            logits = net(batch["input_values"], attention_mask=batch.get("attention_mask")).logits
            # logits (B, T, V); utterance i's valid frames are its first lengths[i]
            best = logits.argmax(-1)
            lengths = adapter.output_lengths(batch["samples"]).tolist()
            texts = tokenizer.batch_decode([best[i, :n].tolist() for i, n in enumerate(lengths)])
            return {task: texts for task in tasks}

        return transcribe

    return make


def ctc_tokenizer(adapter: Wav2Vec2Adapter, model: str | Path):
    """The folder's CTC tokenizer, refused unless it reads and covers every output of the CTC head."""
    from cka_probe.extract.models.hf import library_errors, one_line, quiet

    if not (adapter.folder / "vocab.json").is_file():
        raise CannotTranscribe(f"{model}: no CTC tokenizer (vocab.json) to turn the CTC output into text")
    try:
        with quiet(adapter.transformers):
            tokenizer = adapter.transformers.AutoTokenizer.from_pretrained(str(adapter.folder))
    except library_errors() as err:
        raise CKAProbeError(f"{model}: the tokenizer files cannot be read ({one_line(err)})") from None
    if len(tokenizer) < adapter.hf_config.vocab_size:
        raise CKAProbeError(
            f"{model}: the tokenizer has {len(tokenizer)} tokens, but the CTC head has "
            f"{adapter.hf_config.vocab_size} outputs (config.json's vocab_size); use the model's tokenizer"
        )
    return tokenizer


def adapter_texts(adapter: Adapter, model: str | Path, tasks: Sequence[str] | None) -> Transcriber:
    """The adapter's ``transcribe`` duty, refused when it lacks a task of ``tasks`` or returns one that is
    not a task; all it returns when ``tasks`` is None."""

    def transcribe(net: nn.Module, batch: Batch, rows: Sequence[dict]) -> dict[str, list[str]]:
        texts = adapter.transcribe(net, batch)
        wanted = list(texts) if tasks is None else tasks
        bad = [t for t in wanted if t not in TASKS or t not in texts]
        if bad:
            raise CKAProbeError(
                f"{model}: transcribe returned tasks {sorted(texts)}; {bad[0]!r} is not one of them or not a "
                f"task ({', '.join(TASKS)})"
            )
        return {task: texts[task] for task in wanted}

    return transcribe


def transcribe_rows(
    adapter: Adapter,
    net: nn.Module,
    transcribe: Transcriber,
    rows: Sequence[dict],
    batch_size: int,
    device: str,
) -> dict[str, dict[str, str]]:
    """task -> utterance id -> hypothesis in manifest order, batch by batch (a progress bar on a terminal)."""
    by_id = {row["id"]: row for row in rows}
    found: dict[str, dict[str, str]] = {}
    with torch.no_grad():
        for batch in tqdm(
            adapter.batches(rows, batch_size, ()), desc="transcribing", unit="batch", disable=None
        ):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            for task, texts in transcribe(net, batch, [by_id[i] for i in batch["ids"]]).items():
                found.setdefault(task, {}).update(zip(batch["ids"], texts))
    return {task: {uid: texts[uid] for uid in by_id} for task, texts in found.items()}
