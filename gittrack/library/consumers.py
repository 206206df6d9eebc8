"""Who is told when a recorded run's output is read: the run in progress, if any.

The library does not know about recording; a run in progress registers itself here while it
runs (`consuming`), so that every output it reads through `Run.path()`/`Run.load()` becomes one
of its inputs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

Consumer = Callable[[str, str, str, str], None]  # (run id, commit, output name, md5)

_consumer: contextvars.ContextVar[Consumer | None] = contextvars.ContextVar(
    "gittrack_consumer", default=None
)


def consuming(callback: Consumer | None) -> contextvars.Token[Consumer | None]:
    """Tell `callback` of every output read in this context (until the token is reset)."""
    return _consumer.set(callback)


def consumed(run_id: str, commit: str, output: str = "", md5: str = "") -> None:
    """An output (or, with no name, a whole run) was read in this context."""
    callback = _consumer.get()
    if callback is not None:
        callback(run_id, commit, output, md5)
