"""Ranks under ``torchrun``: which process this is, the block of items it owns, its device, its process group.

``torchrun --nproc_per_node K`` (on one or more machines) starts K processes
and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each; without it this
process is rank 0 of 1 and nothing here starts a process group.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

Item = TypeVar("Item")


def world() -> tuple[int, int]:
    """``(rank, world size)`` from the environment ``torchrun`` sets; ``(0, 1)`` otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Contiguous, balanced block ``[start, stop)`` of ``n`` items for ``rank`` of ``size``."""
    return n * rank // size, n * (rank + 1) // size


def rank_device(device: str) -> str:
    """Under ``torchrun``, a bare ``cuda`` means this process's GPU (``cuda:LOCAL_RANK``)."""
    return f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if device == "cuda" and world()[1] > 1 else device


@contextmanager
def process_group(backend: str = "gloo") -> Iterator[None]:
    """The default ``torch.distributed`` group of the ``torchrun`` ranks for the duration of the block.

    It is started (``backend``: ``gloo`` for CPU tensors, ``nccl`` for CUDA
    ones) and destroyed at the end only when there are several ranks and no
    group exists yet; a group the caller started is used and left alone.
    """
    rank, size = world()
    owns_group = size > 1 and not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend, rank=rank, world_size=size)
    try:
        yield
    finally:
        if owns_group:
            dist.destroy_process_group()


def backend(device: torch.device | str | None) -> str:
    """The ``torch.distributed`` backend for tensors on ``device``: ``nccl`` for CUDA, else ``gloo``."""
    return "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"


def split_over_ranks(
    items: Sequence[Item], compute: Callable[[Sequence[Item]], list[np.ndarray]]
) -> list[np.ndarray]:
    """``compute(items)``, each of whose outputs is an array with one row per item ``(len(items), ...)``,
    with the items split over the ``torchrun`` ranks: each rank computes its contiguous block
    (:func:`shard_bounds`) and every rank gets the blocks of all, concatenated in rank order, so that the
    result is the one-process result (row i is computed from item i alone either way). With one rank, or
    fewer items than ranks, every rank computes all of them.
    """
    rank, size = world()
    if size == 1 or len(items) < size:
        return compute(items)
    start, stop = shard_bounds(len(items), rank, size)
    with process_group():
        blocks: list = [None] * size
        dist.all_gather_object(blocks, compute(items[start:stop]))
    return [np.concatenate([block[k] for block in blocks]) for k in range(len(blocks[0]))]
