"""Keeping the repository small: pack loose objects once enough have piled up, off the hot path.

Every run writes a handful of loose objects (blobs, trees, a commit), each taking a filesystem
block of its own. After a run is committed, `after_commit` estimates the number of loose objects
the way git does (one of the 256 fan-out folders, times 256: a single directory listing) and,
past a threshold, starts `git repack -d` (an incremental pack of the reachable loose objects)
and then `git gc --auto` (which merges packs once there are many), detached in their own
session: the run does not wait. Neither prunes unreachable objects younger than git's expiry
(two weeks by default), so both are safe beside concurrent writers.
"""

from __future__ import annotations

import os
import subprocess

from .objects import Repo

LOOSE_LIMIT = 1024  # loose objects that make packing worth it (git's own default is 6,700)
SAMPLE = "17"  # the fan-out folder git itself samples


def loose_estimate(repo: Repo, exact: bool = False) -> int:
    """About how many loose objects the repository holds (one folder listed, times 256).

    `exact` counts every fan-out folder instead (for small limits, where a sample misleads).
    """
    objects = repo.common_dir / "objects"
    folders = [f"{i:02x}" for i in range(256)] if exact else [SAMPLE]
    found = 0
    for name in folders:
        try:
            found += len(os.listdir(objects / name))
        except OSError:
            continue
    return found if exact else found * 256


def loose_limit() -> int:
    """LOOSE_LIMIT, or GITTRACK_GC_LOOSE when set to a whole number (0 turns packing off)."""
    raw = os.environ.get("GITTRACK_GC_LOOSE", "").strip()
    return int(raw) if raw.isdigit() else LOOSE_LIMIT


def after_commit(repo: Repo) -> bool:
    """Start a detached repack when loose objects passed the limit; True if started."""
    limit = loose_limit()
    if limit == 0 or loose_estimate(repo, exact=limit < 1024) < limit:
        return False
    try:
        subprocess.Popen(
            # pack the loose objects into one new pack (reachable ones only: objects a run is
            # writing right now stay loose), then let git merge packs once there are many
            ["sh", "-c", "git repack -d -q && git -c gc.autoDetach=false gc --auto --quiet"],
            cwd=repo.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the run's end; Ctrl-C does not reach it
        )
    except OSError:
        return False
    return True
