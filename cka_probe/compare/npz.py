"""Layer-by-layer CKA (or another similarity measure) of two ``.npz`` files (one array per layer, the same
rows in both), and the table writer.

The file side of ``cka-probe compare A.npz B.npz``; the engine itself never touches files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError
from cka_probe.measures.similarity import similarity_matrix


def load_npz(path: Path) -> dict:
    """Layer name -> array of an ``.npz`` file, in the file's order."""
    if path.suffix != ".npz":
        raise CKAProbeError(f"{path}: expected an .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            layers = {name: archive[name] for name in archive.files}
    except ValueError as err:
        raise CKAProbeError(f"{path}: not a readable .npz file ({err})") from None
    if not layers:
        raise CKAProbeError(f"{path}: holds no arrays")
    return layers


def name_files(message: str, a: Path, b: Path) -> str:
    """The engine's "x layer"/"y layer" in ``message`` as the files' layers."""
    return message.replace("x layer", f"{a} layer").replace("y layer", f"{b} layer")


def compare_npz(a: Path, b: Path, *, measure: str = "cka", **options) -> pd.DataFrame:
    """``measure`` (default CKA) of the layers of ``a`` (rows) against those of ``b`` (columns)."""
    xs, ys = load_npz(a), load_npz(b)
    try:
        return similarity_matrix(xs, ys, measure=measure, **options)
    except CKAProbeError as err:
        raise CKAProbeError(name_files(str(err), a, b)) from None


def write_table(table: pd.DataFrame, out: Path) -> None:
    """The CSV and its ``.json`` sidecar (the DataFrame's ``attrs``), each written whole or not at all."""
    for path, text in ((out, table.to_csv()), (Path(f"{out}.json"), json.dumps(table.attrs, indent=2))):
        atomic_write_text(path, text, point="compare")
