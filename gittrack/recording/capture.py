"""What a run ran with: click parameters, environment, and its stdout/stderr, tee'd to a log."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import threading
from pathlib import Path
from typing import IO, Any

import click

from .._version import __version__
from ..store import staging
from . import scheduler

LOG_LIMIT = 1 << 20  # bytes kept of each stream; the rest is counted and marked as truncated


def click_params(ctx: click.Context) -> tuple[dict[str, Any], dict[str, str]]:
    """Every parameter of the command with its native value, and where each value came from."""
    params: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for param in ctx.command.params:
        if not param.name or param.expose_value is False:
            continue
        value = ctx.params.get(param.name)
        params[param.name] = value
        source = ctx.get_parameter_source(param.name)
        sources[param.name] = source.name.lower() if source else "default"
    return params, sources


RESERVED_ENV = frozenset(
    {"python", "implementation", "platform", "host", "user", "gittrack", "packages"}
) | frozenset(scheduler.SCHEDULERS)


def environment() -> dict[str, Any]:
    """Interpreter, platform, host and batch job; the packages digest comes from `packages_listing`."""
    uname = os.uname()
    libc = ""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    # platform.platform() reads the interpreter binary to find the libc: ~5 ms, so not that
    system = "-".join(
        p for p in (uname.sysname, uname.release, uname.machine, libc.replace(" ", "")) if p
    )
    return {
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "platform": system,
        "host": staging.hostname(),
        "user": os.environ.get("USER") or os.environ.get("USERNAME", ""),
        "gittrack": __version__,
        **scheduler.facts(),  # [env.slurm]: job id, array index, partition, node, cores, memory
    }


def packages_listing(cache_dir: Path | None = None) -> str:
    """Installed distributions as sorted `name==version` lines (what `pip freeze` shows).

    Scanning every distribution costs ~100 ms in a large environment, so the listing is cached
    under a key made of the interpreter prefix and the modification times of the site-packages
    folders on the import path, which change whenever a package is installed, upgraded or removed.
    """
    if cache_dir is None:
        return _scan_packages()
    key_parts = [sys.prefix]
    for entry in sys.path:
        if not entry.endswith(("site-packages", "dist-packages")):
            continue  # the script's own folder changes often and holds no installed packages
        with contextlib.suppress(OSError):
            key_parts.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:24]
    cached = cache_dir / f"packages-{key}.txt"
    with contextlib.suppress(OSError):
        return cached.read_text()
    listing = _scan_packages()
    with contextlib.suppress(OSError):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(listing)
        os.replace(tmp, cached)
    return listing


def _scan_packages() -> str:
    from importlib import metadata

    lines = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def packages_digest(listing: str) -> str:
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


class BoundedLog:
    """A log file that keeps the first `limit` bytes and counts what it drops."""

    def __init__(self, path: Path, limit: int = LOG_LIMIT) -> None:
        self.path = path
        self.limit = limit
        self.written = 0
        self.dropped = 0
        self._fh = path.open("ab", buffering=0)
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._fh.closed:
                return  # a child process outlived the run: what it writes now is not kept
            room = self.limit - self.written
            if room > 0:
                self._fh.write(data[:room])
                self.written += min(room, len(data))
            self.dropped += max(0, len(data) - max(room, 0))

    def close(self) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if self.dropped:
                self._fh.write(
                    f"\n[gittrack: output truncated: {self.dropped} more bytes were not kept "
                    f"(limit {self.limit} bytes)]\n".encode()
                )
            self._fh.close()


class Tee(io.TextIOBase):
    """A text stream that writes through to the terminal and into a bounded log."""

    def __init__(self, stream: IO[str], log: BoundedLog) -> None:
        self._stream = stream
        self._log = log

    def write(self, text: str) -> int:
        self._log.write(text.encode("utf-8", "replace"))  # logged before anyone can see it
        self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


class FdTee:
    """Tees a file descriptor (1 or 2) through a pipe, so that child processes are captured too.

    Used when the stream is not a terminal (batch jobs, workers, redirected output): replacing a
    terminal by a pipe would change what programs see from isatty().
    """

    def __init__(self, fd: int, log: BoundedLog) -> None:
        self.fd = fd
        self.log = log
        self.saved = os.dup(fd)
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        self._read_end = read_end
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self._read_end, 1 << 16)
            except OSError:
                return
            if not data:
                return
            self.log.write(data)  # first: whoever sees the output may kill us right after
            view = memoryview(data)
            with contextlib.suppress(OSError):
                while view:
                    view = view[os.write(self.saved, view) :]

    def stop(self) -> None:
        os.dup2(self.saved, self.fd)  # closes our write end of the pipe
        self._thread.join(timeout=2)  # a child still running may hold the pipe open
        if not self._thread.is_alive():
            os.close(self._read_end)
            os.close(self.saved)


def _fd_capturable(stream: Any, fd: int) -> bool:
    """Whether `stream` writes to file descriptor `fd`, which is not a terminal."""
    if os.environ.get("GITTRACK_CAPTURE", "") == "python":
        return False
    if threading.current_thread() is not threading.main_thread():
        return False  # e.g. a Dask worker thread: the descriptors are the whole process's
    try:
        return stream.fileno() == fd and not os.isatty(fd)
    except (AttributeError, OSError, ValueError):
        return False


class OutputCapture:
    """Tees standard output and error into stdout.log and stderr.log for the run's duration.

    Where a stream is a file or pipe (batch jobs, workers), its file descriptor is captured, so
    the output of child processes (a simulation engine run with subprocess) is kept too; on a
    terminal, and under test runners, the Python streams are tee'd instead.
    """

    def __init__(self, folder: Path, limit: int | None = None) -> None:
        limit = LOG_LIMIT if limit is None else limit
        self.logs = {
            "stdout": BoundedLog(folder / "stdout.log", limit),
            "stderr": BoundedLog(folder / "stderr.log", limit),
        }
        self._saved = (sys.stdout, sys.stderr)
        self._fd_tees: list[FdTee] = []
        for name, fd in (("stdout", 1), ("stderr", 2)):
            stream = getattr(sys, name)
            if _fd_capturable(stream, fd):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
                self._fd_tees.append(FdTee(fd, self.logs[name]))
            else:
                setattr(sys, name, Tee(stream, self.logs[name]))

    def stop(self) -> dict[str, Any]:
        """Restore the streams; returns the `[logs]` table of the record."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = self._saved
        for tee in self._fd_tees:
            tee.stop()
        info: dict[str, Any] = {}
        for name, log in self.logs.items():
            log.close()
            info[name] = log.path.name
            if log.dropped:
                info[f"{name}_truncated"] = log.dropped
        return info
