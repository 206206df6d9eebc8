"""Holding `git gc` off while new objects are not yet reachable from a ref.

`git gc --prune=now` deletes every loose object that no ref reaches, however new: a run
writing its objects, or git writing a code snapshot's, loses them when a gc prunes between
the write and the ref update. git's own guard is the `gc.pid` lock: a gc refuses to start
while `gc.pid.lock` exists, and records itself in `gc.pid` while it runs. So a writer waits
for a running gc to end, then holds `gc.pid.lock` for the few milliseconds until its ref has
moved. Every writer of one process shares one hold; a hold left by a killed process is stale
after STALE_S and removed.
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


def _acquire(common_dir: Path) -> bool:
    """Take gc.pid.lock once no gc runs; False when that cannot be done (read-only, timeout)."""
    lock = common_dir / "gc.pid.lock"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime > STALE_S:
                    lock.unlink()
            time.sleep(0.002 + _jitter() * 0.01)
            continue
        except OSError:
            return False  # a read-only repository: nothing will be written anyway
        with contextlib.suppress(OSError):
            os.write(fd, f"{os.getpid()} {os.uname().nodename} gittrack\n".encode())
        os.close(fd)
        if not _gc_running(common_dir):
            return True
        with contextlib.suppress(OSError):
            lock.unlink()
        time.sleep(0.02 + _jitter() * 0.05)
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


def _release(common_dir: Path) -> None:
    """Remove gc.pid.lock if it is still ours (not taken over as stale by another writer)."""
    lock = common_dir / "gc.pid.lock"
    with contextlib.suppress(OSError, IndexError, ValueError):
        if int(lock.read_text().split()[0]) == os.getpid():
            lock.unlink()


def guarded(func: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Run `func(repo, ...)` holding `git gc` off for the repository (see holding_off_gc)."""

    @functools.wraps(func)
    def inner(repo: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with holding_off_gc(repo.common_dir):
            return func(repo, *args, **kwargs)

    return inner
