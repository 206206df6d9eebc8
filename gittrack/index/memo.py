"""Memoisation lookups without the lookup table: one small file per memo key.

Checking whether an identical completed run exists happens at the start of every run, so it
must not open or sync the SQLite index. `.git/gittrack/memo/<key>` names the newest completed
run with that key; it is written when a run completes and whenever the index syncs (runs pulled
from collaborators), and every hit is checked against the branch, so a stale file only costs a
miss. Like all local state it can be rebuilt from the branch.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .. import store


def folder(repo: store.Repo) -> Path:
    return repo.state_dir / "memo"


def remember(repo: store.Repo, key: str, run_id: str, started: str) -> None:
    """Name `run_id` for `key` unless a newer run is already named (once the files exist)."""
    path = folder(repo) / key
    if not path.parent.is_dir():
        return  # not built yet: the first lookup builds every file from the index
    with contextlib.suppress(OSError, IndexError):
        if path.read_text().split()[0] >= started:
            return
    tmp = path.with_name(f".{key}.{os.getpid()}")
    tmp.write_text(f"{started} {run_id}\n")
    os.replace(tmp, path)


def read(repo: store.Repo, key: str) -> str | None:
    """The run id remembered for `key`, if its file exists."""
    with contextlib.suppress(OSError, IndexError):
        return (folder(repo) / key).read_text().split()[1]
    return None


def forget(repo: store.Repo, key: str) -> None:
    with contextlib.suppress(OSError):
        (folder(repo) / key).unlink()
