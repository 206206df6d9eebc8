"""What a run ran with: click parameters, environment, and its stdout/stderr, tee'd to a log."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import click

from .._hashes import sha256
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
        params[param.name] = _file_names(value) if isinstance(param.type, click.File) else value
        source = ctx.get_parameter_source(param.name)
        sources[param.name] = source.name.lower() if source else "default"
    return params, sources


def _file_names(value: Any) -> Any:
    """A click.File value as its file name ("-" for a standard stream): an open file is no
    param value a record can hold."""
    if isinstance(value, list | tuple):
        return [_file_names(v) for v in value]
    name = getattr(value, "name", value)
    return os.fsdecode(name) if isinstance(name, str | bytes) else "-"


RESERVED_ENV = frozenset(
    {"python", "implementation", "platform", "host", "user", "gittrack", "packages"}
) | frozenset(scheduler.SCHEDULERS)


def environment() -> dict[str, Any]:
    """Interpreter, platform, host and batch job; the packages digest is `packages_listing`'s."""
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


def packages_listing(
    cache_dir: Path | None = None, share: Callable[..., None] | None = None
) -> str:
    """Installed distributions as sorted `name==version` lines (what `pip freeze` shows).

    Scanning every distribution costs ~100 ms in a large environment, so the listing is cached
    under a key made of the interpreter prefix and the modification times of the site-packages
    folders on the import path, which change whenever a package is installed, upgraded or removed.
    """
    if cache_dir is None:
        return _scan_packages()
    found = cached_packages(cache_dir)
    if found is not None:
        return found
    cached = _cache_file(cache_dir)
    listing = _scan_packages()
    with contextlib.suppress(OSError):
        fresh = not cache_dir.is_dir()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(listing)
        if share is not None:  # core.sharedRepository
            share(*([cache_dir] if fresh else []), tmp)
        os.replace(tmp, cached)
    return listing


def _cache_file(cache_dir: Path) -> Path:
    """Where the listing of the packages installed now is cached (see packages_listing)."""
    key_parts = [sys.prefix]
    for entry in sys.path:
        if not entry.endswith(("site-packages", "dist-packages")):
            continue  # the script's own folder changes often and holds no installed packages
        with contextlib.suppress(OSError):
            key_parts.append(f"{entry}:{os.stat(entry or '.').st_mtime_ns}")
    key = sha256("\n".join(key_parts).encode()).hexdigest()[:24]
    return cache_dir / f"packages-{key}.txt"


def cached_packages(cache_dir: Path) -> str | None:
    """The cached listing of the packages installed now, or None when it must be scanned."""
    try:
        return _cache_file(cache_dir).read_text()
    except OSError:
        return None


def _scan_packages() -> str:
    from importlib import metadata

    lines = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            lines.add(f"{name}=={dist.version}")
    return "\n".join(sorted(lines, key=str.lower)) + "\n"


def packages_digest(listing: str) -> str:
    return sha256(listing.encode()).hexdigest()[:16]


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
            chunk = memoryview(data)[: max(0, self.limit - self.written)]
            kept = 0
            try:
                while kept < len(chunk):
                    kept += self._fh.write(chunk[kept:]) or 0
            except OSError:  # a full disk: the output is still shown, no longer kept
                self.limit = self.written + kept
            self.written += kept
            self.dropped += len(data) - kept

    def close(self) -> None:
        with self._lock:
            if self._fh.closed:
                return
            if self.dropped:
                with contextlib.suppress(OSError):
                    self._fh.write(
                        f"\n[gittrack: output truncated: {self.dropped} more bytes were not "
                        f"kept (limit {self.limit} bytes)]\n".encode()
                    )
            with contextlib.suppress(OSError):
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


class _Stream:
    """One tee'd descriptor: where it wrote before (`saved`) and what now reads its output."""

    __slots__ = ("fd", "log", "saved", "source", "terminal")

    def __init__(self, fd: int, log: BoundedLog, saved: int, source: int, terminal: bool) -> None:
        self.fd = fd
        self.log = log
        self.saved = saved
        self.source = source  # the read end of the pipe, or the pseudo-terminal's controller side
        self.terminal = terminal


