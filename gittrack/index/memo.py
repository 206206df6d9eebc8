"""Memoisation lookups without the lookup table: one small file per memo key.

Checking whether an identical completed run exists happens at the start of every run, so it
must not open or sync the SQLite index. `.git/gittrack/memo/<key>` lists the completed runs with
that key, one `<started> <run id>` line each (runs with equal keys differ in their code, which is
compared per file when a run starts). A line is appended when a run completes and whenever the
index syncs (runs pulled from collaborators), and every candidate is checked against the branch,
so a stale line only costs a miss. Like all local state it can be rebuilt from the branch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import store


def folder(repo: store.Repo) -> Path:
    return repo.state_dir / "memo"


def _lines(path: Path) -> list[tuple[str, str]]:
    """(started, run id) of each well-formed line of a memo file."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [(p[0], p[1]) for p in (line.split() for line in text.splitlines()) if len(p) == 2]


def remember(repo: store.Repo, key: str, run_id: str, started: str) -> None:
    """Add `run_id` to the runs of `key` (once the files exist; appending is atomic)."""
    path = folder(repo) / key
    if not path.parent.is_dir():
        return  # not built yet: the first lookup builds every file from the index
    if any(rid == run_id for _, rid in _lines(path)):
        return
    fresh = not path.exists()
    with contextlib.suppress(OSError), path.open("a") as fh:
        fh.write(f"{started or '-'} {run_id}\n")
    if fresh:
        repo.share(path)


def read(repo: store.Repo, key: str) -> list[str]:
    """The run ids remembered for `key`, newest first."""
    seen: dict[str, str] = {}
    for started, run_id in _lines(folder(repo) / key):
        seen[run_id] = max(started, seen.get(run_id, ""))
    return sorted(seen, key=lambda r: seen[r], reverse=True)


def forget(repo: store.Repo, key: str, run_id: str | None = None) -> None:
    """Drop `run_id` (every run when None) from the runs of `key`."""
    path = folder(repo) / key
    with contextlib.suppress(OSError):
        if run_id is None:
            path.unlink()
            return
        kept = [f"{s} {r}\n" for s, r in _lines(path) if r != run_id]
        if not kept:
            path.unlink()
            return
        tmp = path.with_name(f".{key}.{os.getpid()}")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
