"""Who is told when a recorded run's output is read: the run in progress, if any.

The library does not know about recording; a run in progress registers itself here while it
runs (`consuming`), so that every output it reads through `Run.path()`/`Run.load()` becomes one
of its inputs. A program started by a run (a notebook's kernel) reports its reads through the
file named by GITTRACK_CONSUMED_FILE, which the run reads when the program ends.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable

Consumer = Callable[[str, str, str, str], None]  # (run id, commit, output name, md5)

_consumer: contextvars.ContextVar[Consumer | None] = contextvars.ContextVar(
    "gittrack_consumer", default=None
)


def consuming(callback: Consumer | None) -> contextvars.Token[Consumer | None]:
    """Tell `callback` of every output read in this context (until the token is reset)."""
    return _consumer.set(callback)


FILE_VAR = "GITTRACK_CONSUMED_FILE"


# Set by `gittrack.track` (and in a notebook's kernel through FILE_VAR): there, reading a run's
# params or metrics, or listing runs, makes them inputs too, not only reading their outputs.
_reads: contextvars.ContextVar[bool] = contextvars.ContextVar("gittrack_reads", default=False)


def counting_reads(on: bool) -> contextvars.Token[bool]:
    return _reads.set(on)


def active() -> bool:
    """Whether reading a run's fields (not only its outputs) makes it an input here."""
    if os.environ.get(FILE_VAR):
        return True
    return _reads.get() and _consumer.get() is not None


def consumed(run_id: str, commit: str, output: str = "", md5: str = "") -> None:
    """An output (or, with no name, a whole run) was read in this context."""
    callback = _consumer.get()
    if callback is not None:
        callback(run_id, commit, output, md5)
        return
    path = os.environ.get(FILE_VAR)
    if path:
        import json  # only in a program started by `gittrack exec`

        line = json.dumps({"run": run_id, "commit": commit, "output": output, "md5": md5})
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def read_consumed(path: str) -> list[dict[str, str]]:
    """The reads a program reported through `FILE_VAR` (malformed lines are skipped)."""
    import json

    out: list[dict[str, str]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("run", "commit")):
            out.append({k: str(item.get(k, "")) for k in ("run", "commit", "output", "md5")})
    return out
