"""Tiny random-weight Hugging Face speech models saved to a folder: nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|ko|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


TEXTS = ["hello there", "a cat", "hi", "go home now", "yes"]
"""Transcripts of the test corpora (:func:`noise_corpus`)."""
SECONDS = [0.5, 0.7, 0.5, 0.3, 0.9]
"""Durations of their noise recordings."""


def whisper_folder(folder: Path, *, conditional: bool = True, seed: int = 0) -> Path:
    """A 2+2-layer Whisper (d 32) with a byte-level tokenizer, multilingual prompt, and its feature
    extractor."""
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperModel,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    vocab.update({s: len(vocab) + k for k, s in enumerate(SPECIALS)})
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    config = WhisperConfig(
        vocab_size=len(vocab),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_target_positions=64,
        pad_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        bos_token_id=vocab["<|endoftext|>"],
        decoder_start_token_id=vocab["<|startoftranscript|>"],
    )
    torch.manual_seed(seed)
    model = (WhisperForConditionalGeneration if conditional else WhisperModel)(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        is_multilingual=True,
        lang_to_id={"<|en|>": vocab["<|en|>"], "<|ko|>": vocab["<|ko|>"]},
    )
    generation.save_pretrained(folder)
    return folder


def whisper_sized_folder(folder: Path, d_model: int, layers: int, heads: int, seed: int = 0) -> Path:
    """:func:`whisper_folder` (its tokenizer, feature extractor and generation config) with a random
    ``layers`` + ``layers``-layer model of width ``d_model`` (feed-forward 4 x ``d_model``), 80 mel bins."""
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    whisper_folder(folder)
    generation = GenerationConfig.from_pretrained(folder)
    config = WhisperConfig.from_pretrained(folder)
    config.update(
        {
            "d_model": d_model,
            "encoder_layers": layers,
            "decoder_layers": layers,
            "encoder_attention_heads": heads,
            "decoder_attention_heads": heads,
            "encoder_ffn_dim": 4 * d_model,
            "decoder_ffn_dim": 4 * d_model,
            "max_target_positions": 448,
        }
    )
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    generation.save_pretrained(folder)  # the model's save wrote one made from its config
    return folder


def whisper_task_folder(folder: Path, tokens: tuple[str, ...] = ("<|surface|>", "<|meaning|>")) -> Path:
    """:func:`whisper_folder` with ``tokens`` added to its tokenizer as special tokens and random
    embeddings (tied output projection) for them: a dual-output Whisper selecting its task by a token."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    whisper_folder(folder)
    tokenizer = WhisperTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)})
    model = WhisperForConditionalGeneration.from_pretrained(folder)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        torch.manual_seed(1)
        model.get_input_embeddings().weight[-len(tokens) :] = torch.randn(len(tokens), model.config.d_model)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def with_generation_prompt(folder: Path) -> Path:
    """The Whisper ``folder`` with the generation config a released Whisper has for its prompt."""
    from transformers import GenerationConfig, WhisperTokenizer

    vocab = WhisperTokenizer.from_pretrained(folder).get_vocab()
    generation = GenerationConfig.from_pretrained(folder)
    generation.task_to_id = {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]}
    generation.no_timestamps_token_id = vocab["<|notimestamps|>"]
    generation.eos_token_id = generation.pad_token_id = vocab["<|endoftext|>"]
    generation.save_pretrained(folder)
    return folder


def wav2vec2_folder(
    folder: Path,
    *,
    family: str = "wav2vec2",
    norm: str = "group",
    ctc: bool = False,
    preprocessor: bool = True,
) -> Path:
    """A 2-layer wav2vec2/HuBERT/WavLM/data2vec-audio (d 32, CNN of 3 layers) with group or layer norm."""
    import torch
    import transformers as T

    common = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 2, 2),
        conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        do_stable_layer_norm=norm == "layer",
        vocab_size=12,
    )
    configs = {
        "wav2vec2": T.Wav2Vec2Config,
        "hubert": T.HubertConfig,
        "wavlm": T.WavLMConfig,
        "data2vec-audio": T.Data2VecAudioConfig,
    }
    config = configs[family](**common)
    heads = {
        ("wav2vec2", False): T.Wav2Vec2Model,
        ("wav2vec2", True): T.Wav2Vec2ForCTC,
        ("hubert", False): T.HubertModel,
        ("hubert", True): T.HubertForCTC,
        ("wavlm", False): T.WavLMModel,
        ("wavlm", True): T.WavLMForCTC,
        ("data2vec-audio", False): T.Data2VecAudioModel,
        ("data2vec-audio", True): T.Data2VecAudioForCTC,
    }
    torch.manual_seed(0)
    heads[(family, ctc)](config).save_pretrained(folder)
    if preprocessor:
        T.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=norm == "layer").save_pretrained(
            folder
        )
    return folder


def noise_corpus(
    folder: Path,
    seconds: list[float],
    *,
    rate: int = 16000,
    texts: list[str] | None = None,
    suffix: str = ".wav",
    seed: int = 0,
) -> Path:
    """Int16 noise files of the given lengths and a manifest (``id``, ``audio`` [+ transcripts, language])."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i, s in enumerate(seconds):
        path = folder / f"u{i}{suffix}"
        soundfile.write(
            path, (rng.normal(size=round(s * rate)) * 3000).astype(np.int16), rate, subtype="PCM_16"
        )
        row = {"id": f"u{i}", "audio": path.name}
        if texts:
            row |= {"surface": texts[i], "meaning": texts[i][::-1], "language": "en"}
        rows.append(row)
    manifest = folder / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest
