"""Local object folders (the cache, a local-folder remote) written without importing DVC.

DVC 3's layout is plain files: object `md5` lives at `<root>/<md5[:2]>/<md5[2:]>`, read-only.
A run's file outputs take the fast way: the bytes are copied into a local-folder remote while
the output is being written (`RemoteTee`) or hashed (`Prepush`), around the page cache where
the filesystem allows it (`ColdCopy`), and linked into the cache (reflink, hardlink, else copy)
here, so a run with file outputs never pays DVC's import time. Folders, cloud remotes and
everything else go through dvc-data (`datacache.py`).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .safefs import tmp_name

READ_ONLY = 0o444  # how DVC protects the files of an object folder
PREPUSH_MIN_BYTES = 16 << 20  # smaller outputs are pushed the ordinary way
FICLONE = 0x40049409  # Linux ioctl: make `dest` share `src`'s blocks (btrfs, XFS, ...)


BLOCK = 1 << 20  # ColdCopy writes whole blocks from a page-aligned buffer at block offsets
SLOW_BYTES_S = 512 << 20  # a cold copy slower than this (than md5, about) goes buffered instead
JUDGED_AFTER = 64  # ... judged by the median time of this many first blocks (a busy machine
# delays some writes many times over; a slow disk delays every one)


class ColdCopy:
    """A file written around the page cache (O_DIRECT) where the filesystem allows it.

    For a copy nobody reads soon, such as an object pushed to a local-folder remote: it costs
    the writer no page-cache pages (the dearest part of writing a big file, where memory is
    scarce or, on a virtual machine, handed back to the host) and evicts nothing. Bytes are
    gathered in a page-aligned buffer and written in whole blocks; the tail, and everything
    after the filesystem refuses direct writes or writes them slower than `SLOW_BYTES_S` (a
    slow disk, where the page cache lets the run go on sooner), go the ordinary buffered way,
    so the bytes are the same whichever way they went.
    """

    def __init__(self, path: Path, *, direct: bool = True) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        odirect = getattr(os, "O_DIRECT", 0) if direct else 0
        self.direct = False
        if odirect:
            with contextlib.suppress(OSError):
                self._fd = os.open(path, flags | odirect, 0o666)
                self.direct = True
        if not self.direct:
            self._fd = os.open(path, flags, 0o666)
        self.closed = False
        self._buf = mmap.mmap(-1, BLOCK if self.direct else mmap.PAGESIZE)  # page-aligned
        self._view = memoryview(self._buf)
        self._fill = 0
        self._block_s: list[float] = []  # the first blocks' write times

    def write(self, data: Any) -> int:
        """Write all of `data` (any buffer); returns its length in bytes."""
        view = memoryview(data).cast("B")
        done = 0
        while self.direct and done < len(view):
            n = min(len(view) - done, BLOCK - self._fill)
            self._view[self._fill : self._fill + n] = view[done : done + n]
            self._fill += n
            done += n
            if self._fill == BLOCK:
                self._flush_block()
        self._write_all(view[done:])
        return len(view)

    def _flush_block(self) -> None:
        with self._view[: self._fill] as block:
            self._fill, written = 0, 0
            start = time.perf_counter()
            try:
                written = os.write(self._fd, block)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: direct writes refused; others are real
                    raise
            slow = False
            if len(self._block_s) < JUDGED_AFTER:
                self._block_s.append(time.perf_counter() - start)
                if len(self._block_s) == JUDGED_AFTER:
                    slow = sorted(self._block_s)[JUDGED_AFTER // 2] * SLOW_BYTES_S > BLOCK
            if written < len(block) or slow:
                self._buffered()
                self._write_all(block[written:])

    def _buffered(self) -> None:
        """From here on through the page cache (any offset and length will do)."""
        if self.direct:
            import fcntl  # only ever direct on Linux-like systems, which have it

            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))
            self.direct = False

    def _write_all(self, view: memoryview) -> None:
        while len(view):
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        """Write the tail and close the file (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._fill:
                self._buffered()
                self._write_all(self._view[: self._fill])
        finally:
            os.close(self._fd)
            self._view.release()
            with contextlib.suppress(BufferError):  # a slice held by a traceback: freed later
                self._buf.close()


def object_path(root: Path, md5: str) -> Path:
    """Where object `md5` lives in an object folder (`files/md5` of a cache or remote)."""
    return root / md5[:2] / md5[2:]


def reflink(src: Path, dest: Path) -> None:
    """Make `dest` a copy-on-write clone of `src`; OSError where the filesystem cannot."""
    if not sys.platform.startswith("linux"):
        raise OSError(f"reflinks are not supported on {sys.platform}")
    import fcntl

    with open(src, "rb") as fin, open(dest, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError:
            fout.close()
            with contextlib.suppress(OSError):
                dest.unlink()
            raise


def add_object(root: Path, src: Path, md5: str, *, link: bool) -> bool:
    """Put file `src` into the object folder as `md5` unless there; True when it was added.

    A reflink first, then (if `link`) a hard link, else a copy, under a temporary name renamed
    into place, so concurrent writers and a killed process never leave half an object.
    """
    dest = object_path(root, md5)
    if dest.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / tmp_name()
    try:
        try:
            reflink(src, tmp)
        except OSError:
            linked = False
            if link:
                with contextlib.suppress(OSError):
                    os.link(src, tmp)
                    linked = True
            if not linked:
                shutil.copyfile(src, tmp)
        os.chmod(tmp, READ_ONLY)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return True


class RemoteTee:
    """A copy of an output being written, made into a local-folder remote at the same time.

    The writer hands it every buffer (`HashingWriter(tee=...)`); once the output is complete
    and its md5 known, `finish` renames the copy to its object path, so the push at the run's
    end finds it there. Any failure only drops the copy: the ordinary push then sends the
    object, or the run is recorded as not pushed and `gittrack push` sends it later.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.tmp = root / tmp_name()
        self.fh = ColdCopy(self.tmp)  # closed by finish or drop

    @classmethod
    def open(cls, root: Path | None, size: int) -> RemoteTee | None:
        """A tee into the object folder `root` of a local remote, or None when not worth it."""
        if root is None or size < PREPUSH_MIN_BYTES or not root.parent.parent.is_dir():
            return None
        try:
            return cls(root)
        except OSError:
            return None

    def finish(self, md5: str, size: int, failed: bool) -> bool:
        """Rename the copy to object `md5` if it is whole; True when the remote has the object."""
        try:
            self.fh.close()
            if not failed and self.tmp.stat().st_size == size:
                dest = object_path(self.root, md5)
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.chmod(self.tmp, READ_ONLY)
                    os.replace(self.tmp, dest)
                return True
        except OSError:
            pass
        finally:
            self.drop()
        return False

    def drop(self) -> None:
        """Close and delete the copy (a failed write, or once it has been renamed)."""
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


class Prepush:
    """Copy a finished file into a local-folder remote under a temporary name while it is hashed.

    Once the md5 is known the copy is renamed to its object path, so the push that follows
    finds it there; any failure only drops the copy, and the ordinary push reports it.
    """

    def __init__(self, root: Path, src: Path) -> None:
        self.root = root
        self.tmp = root / tmp_name()
        self.failed = False
        self.thread = threading.Thread(target=self._copy, args=(src,), daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, root: Path | None, src: Path, md5: str) -> Prepush | None:
        """A copy of `src` into the object folder `root` of a local remote, when worth it."""
        if root is None:
            return None
        try:
            if src.stat().st_size < PREPUSH_MIN_BYTES or (md5 and object_path(root, md5).exists()):
                return None
        except OSError:
            return None
        return cls(root, src)

    def _copy(self, src: Path) -> None:
        try:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb", buffering=0) as fin:
                out = ColdCopy(self.tmp)
                try:
                    while chunk := fin.read(BLOCK):
                        out.write(chunk)
                finally:
                    out.close()
        except OSError:
            self.failed = True

    def finish(self, md5: str, size: int = -1) -> None:
        """Wait for the copy; rename it to object `md5` when whole, else drop it."""
        self.thread.join()
        try:
            complete = size < 0 or self.tmp.stat().st_size == size
            dest = object_path(self.root, md5) if md5 else None
            if dest is not None and complete and not self.failed and not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self.tmp, READ_ONLY)
                os.replace(self.tmp, dest)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            self.tmp.unlink()
