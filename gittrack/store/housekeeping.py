"""Keeping the repository small: pack loose objects once enough have piled up, off the hot path.

Every run writes a handful of loose objects (blobs, trees, a commit), each taking a filesystem
block of its own. After a run is committed, `after_commit` estimates the number of loose objects
the way git does (one of the 256 fan-out folders, times 256: a single directory listing) and,
past a threshold, starts git's own `gc --auto` detached, in its own session: the run does not
wait for it. git's gc takes its own lock (concurrent ones skip), never prunes objects younger
than its expiry (two weeks by default) and so is safe beside concurrent writers.
"""

from __future__ import annotations

import os
import subprocess

from .objects import Repo

LOOSE_LIMIT = 1024  # loose objects that make packing worth it (git's own default is 6,700)
SAMPLE = "17"  # the fan-out folder git itself samples


def loose_estimate(repo: Repo) -> int:
    """About how many loose objects the repository holds (one folder listed, times 256)."""
    try:
        return len(os.listdir(repo.common_dir / "objects" / SAMPLE)) * 256
    except OSError:
        return 0


def after_commit(repo: Repo) -> bool:
    """Start a detached `git gc --auto` when loose objects passed LOOSE_LIMIT; True if started."""
    if os.environ.get("GITTRACK_NO_GC") or loose_estimate(repo) < LOOSE_LIMIT:
        return False
    try:
        subprocess.Popen(
            [
                "git",
                "-c",
                f"gc.auto={LOOSE_LIMIT}",
                "-c",
                "gc.autoDetach=false",
                "gc",
                "--auto",
                "--quiet",
            ],
            cwd=repo.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the run's end; Ctrl-C does not reach it
        )
    except OSError:
        return False
    return True
