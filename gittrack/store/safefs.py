"""Files on disk that gittrack does not trust: what it hashes, writes, follows and cleans.

Outputs are written under a partial name until complete, so a killed run never leaves a file
that looks whole; symlinks are followed only to content inside the repository or the run's
output folder; a destination is written only inside its target folder, and temp files of
copies cut short are found by their writer's process or their age. No DVC here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import OutputError

CHUNK = 1 << 20
TMP_PREFIX = ".gittrack-"
PARTIAL = ".partial"  # an output file being written: renamed to its name once complete
STALE_TMP_S = 3600  # a temp file not written for this long belongs to a writer that is gone


# -- hashing and writing --------------------------------------------------------------------


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(md5, size) of a file, streamed in 1 MiB chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            md5.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return md5.hexdigest(), size


THREAD_MIN = 256 << 10  # smaller writes are hashed (and teed) inline: a hand-off costs more


class _Lane:
    """A thread doing one thing to each buffer it is handed while the caller does another."""

    def __init__(self, work: Callable[[memoryview], object]) -> None:
        self._work = work
        self._todo: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._done = threading.Semaphore(0)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (view := self._todo.get()) is not None:
            if self.error is None:
                try:
                    self._work(view)
                except BaseException as exc:  # kept for the writer, which decides
                    self.error = exc
            self._done.release()

    def submit(self, view: memoryview) -> None:
        self._todo.put(view)

    def wait(self) -> None:
        self._done.acquire()

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join()


class Sink(Protocol):
    """Where a HashingWriter copies what it writes (a binary file, a `ColdCopy`)."""

    def write(self, data: Any, /) -> int: ...


class HashingWriter:
    """A binary file opened for writing that hashes what goes through it (hash while writing).

    A large buffer is hashed by a second thread while this one writes it (md5 and file writes
    release the GIL), and copied into `tee` (e.g. a remote's temp file) by a third; `write`
    returns once all are done with the buffer, so the caller may reuse it and nothing is
    buffered on the way. A failing tee is only dropped (`tee_failed`): the output is whole.
    """

    def __init__(self, fh: IO[bytes], tee: Sink | None = None) -> None:
        self._fh = fh
        self._tee = tee
        self.tee_failed = False
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self._lanes: list[_Lane] = []

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.size += len(view)
        if len(view) < THREAD_MIN:
            self.md5.update(view)
            self._tee_write(view)
            return self._fh.write(view)
        if not self._lanes:
            self._lanes = [_Lane(self.md5.update)]
            if self._tee is not None:
                self._lanes.append(_Lane(self._tee_write))
        for start in range(0, len(view), CHUNK):  # each slice read while still in the CPU cache
            piece = view[start : start + CHUNK]
            for lane in self._lanes:
                lane.submit(piece)
            try:
                self._fh.write(piece)
            finally:
                for lane in self._lanes:
                    lane.wait()
            if self._lanes[0].error is not None:
                raise self._lanes[0].error
        return len(view)

    def _tee_write(self, view: memoryview) -> None:
        if self._tee is None or self.tee_failed:
            return
        try:
            self._tee.write(view)
        except Exception:  # a full or vanished remote, a closed file: the copy is dropped
            self.tee_failed = True

    def flush(self) -> None:
        self._fh.flush()

    def close_lanes(self) -> None:
        """End the helper threads (idempotent); the writer stays usable, hashing inline."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.close()

    def __getattr__(self, name: str) -> Any:  # e.g. `closed`, `name`
        return getattr(self._fh, name)


def partial_path(path: Path) -> Path:
    """Where `path` is written until complete (`<name>.partial`): a killed writer leaves it."""
    return path.with_name(path.name + PARTIAL)


@contextlib.contextmanager
def hashing_writer(path: Path, tee: Sink | None = None) -> Iterator[HashingWriter]:
    """Write `path` through a HashingWriter, under its partial name until the write completes.

    A failed write leaves nothing behind; a killed process leaves `<name>.partial`, which
    is never taken for the output itself.
    """
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as fh:
            writer = HashingWriter(fh, tee)
            try:
                yield writer
            finally:
                writer.close_lanes()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def temps_in(folder: Path) -> list[Path]:
    """Temp files of copies cut short in an object store (`files/md5` and its folders).

    gittrack's own (`.gittrack-<host>-<pid>-<token>.tmp`) go as soon as their process is
    gone; DVC's (`.<token>.tmp`), and ours from other hosts, once not written for an hour.
    """
    found = []
    for path in [*folder.glob("*.tmp"), *folder.glob("??/*.tmp")]:
        try:
            idle = time.time() - path.stat().st_mtime
        except OSError:
            continue
        if idle > STALE_TMP_S or _writer_gone(path.name):
            found.append(path)
    return found


def tmp_name() -> str:
    host = re.sub(r"[^A-Za-z0-9.]", "_", _hostname())
    return f"{TMP_PREFIX}{host}-{os.getpid()}-{secrets.token_hex(8)}.tmp"


def _hostname() -> str:
    import socket

    return socket.gethostname() or "host"


def _writer_gone(name: str) -> bool:
    """True when a temp file's name says it was written by a process of this host now gone."""
    match = re.fullmatch(re.escape(TMP_PREFIX) + r"(.+)-(\d+)-[0-9a-f]+\.tmp", name)
    if not match or match.group(1) != re.sub(r"[^A-Za-z0-9.]", "_", _hostname()):
        return False
    try:
        os.kill(int(match.group(2)), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return False


# -- following symlinks and placing files -----------------------------------------------


def link_target(path: Path, within: Path, repo_root: Path) -> Path:
    """The file or folder a symlink points to, when inside the repository or `within`."""
    shown = shown_path(path, within)
    target = Path(os.path.realpath(path))
    if not target.exists():
        raise OutputError(
            f"{shown} is a symlink to {os.readlink(path)}, which does not exist; "
            "write the file itself into the output folder."
        )
    roots = [Path(os.path.realpath(r)) for r in (repo_root, within)]
    if not any(target == r or target.is_relative_to(r) for r in roots):
        raise OutputError(
            f"{shown} is a symlink to {target}, outside the repository and the run's "
            "output folder; copy the file into the output folder instead."
        )
    return target


def folder_files(
    folder: Path,
    rel: tuple[str, ...],
    within: Path,
    repo_root: Path,
    seen: set[str],
    linked: bool,
) -> Iterator[tuple[tuple[str, ...], Path, bool]]:
    """(path parts, file to read, may be hard-linked) for every file of a folder output.

    Symlinks are followed to content inside the repository or `within` (OutputError
    otherwise), whose files are only copied (`linked`); a folder reached again through a
    link is a loop and read once.
    """
    with os.scandir(folder) as found:
        entries = sorted(found, key=lambda e: e.name)
    for entry in entries:
        parts = (*rel, entry.name)
        path = Path(entry.path)
        if entry.is_symlink():
            target = link_target(path, within, repo_root)
            if target.is_dir():
                if str(target) not in seen:
                    yield from folder_files(
                        target, parts, within, repo_root, seen | {str(target)}, True
                    )
            elif target.is_file():
                yield parts, target, False
        elif entry.is_dir():
            real = os.path.realpath(path)
            yield from folder_files(path, parts, within, repo_root, seen | {real}, linked)
        elif entry.is_file():
            yield parts, path, not linked and entry.stat().st_nlink == 1


def shown_path(path: Path, within: Path) -> str:
    """`path` as the user knows it: relative to the output folder when inside it."""
    try:
        return path.relative_to(within).as_posix()
    except ValueError:
        return str(path)


def check_within(dest: Path, within: Path) -> None:
    """OutputError unless `dest` lies inside `within`, once every symlink on the way is followed."""
    base = Path(os.path.realpath(within))
    folder = Path(os.path.realpath(dest.parent))
    if folder != base and not folder.is_relative_to(base):
        raise OutputError(
            f"{dest} is outside {within} (a symbolic link on the way leads to {folder}), "
            "so it was not written; remove the link or check out with --to another folder."
        )


def same_file(src: Path, dest: Path, oid: str) -> bool:
    """True when `dest` holds the cached object `src` (the same file, or the same bytes)."""
    try:
        a, b = src.stat(), dest.stat()
    except OSError:
        return False
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return True
    return a.st_size == b.st_size and hash_file(dest)[0] == oid
