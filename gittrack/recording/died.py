"""Committing runs whose process is gone as `died`, exactly once, keeping what they wrote.

Readers only show such runs (from their staging folder); the next writer (a run ending, a sweep,
`push`, `gittrack doctor`) commits them. A non-blocking lock on the staging folder picks one
writer among concurrent ones, and the commit itself is skipped when the branch already holds
the run, so a died run is committed once whatever runs at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from .. import store
from ..model.record import RunRecord
from ..store import reflock, staging


def record_died(
    repo: store.Repo, *, skip: str = "", exits: Mapping[int, int] | None = None
) -> list[str]:
    """Commit every staged run whose process is gone (except `skip`); returns their ids.

    `exits` gives the exit status of processes whose parent saw them end (-N: killed by signal
    N): a run of such a process records it as its `exit_code`.
    """
    running = staging.folder(repo)
    if not running.is_dir() or not any(e.name != skip for e in running.iterdir()):
        return []
    reflock.clear_dead(repo)  # a process killed while it moved the branch left its ref locks
    recorded = []
    host = staging.hostname()
    for record, state in staging.stale_runs(repo):
        if state != "died" or record.id == skip:
            continue
        folder = running / record.id
        with _claimed(folder) as mine:
            if not mine:
                continue  # another writer is committing it right now
            beat = staging.heartbeat(folder)
            if beat is None:
                continue  # committed and removed by another writer meanwhile
            silent = time.time() - beat["time"]
            if beat["host"] != host and silent < 10 * staging.STALE_S:
                continue  # another host's run: shown as died, committed only when long silent
            if exits and beat["host"] == host and beat["pid"] in exits:
                record.exit_code = exits[beat["pid"]]
            if _commit_died(repo, record, folder):
                recorded.append(record.id)
            shutil.rmtree(folder, ignore_errors=True)
    return recorded


def _commit_died(repo: store.Repo, record: RunRecord, folder: Path) -> bool:
    if store.read_record_bytes(repo, record.id) is not None:
        return False
    if record.status != "died":  # not judged by stale_runs: it ends when last seen alive
        record.mark_died(staging.last_seen(repo, folder, staging.heartbeat(folder) or {}))
    if isinstance(job := record.env.get("slurm"), dict) and not record.error:
        from .scheduler import slurm_outcome

        if reason := slurm_outcome(job):  # e.g. killed over its memory limit
            record.error = {"type": "SlurmJobEnded", "message": reason}
    files: dict[str, Path | bytes] = {
        n: folder / n for n in ("stdout.log", "stderr.log") if (folder / n).exists()
    }
    record.logs = {n.removesuffix(".log"): n for n in files}
    from . import outputs

    outputs.finalize_died(repo, record, folder, files)
    return bool(store.write_run(repo, record, files, if_absent=True))


@contextlib.contextmanager
def _claimed(folder: Path) -> Iterator[bool]:
    """Hold a non-blocking lock on a staging folder; yields False when another process has it."""
    try:
        fd = os.open(folder / ".claim", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)
