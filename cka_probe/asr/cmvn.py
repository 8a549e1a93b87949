"""Global cepstral mean and variance normalisation (CMVN) of fbank features.

Statistics come from the training set: per mel bin, ``μ = Σx / n`` and
``σ² = Σx² / n − μ²`` over all frames, accumulated in float64; features are
normalised as ``(x − μ) / max(σ, floor)``. They are saved in the checkpoint so
that extraction and evaluation normalise exactly as training did.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cka_probe.errors import CKAProbeError

STD_FLOOR = 1e-5


class GlobalCMVN:
    """``mean (D,)`` and ``istd (D,)`` (inverse standard deviation), float64."""

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.istd = torch.as_tensor(istd, dtype=torch.float64)
        if self.mean.shape != self.istd.shape or self.mean.ndim != 1:
            raise CKAProbeError(
                f"CMVN statistics have shapes {tuple(self.mean.shape)} and {tuple(self.istd.shape)}"
            )

    @classmethod
    def from_features(cls, feats: Iterable[torch.Tensor]) -> GlobalCMVN:
        """Accumulate ``Σx``, ``Σx²`` and ``n`` over utterances ``(T, D)``."""
        total, squares, count = 0.0, 0.0, 0
        for x in feats:
            x = x.to(torch.float64)
            total = total + x.sum(dim=0)
            squares = squares + x.pow(2).sum(dim=0)
            count += x.shape[0]
        if count == 0:
            raise CKAProbeError("CMVN: no feature frames to estimate statistics from")
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp(min=0.0).sqrt()
        return cls(mean, 1.0 / std.clamp(min=STD_FLOOR))

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalise ``(..., D)`` features; the result keeps ``feats``' dtype."""
        return ((feats - self.mean.to(feats)) * self.istd.to(feats)).to(feats.dtype)

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "istd": self.istd.clone()}

    @classmethod
    def from_dict(cls, state: dict[str, torch.Tensor]) -> GlobalCMVN:
        return cls(state["mean"], state["istd"])
