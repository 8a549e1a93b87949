"""The one exception type that the CLI turns into a one-line message.

Every expected mistake (a missing file, a mismatched number of rows, a
constant representation, a corrupt store, ...) raises :class:`CKAProbeError`
with a message that names the file, line, layer or utterance at fault. It
subclasses :class:`ValueError` so that the engine's public contract ("raises
``ValueError``") holds for callers who catch the built-in type.
"""


class CKAProbeError(ValueError):
    """An expected, user-facing error; its message is one self-contained line."""


def _size(n: int) -> str:
    """``n`` bytes in the largest binary unit that keeps it >= 1, e.g. ``"3.2 GiB"``."""
    value, units = float(n), ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def write_error(err: OSError, path: object, *, needed: int | None = None) -> CKAProbeError:
    """The one-line error for an ``OSError`` met while writing ``path``: a full disk names the space needed.

    ``needed`` is an estimate of the bytes the write still needs, stated when
    the disk is full (``ENOSPC``) or over quota (``EDQUOT``).
    """
    import errno
    import os

    reason = os.strerror(err.errno) if err.errno else " ".join(str(err).split())
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        space = f" (about {_size(needed)} more is needed)" if needed else ""
        return CKAProbeError(
            f"{path}: {reason} while writing{space}; free space or choose another --out, then run again "
            "(what was committed is kept and resumed)"
        )
    return CKAProbeError(f"{path}: {reason} while writing")
