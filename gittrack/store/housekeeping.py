"""Keeping the repository small: roll small packs and loose objects up, off the hot path.

A run writes its new objects as one small pack (packs.py; snapshots and other writers may leave
loose objects). After a run is committed, `after_commit` counts the packs (one directory
listing) and estimates the loose objects the way git does (one of the 256 fan-out folders, times
256) and, past a threshold, starts `git repack -d --geometric=2` and then `git gc --auto`,
detached in their own session: the run does not wait. A geometric repack merges the small packs
(and the loose objects) into one with deltas, and bigger packs only once the small ones add up
to them, so each object is rewritten a logarithmic number of times. Neither command prunes
unreachable objects younger than git's expiry (two weeks by default), and a repack keeps every
object of the packs it merges, so both are safe beside concurrent writers. One housekeeping
process runs at a time: it holds an flock on `.git/gittrack/housekeeping.lock` until it ends.
"""

from __future__ import annotations

import errno
import fcntl
import os

from .objects import Repo

LOOSE_LIMIT = 1024  # loose objects that make packing worth it (git's own default is 6,700)
PACK_LIMIT = 24  # small packs (about one a run) that make a roll-up worth it
SAMPLE = "17"  # the fan-out folder git itself samples
COMMAND = "git repack -d -q --geometric=2 && git -c gc.autoDetach=false gc --auto --quiet"


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


def pack_count(repo: Repo) -> int:
    """How many packs the repository has (those of other writers included)."""
    try:
        names = os.listdir(repo.common_dir / "objects" / "pack")
    except OSError:
        return 0
    return sum(1 for name in names if name.endswith(".pack"))


def _limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def loose_limit() -> int:
    """LOOSE_LIMIT, or GITTRACK_GC_LOOSE when set to a whole number (0 turns packing off)."""
    return _limit("GITTRACK_GC_LOOSE", LOOSE_LIMIT)


def pack_limit() -> int:
    """PACK_LIMIT, or GITTRACK_GC_PACKS when set to a whole number."""
    return max(2, _limit("GITTRACK_GC_PACKS", PACK_LIMIT))


def due(repo: Repo) -> bool:
    """Whether the packs or loose objects passed their limits (packing not turned off)."""
    limit = loose_limit()
    if limit == 0:
        return False
    if pack_count(repo) > pack_limit():
        return True
    return loose_estimate(repo, exact=limit < 1024) >= limit


def after_commit(repo: Repo) -> bool:
    """Start a detached roll-up when the limits are passed and none runs; True if started."""
    if not due(repo):
        return False
    try:
        fd = os.open(repo.state_dir / "housekeeping.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False  # another roll-up is running
        import subprocess  # a roll-up is due: rarely

        subprocess.Popen(
            # the lock's descriptor goes with the child: released when the roll-up ends
            ["sh", "-c", COMMAND],
            cwd=repo.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,  # survives the run's end; Ctrl-C does not reach it
        )
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
