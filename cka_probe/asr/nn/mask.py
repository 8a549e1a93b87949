"""Masks built from lengths, so that padding never leaks into valid positions."""

from __future__ import annotations

import torch


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,) -> (B, max_len)`` bool, True at positions ``t < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def causal_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Decoder self-attention mask ``(B, U, U)``: query ``i`` sees valid keys ``j ≤ i``."""
    lower = torch.ones(max_len, max_len, dtype=torch.bool, device=lengths.device).tril()
    return valid_mask(lengths, max_len)[:, None, :] & lower[None]
