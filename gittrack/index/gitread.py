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
        for run_id in _new_runs(log, commits):
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


def _new_runs(log: Iterable[bytes], commits: dict[str, str]) -> Iterator[str]:
    """The runs `git log` (LOG_FORMAT lines: a commit, then its Run-Id trailers) names for the
    first time, each put in `commits` with the commit that recorded it: newest first, so the
    latest commit of a run is the one kept."""
    seen: set[str] = set()
    for run_id, commit in _first_commits(log, seen):
        commits[run_id] = commit
        yield run_id


def _first_commits(log: Iterable[bytes], seen: set[str]) -> Iterator[tuple[str, str]]:
    """(run id, commit) for each run `git log` names, the first (latest) time only; `seen`
    collects the ids."""
    for line in log:
        parts = line.split()
        for name in parts[1:]:
            run_id = name.decode("utf-8", "replace")
            if run_id not in seen:
                seen.add(run_id)
                yield run_id, parts[0].decode("ascii", "replace")


Named = tuple[str, str, str | None]  # (run id, the commit that recorded it, run.toml's object)


def ordered(
    repo: store.Repo, blobs: dict[str, str], rev_range: str, bare: Iterable[str] = ()
) -> Iterator[Named]:
    """What `read_runs` gives, in its order, with each run.toml's object name (None for a bare
    folder) instead of its bytes: one `git log`, streamed; the bytes are read by whoever
    decodes them (`BlobReader`, in each worker of a big build).

    `blobs` is emptied as its runs are named, and only the commits of `bare` folders are kept:
    the one process writing a first build of a million runs holds each id once, not in three
    tables.
    """
    bare = list(bare)
    wanted = set(bare)
    bare_commits: dict[str, str] = {}
    log = _git(repo, "log", LOG_FORMAT, rev_range)
    assert log.stdout
    seen: set[str] = set()
    try:
        for run_id, commit in _first_commits(log.stdout, seen):
            blob = blobs.pop(run_id, None)
            if blob is not None:
                yield run_id, commit, blob
            elif run_id in wanted:
                bare_commits[run_id] = commit
    finally:
        log.kill()
        log.stdout.close()
        log.wait()
    rest = list(blobs.items())
    blobs.clear()
    for run_id, blob in rest:  # runs no commit names, in the order they were listed
        yield run_id, "", blob
    for run_id in bare:
        yield run_id, bare_commits.get(run_id, ""), None


class BlobReader:
    """One `git cat-file --batch` process in a repository, reading objects a batch at a time
    (started on first use; `close` stops it)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def read(self, names: list[str | None]) -> list[bytes | int | None]:
        """The bytes of each object named (None: missing, or no name); of an object over
        MAX_RECORD_BYTES, its size (passed over, never held)."""
        wanted = [n for n in names if n is not None and "\n" not in n and "\r" not in n]
        got: dict[str, bytes | int | None] = {}
        if wanted:
            if self.proc is None:
                self.proc = subprocess.Popen(
                    ["git", *store.READ_LIMITS, "cat-file", "--batch"],
                    cwd=self.root,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                )
            proc = self.proc
            assert proc.stdin and proc.stdout
            feeder = threading.Thread(  # a batch's names may be more than a pipe holds
                target=_write_all, args=(proc.stdin, "".join(f"{n}\n" for n in wanted)), daemon=True
            )
            feeder.start()
            try:
                for name in wanted:
                    header = proc.stdout.readline()
                    if not header:
                        raise store.GitError("git cat-file stopped unexpectedly")
                    parts = header.split()
                    if len(parts) != 3:  # "<name> missing"
                        got[name] = None
                        continue
                    size = int(parts[2])
                    if size > MAX_RECORD_BYTES:  # damage or hostile: it costs only itself
                        store.skip_exact(proc.stdout, size)
                        got[name] = size
                    else:
                        got[name] = proc.stdout.read(size)
                    proc.stdout.read(1)
            except BaseException:
                self.close()
                raise
            finally:
                feeder.join()
        return [got.get(n) if n is not None else None for n in names]

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            proc.kill()
            proc.wait()


def _write_all(pipe: IO[bytes], text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        pipe.write(text.encode())
        pipe.flush()