class FdTee:
    """Tees file descriptors (1 and 2) into logs, so that the output of child processes is kept.

    A descriptor on a terminal is given a pseudo-terminal of the same settings and size, so that
    the script and the engines it starts still see a terminal (colours, progress bars); any
    other descriptor (a file, a pipe: batch jobs, workers) a pipe. One thread copies what arrives
    into the log, then to where the descriptor wrote before.
    """

    def __init__(self, streams: list[tuple[int, BoundedLog]]) -> None:
        self._streams: list[_Stream] = []
        try:
            for fd, log in streams:
                self._streams.append(_redirect(fd, log))
        except OSError:
            self._restore()
            self._close()
            raise
        self._previous_winch: Any = None
        if any(s.terminal for s in self._streams):
            self._previous_winch = signal.signal(signal.SIGWINCH, self._resized)
        self._thread = threading.Thread(target=self._pump, name="gittrack-tee", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            self._copy()
        except Exception:  # never leave the program writing into a pipe that nobody reads
            self._restore()

    def _copy(self) -> None:
        import select

        sources = {s.source: s for s in self._streams}
        # poll has no limit on descriptor numbers; macOS's does not work on pseudo-terminals
        poller = select.poll() if hasattr(select, "poll") and sys.platform != "darwin" else None
        if poller is not None:
            for source in sources:
                poller.register(source, select.POLLIN)
        while sources:
            if poller is not None:
                ready = [fd for fd, _ in poller.poll()]
            else:
                ready = select.select(list(sources), [], [])[0]
            for source in sorted(ready, key=lambda r: sources[r].fd):  # stdout first
                stream = sources[source]
                try:
                    data = os.read(source, 1 << 16)
                except OSError:  # EIO: nothing holds the pseudo-terminal open any more
                    data = b""
                if not data:
                    del sources[source]
                    if poller is not None:
                        poller.unregister(source)
                    continue
                stream.log.write(data)  # first: whoever sees the output may kill us right after
                view = memoryview(data)
                with contextlib.suppress(OSError):
                    while view:
                        view = view[os.write(stream.saved, view) :]

    def _resized(self, signum: int, frame: Any) -> None:
        """The terminal was resized: so is the pseudo-terminal standing in for it."""
        for stream in self._streams:
            if stream.terminal:
                _copy_size(stream.saved, stream.source)
        if callable(self._previous_winch):
            self._previous_winch(signum, frame)

    def stop(self) -> None:
        """Put the descriptors back and wait until all they received is copied."""
        _flush_c_stdio()
        self._restore()
        if any(s.terminal for s in self._streams):
            signal.signal(signal.SIGWINCH, self._previous_winch or signal.SIG_DFL)
        self._thread.join(timeout=2)  # a child still running may hold the pipe open
        if not self._thread.is_alive():
            self._close()

    def _restore(self) -> None:
        for stream in self._streams:
            with contextlib.suppress(OSError):
                os.dup2(stream.saved, stream.fd)  # closes our writing end

    def _close(self) -> None:
        for stream in self._streams:
            for fd in (stream.source, stream.saved):
                with contextlib.suppress(OSError):
                    os.close(fd)


def _redirect(fd: int, log: BoundedLog) -> _Stream:
    """Point `fd` at a new pipe, or pseudo-terminal when it is a terminal; returns its stream."""
    terminal = os.isatty(fd) and hasattr(os, "openpty")
    source, writing = os.openpty() if terminal else os.pipe()
    try:
        if terminal:
            _copy_terminal(fd, writing)
        saved = os.dup(fd)
    except OSError:
        os.close(source)
        os.close(writing)
        raise
    os.dup2(writing, fd)
    os.close(writing)
    return _Stream(fd, log, saved, source, terminal)


def _copy_terminal(terminal: int, pty: int) -> None:
    """Give the pseudo-terminal the settings and size of `terminal`, but no output processing.

    Bytes then pass through it unchanged (the log keeps bare newlines), and the real terminal
    translates them as it always does.
    """
    import termios

    with contextlib.suppress(termios.error, OSError):
        attrs = termios.tcgetattr(terminal)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(pty, termios.TCSANOW, attrs)
    _copy_size(terminal, pty)


def _copy_size(terminal: int, pty: int) -> None:
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        fcntl.ioctl(pty, termios.TIOCSWINSZ, fcntl.ioctl(terminal, termios.TIOCGWINSZ, bytes(8)))


def _flush_c_stdio() -> None:
    """Flush C stdio buffers (of an engine linked into this process) while they are tee'd.

    Through ctypes, and only when it is loaded anyway (numpy and engine bindings load it):
    importing it costs ~5 ms.
    """
    ctypes = sys.modules.get("ctypes")
    if ctypes is not None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)


def _fd_capturable(stream: Any, fd: int) -> bool:
    """Whether `stream` writes to file descriptor `fd`, which this process may redirect."""
    if os.environ.get("GITTRACK_CAPTURE", "") == "python":
        return False
    if threading.current_thread() is not threading.main_thread():
        return False  # e.g. a Dask worker thread: the descriptors are the whole process's
    try:
        return bool(stream.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


class OutputCapture:
    """Tees standard output and error into stdout.log and stderr.log for the run's duration.

    Where a stream writes to its file descriptor (a terminal, a file, a pipe), the descriptor is
    tee'd (`FdTee`), so the output of child processes (a simulation engine run with subprocess)
    is kept too; otherwise (under test runners, in worker threads) the Python streams are.
    """

    def __init__(self, folder: Path, limit: int | None = None) -> None:
        limit = LOG_LIMIT if limit is None else limit
        self.logs = {
            "stdout": BoundedLog(folder / "stdout.log", limit),
            "stderr": BoundedLog(folder / "stderr.log", limit),
        }
        self._saved = (sys.stdout, sys.stderr)
        self._fd_tee: FdTee | None = None
        by_fd: list[tuple[int, BoundedLog]] = []
        for name, fd in (("stdout", 1), ("stderr", 2)):
            stream = getattr(sys, name)
            if _fd_capturable(stream, fd):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
                by_fd.append((fd, self.logs[name]))
        if by_fd:
            try:
                self._fd_tee = FdTee(by_fd)
            except OSError:  # no descriptors or pseudo-terminals left: tee the Python streams
                by_fd = []
        tee_fds = {fd for fd, _ in by_fd}
        for name, fd in (("stdout", 1), ("stderr", 2)):
            if fd not in tee_fds:
                setattr(sys, name, Tee(getattr(sys, name), self.logs[name]))

    def stop(self) -> dict[str, Any]:
        """Restore the streams; returns the `[logs]` table of the record."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = self._saved
        if self._fd_tee is not None:
            self._fd_tee.stop()
        info: dict[str, Any] = {}
        for name, log in self.logs.items():
            log.close()
            info[name] = log.path.name
            if log.dropped:
                info[f"{name}_truncated"] = log.dropped
        return info
