"""Reading the runs of a branch tip out of git for the index, with a bounded memory footprint.

A full build reads every run.toml through one `git cat-file --batch --buffer` process fed with
blob ids in commit order: a pack stores those blobs as deltas of each other in about that
order, so git resolves each from the one before it (in random order git either keeps the
whole pack in its delta cache or re-inflates whole chains). The blob ids come from one
`git ls-tree -r` (`store.list_run_ids`), the commit of each run from one `git log` read while
the blobs stream.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import IO

from .. import store
from ..model.record import MAX_RECORD_BYTES

LOG_FORMAT = "--format=%H %(trailers:key=Run-Id,valueonly,separator=%x20)"

# (run id, the commit that recorded it, run.toml bytes: None when missing, its size when over
# MAX_RECORD_BYTES, read past and never held)
Found = tuple[str, str, bytes | int | None]


def _git(repo: store.Repo, *args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", *store.READ_LIMITS, *args],
        cwd=repo.root,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def read_runs(
    repo: store.Repo, blobs: dict[str, str], rev_range: str, bare: Iterable[str] = ()
) -> Iterator[Found]:
    """(run id, commit, run.toml) of every run in `blobs` (each a blob id or any object name
    `git cat-file` reads, e.g. `<tip>:<path>`), in the commit order of `rev_range` (newest
    first; runs no commit there names come last), then `bare` folders with None: one `git log`
    and one `git cat-file` process, both streamed. A run.toml over MAX_RECORD_BYTES is read
    past a chunk at a time, its size in its place."""
    log = _git(repo, "log", LOG_FORMAT, rev_range)
    cat = _git(repo, "cat-file", "--batch", "--buffer", stdin=True)
    assert log.stdout and cat.stdout and cat.stdin
    commits: dict[str, str] = {}
    pending: collections.deque[str] = collections.deque()
    feeder = threading.Thread(
        target=_feed, args=(log.stdout, cat.stdin, blobs, commits, pending), daemon=True
    )
    feeder.start()
    out = cat.stdout
    done = False
    try:
        for _ in range(len(blobs)):
            header = out.readline()
            parts = header.split()
            if not header:
                raise store.GitError("git cat-file stopped unexpectedly")
            run_id = pending.popleft()
            if len(parts) != 3:  # "<id> missing": an object the pack lacks
                yield run_id, commits.get(run_id, ""), None
                continue
            size = int(parts[2])
            if size > MAX_RECORD_BYTES:  # damage or hostile: it costs only itself
                store.skip_exact(out, size)
                out.read(1)
                yield run_id, commits.get(run_id, ""), size
                continue
            data = out.read(size)
            out.read(1)
            yield run_id, commits.get(run_id, ""), data
        done = True
    finally:
        if not done:  # left early: stop both, so that the feeder cannot block on a full pipe
            cat.kill()
            log.kill()
        feeder.join()
        cat.stdout.close()
        cat.wait()
        log.wait()
    for run_id in bare:
        yield run_id, commits.get(run_id, ""), None


def _feed(
    log: IO[bytes],
    cat: IO[bytes],
    blobs: dict[str, str],
    commits: dict[str, str],
    pending: collections.deque[str],
) -> None:
    """Write the blob ids to cat-file in the order `git log` names their runs (a thread)."""
    try:
        for line in log:
            parts = line.split()
            for name in parts[1:]:  # the Run-Id trailers: one a run the commit recorded
                run_id = name.decode("utf-8", "replace")
                if run_id in commits:
                    continue  # newest first: the latest commit of a run is kept
                commits[run_id] = parts[0].decode("ascii", "replace")
                blob = blobs.get(run_id)
                if blob is not None:
                    pending.append(run_id)
                    cat.write(blob.encode() + b"\n")
        for run_id, blob in blobs.items():
            if run_id not in commits:
                commits[run_id] = ""
                pending.append(run_id)
                cat.write(blob.encode() + b"\n")
    except (BrokenPipeError, ValueError):
        pass  # the reader stopped early (an error): it closes everything
    finally:
        log.close()
        with contextlib.suppress(BrokenPipeError):
            cat.close()
