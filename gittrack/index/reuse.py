"""Finding the run a new run can reuse: memo.py's files, built from the lookup table once."""

from __future__ import annotations

from .. import store
from . import memo


def lookup(repo: store.Repo, key: str) -> list[str]:
    """The run ids remembered for `key`, newest first; the files are built on first use."""
    if not memo.folder(repo).is_dir():
        rebuild(repo)
    return memo.read(repo, key)


def rebuild(repo: store.Repo) -> None:
    """Write the files for every memo key the lookup table knows (after syncing it)."""
    from . import edges  # the lookup table is opened only when the files do not exist yet
    from .db import Index

    index = Index(repo)
    repo.make_dir(memo.folder(repo))
    for key, run_id, started in edges.all_memos(index):
        memo.remember(repo, key, run_id, started)
