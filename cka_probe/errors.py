"""The one exception type that the CLI turns into a one-line message.

Every expected mistake (a missing file, a mismatched number of rows, a
constant representation, a corrupt store, ...) raises :class:`CKAProbeError`
with a message that names the file, line, layer or utterance at fault. It
subclasses :class:`ValueError` so that the engine's public contract ("raises
``ValueError``") holds for callers who catch the built-in type.
"""


class CKAProbeError(ValueError):
    """An expected, user-facing error; its message is one self-contained line."""
