"""Bundled minimal CTC-attention recognisers: features, tokenizers, SO/DO models, checkpoints.

See ``docs/models.md``. One concept per module, as WeNet's ``transformer/``.
"""

from cka_probe.asr.checkpoint import load_checkpoint, save_checkpoint
from cka_probe.asr.config import load_config
from cka_probe.asr.model import build_model
from cka_probe.asr.tokenizer import CharTokenizer

__all__ = ["CharTokenizer", "build_model", "load_checkpoint", "load_config", "save_checkpoint"]
