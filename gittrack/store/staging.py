"""Runs staged under `.git/gittrack/running/<id>/` while they execute: read, judged alive or died.

A run writes its partial record, logs and a heartbeat there; a process killed before its commit
leaves only this folder. Reading it never writes: committing a died run is recording/died.py's.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ..model.record import RunRecord
from .objects import Repo
from .procs import pid_alive

HEARTBEAT_S = 10.0
STALE_S = 6 * HEARTBEAT_S  # a heartbeat older than this means the process is gone


def hostname() -> str:
    """This machine's name (what socket.gethostname() says, without importing socket)."""
    return os.uname().nodename


def folder(repo: Repo) -> Path:
    return repo.state_dir / "running"


def any_staged(repo: Repo) -> bool:
    """Whether any run is staged in this repository (one directory listing)."""
    try:
        with os.scandir(folder(repo)) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def remove(path: Path) -> None:
    """Remove a staging folder and what it holds, ignoring errors (shutil.rmtree without
    importing shutil, which brings bz2 and lzma along)."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(root, name))
        for name in dirs:
            with contextlib.suppress(OSError):
                full = os.path.join(root, name)
                if os.path.islink(full):
                    os.unlink(full)
                else:
                    os.rmdir(full)
    with contextlib.suppress(OSError):
        os.rmdir(path)


def stale_runs(repo: Repo) -> list[tuple[RunRecord, str]]:
    """Runs staged locally: (record, "running" or "died"), judged by pid and heartbeat.

    A died run's record says so: no exit code, `finished` when it was last seen alive.
    """
    running = folder(repo)
    if not running.is_dir():
        return []
    host = hostname()
    found = []
    for entry in sorted(running.iterdir()):
        try:
            record = RunRecord.from_toml((entry / "run.toml").read_bytes(), entry.name)
        except (OSError, ValueError):
            continue
        beat = heartbeat(entry)
        if beat is None:
            continue
        alive = time.time() - beat["time"] < STALE_S
        if beat["host"] == host:
            alive = pid_alive(beat["pid"])
        if not alive:
            record.mark_died(last_seen(repo, entry, beat))
        found.append((record, "running" if alive else "died"))
    return found


def run_of_process(repo: Repo, pid: int) -> str:
    """The id of the run staged by process `pid` of this host, or ""."""
    running = folder(repo)
    host = hostname()
    for entry in sorted(running.iterdir()) if running.is_dir() else ():
        beat = heartbeat(entry)
        if beat is not None and beat["host"] == host and beat["pid"] == pid:
            return entry.name
    return ""


def heartbeat(entry: Path) -> dict[str, Any] | None:
    """A staged run's heartbeat as {"pid": int, "host": str, "time": float}; None when it has
    none yet. What is damaged in it reads as a run never seen alive, on no host."""
    import json  # reading only: a run writes its heartbeat without json

    try:
        beat = json.loads((entry / "heartbeat").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        beat = {}
    if not isinstance(beat, dict):
        beat = {}
    pid, host, seen = beat.get("pid"), beat.get("host"), beat.get("time")
    if not isinstance(seen, int | float) or isinstance(seen, bool) or seen != seen:
        seen = 0.0
    return {
        "pid": pid if type(pid) is int else -1,
        "host": host if isinstance(host, str) else "",
        "time": float(seen),
    }


def last_seen(repo: Repo, entry: Path, beat: dict[str, Any]) -> float:
    """When a staged run was last alive: its last heartbeat, or later the last thing it wrote
    (its logs, a file in its output folder such as the values `gittrack.log` appends)."""
    from .project import outputs_root

    seen = float(beat.get("time", 0))
    paths = [entry / "stdout.log", entry / "stderr.log"]
    outputs = outputs_root(repo) / entry.name
    with contextlib.suppress(OSError):
        paths += [outputs, *outputs.iterdir()]  # one level: a folder's time covers its files
    for path in paths:
        with contextlib.suppress(OSError):
            seen = max(seen, path.stat().st_mtime)
    return min(seen, time.time())  # a file dated in the future (copied with its times) is not
