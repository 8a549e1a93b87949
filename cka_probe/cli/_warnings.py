"""The one-line report of the warnings a command met, shared by the subcommands."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def warnings_on_stderr(command: str, rename: Callable[[str], str] = str) -> Iterator[None]:
    """Collect the warnings of the block; when it succeeds, print each on stderr as one line
    ``cka-probe COMMAND: warning: ...`` (``rename`` rewrites the message first)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        message = " ".join(rename(str(warning.message)).split())
        print(f"cka-probe {command}: warning: {message}", file=sys.stderr)
