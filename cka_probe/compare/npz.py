"""Layer-by-layer CKA (or another similarity measure) of two ``.npz`` files (one array per layer, the same
rows in both), and the table writer.

The file side of ``cka-probe compare A.npz B.npz``; the engine itself never touches files.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from cka_probe.atomic import atomic_write_text
from cka_probe.errors import CKAProbeError, write_error
from cka_probe.measures.similarity import similarity_matrix
from cka_probe.ranks import world

READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)
"""What reading a member of a zip archive with ``np.load`` raises: bad CRC, truncated data, a pickle."""


def one_line(err: BaseException) -> str:
    """``err``'s message on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def checked_array(path: Path, name: str, value: object) -> np.ndarray:
    """The layer ``name`` of ``path`` as a real ``(n, d)`` array with n, d >= 1 (integers cast to float64)."""
    where = f"{path}: layer {name!r}"
    if not isinstance(value, np.ndarray):
        raise CKAProbeError(f"{where} is not an .npy array; save the file with numpy.savez")
    if value.dtype.kind in "iu":
        value = value.astype(np.float64)
    if value.dtype.kind != "f":
        raise CKAProbeError(f"{where} holds {value.dtype} values; give real numbers (float or integer)")
    if value.ndim != 2 or 0 in value.shape:
        raise CKAProbeError(
            f"{where} has shape {value.shape}; give a (rows, features) array with at least one of each"
        )
    return value


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Layer name -> ``(n, d)`` float array of an ``.npz`` file, in the file's order, every layer with the
    same n rows; any other content (not a zip, truncated, a pickle, a member that is not a real 2-D array)
    is a ``CKAProbeError`` naming the file and the layer."""
    if path.suffix != ".npz":
        raise CKAProbeError(f"{path}: expected an .npz file")
    with open(path, "rb") as file:  # a missing file is the OSError the CLI reports
        is_zip = zipfile.is_zipfile(file)
    if not is_zip:
        raise CKAProbeError(f"{path}: not a readable .npz file (not a zip archive, or a truncated one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            raw = {name: archive[name] for name in archive.files}
    except READ_ERRORS as err:
        raise CKAProbeError(f"{path}: not a readable .npz file ({one_line(err)})") from None
    layers = {name: checked_array(path, name, value) for name, value in raw.items()}
    if not layers:
        raise CKAProbeError(f"{path}: holds no arrays")
    rows = {name: len(x) for name, x in layers.items()}
    first = next(iter(rows))
    for name, n in rows.items():
        if n != rows[first]:
            raise CKAProbeError(
                f"{path}: layer {name!r} has {n} rows but layer {first!r} has {rows[first]}; "
                "every layer must hold the same samples (rows)"
            )
    return layers


def name_files(message: str, a: Path, b: Path) -> str:
    """The engine's "x layer"/"y layer" in ``message`` as the files' layers."""
    return message.replace("x layer", f"{a} layer").replace("y layer", f"{b} layer")


def compare_npz(a: Path, b: Path, *, measure: str = "cka", **options) -> pd.DataFrame:
    """``measure`` (default CKA) of the layers of ``a`` (rows) against those of ``b`` (columns); refused
    under ``torchrun``, whose ranks split stores only."""
    if world()[1] > 1:
        raise CKAProbeError(
            f"{a}, {b}: under torchrun compare splits two activation stores (.h5) only; "
            "compare .npz files without torchrun"
        )
    xs, ys = load_npz(a), load_npz(b)
    try:
        return similarity_matrix(xs, ys, measure=measure, **options)
    except CKAProbeError as err:
        message = name_files(str(err), a, b)
        raise CKAProbeError(message if str(a) in message else f"{a}, {b}: {message}") from None


def write_table(table: pd.DataFrame, out: Path) -> None:
    """The ``.json`` sidecar (the DataFrame's ``attrs``), then the CSV, each written whole or not at all.

    The CSV comes last, so its presence says the pair is complete; a failed write is a
    ``CKAProbeError`` naming the file (a failed sidecar leaves no CSV).
    """
    for path, text in ((Path(f"{out}.json"), json.dumps(table.attrs, indent=2)), (out, table.to_csv())):
        try:
            atomic_write_text(path, text, point="compare")
        except OSError as err:
            raise write_error(err, path, needed=len(text.encode())) from None
