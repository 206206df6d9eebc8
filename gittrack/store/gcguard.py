"""Holding `git gc` off while new objects are not yet reachable from a ref.

`git gc --prune=now` deletes every loose object that no ref reaches, however new: a run
writing its objects, or git writing a code snapshot's, loses them when a gc prunes between
the write and the ref update. git's own guard is `gc.pid`: a gc refuses to start while the
process it names is alive ("gc is already running"), and ignores it once that process is
gone. So a writer waits for a running gc to end, then names itself in `gc.pid` for the few
milliseconds until its ref has moved; a killed writer therefore never blocks gc. Writers
of several processes list themselves in `.git/gittrack/holds/`, so that the last to finish
removes `gc.pid`. Changes to both happen under `gc.pid.lock`, as in git.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from .procs import pid_alive
from .shared import adjust

P = ParamSpec("P")
R = TypeVar("R")

STALE_S = 30.0  # a gc holds gc.pid.lock for microseconds, a writer for milliseconds
WAIT_S = 120.0  # the longest we wait for a running gc before writing unguarded
_LOCK = threading.Lock()
_HOLDS: dict[Path, int] = {}  # common dir -> how many writers of this process hold it off


def _jitter() -> float:
    return int.from_bytes(os.urandom(2), "big") / 65536


def _gc_running(common_dir: Path) -> bool:
    """Whether a `git gc` of this machine is running (as its gc.pid says) right now."""
    pidfile = common_dir / "gc.pid"
    try:
        fields = pidfile.read_text().split()
        if fields[2:] == ["gittrack"]:
            return False  # another writer's hold
        if time.time() - pidfile.stat().st_mtime > 12 * 3600:
            return False  # git ignores a gc.pid this old too
        pid, host = int(fields[0]), fields[1]
    except (OSError, ValueError, IndexError):
        return False
    if host != os.uname().nodename:
        return False  # another host's gc on a shared disk: it cannot be waited for here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(common_dir: Path) -> Iterator[bool]:
    """git's gc.pid.lock, held for microseconds; yields False when it cannot be taken."""
    lock = common_dir / "gc.pid.lock"
    deadline = time.monotonic() + 10
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > STALE_S:
                    lock.unlink()
            if time.monotonic() > deadline:
                yield False
                return
            time.sleep(0.001 + _jitter() * 0.004)
        except OSError:
            yield False  # a read-only repository: nothing will be written anyway
            return
    os.close(fd)
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


def _holders(folder: Path) -> list[int]:
    """Processes holding gc off now (entries of dead ones are removed)."""
    alive = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.isdigit() and pid_alive(int(entry.name)):
                alive.append(int(entry.name))
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
    return alive


def _name_in_pidfile(common_dir: Path, pid: int) -> None:
    tmp = common_dir / f"gc.pid.{pid}.tmp"
    tmp.write_text(f"{pid} {os.uname().nodename} gittrack\n")
    os.replace(tmp, common_dir / "gc.pid")


def _acquire(common_dir: Path) -> bool:
    """Name this process in gc.pid once no gc runs; False when that cannot be done."""
    holds = common_dir / "gittrack" / "holds"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with _locked(common_dir) as locked:
            if not locked:
                return False
            if not _gc_running(common_dir):
                try:
                    if not holds.is_dir():
                        holds.mkdir(parents=True, exist_ok=True)
                        adjust(common_dir, holds)
                    (holds / str(os.getpid())).touch()
                    _name_in_pidfile(common_dir, os.getpid())
                except OSError:
                    return False
                return True
        time.sleep(0.02 + _jitter() * 0.05)
    return False


def _release(common_dir: Path) -> None:
    """Leave gc.pid to another writer still holding gc off, or remove it when none is left."""
    holds = common_dir / "gittrack" / "holds"
    with _locked(common_dir):
        with contextlib.suppress(OSError):
            (holds / str(os.getpid())).unlink()
        others = _holders(holds)
        with contextlib.suppress(OSError):
            named = int((common_dir / "gc.pid").read_text().split()[0])
            if named in others:
                return
            if others:
                _name_in_pidfile(common_dir, others[0])
            elif named == os.getpid() or not pid_alive(named) or _is_ours(common_dir):
                (common_dir / "gc.pid").unlink()


def _is_ours(common_dir: Path) -> bool:
    """Whether gc.pid was written by gittrack (not by a running gc)."""
    with contextlib.suppress(OSError):
        return (common_dir / "gc.pid").read_text().rstrip().endswith(" gittrack")
    return False


@contextlib.contextmanager
def holding_off_gc(common_dir: Path) -> Iterator[None]:
    """No `git gc` starts (and none is running) inside this block, in any process."""
    with _LOCK:
        held = _HOLDS.get(common_dir, 0)
        if held == 0 and not _acquire(common_dir):
            held = -1  # unguarded: ObjectWriter.ensure() still repairs what goes missing
        else:
            _HOLDS[common_dir] = held + 1
    try:
        yield
    finally:
        if held >= 0:
            with _LOCK:
                _HOLDS[common_dir] -= 1
                if _HOLDS[common_dir] == 0:
                    del _HOLDS[common_dir]
                    _release(common_dir)


def guarded(func: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Run `func(repo, ...)` holding `git gc` off for the repository (see holding_off_gc)."""

    @functools.wraps(func)
    def inner(repo: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with holding_off_gc(repo.common_dir):
            return func(repo, *args, **kwargs)

    return inner
