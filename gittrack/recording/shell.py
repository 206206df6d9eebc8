"""Running a program inside a run: its output kept in the run's logs, its identity recorded.

`gittrack.shell([...])` in a tracked click command and `gittrack exec` both come here: the program
runs with its standard output on a pseudo-terminal when ours is a terminal (engines keep their
line buffering and colours), else on a pipe; whatever it prints is written through this
process's streams, which the run captures into stdout.log and stderr.log.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import ProgramFailed, UsageError
from . import programs
from .context import current

TAIL_LINES = 20


@dataclass
class Finished:
    """How a program ended: its exit code, duration and the last lines it printed."""

    exit_code: int
    duration_s: float
    tail: list[str] = field(default_factory=list)


def run_streamed(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> Finished:
    """Run `argv` in `cwd`, writing its output through sys.stdout/sys.stderr as it comes."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    lock = threading.Lock()
    use_pty = _is_terminal(sys.stdout)
    master = slave = -1
    if use_pty:
        import pty

        master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=slave if use_pty else subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pumps = []
    if use_pty:
        os.close(slave)
        pumps.append(_pump_fd(master, sys.stdout, tail, lock))
    else:
        assert proc.stdout is not None
        pumps.append(_pump_fd(proc.stdout.fileno(), sys.stdout, tail, lock))
    assert proc.stderr is not None
    pumps.append(_pump_fd(proc.stderr.fileno(), sys.stderr, tail, lock))
    try:
        code = proc.wait()
    except BaseException:  # Ctrl-C or SIGTERM: the program stops with the run
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        for pump in pumps:
            pump.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if use_pty:
            with contextlib.suppress(OSError):
                os.close(master)
    return Finished(code, round(time.perf_counter() - t0, 3), list(tail))


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _pump_fd(fd: int, out: IO[str], tail: deque[str], lock: threading.Lock) -> threading.Thread:
    """A thread copying `fd` to `out` (decoded) and keeping its last lines in `tail`."""

    def pump() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        partial = ""
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:  # a pseudo-terminal whose program ended
                data = b""
            text = decoder.decode(data, final=not data)
            if text:
                with lock:
                    with contextlib.suppress(OSError, ValueError):
                        out.write(text)
                        out.flush()
                    lines = (partial + text.replace("\r\n", "\n")).split("\n")
                    partial = lines.pop()
                    tail.extend(lines)
            if not data:
                if partial:
                    with lock:
                        tail.append(partial)
                return

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def program_identity(argv0: str, cwd: Path, repo_root: Path, cache_dir: Path) -> dict[str, Any]:
    """The recorded identity of the program `argv0` names (probed only outside the repo)."""
    path = programs.resolve(argv0, cwd)
    inside = _inside(path, repo_root)
    info = programs.identity(path, cache_dir, probe=not inside)
    if inside:
        info["path"] = path.resolve().relative_to(repo_root.resolve()).as_posix()
        info["in_repo"] = True
    return info


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def shell(
    argv: Sequence[str | os.PathLike[str]],
    *,
    outputs: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> int:
    """Run a program inside the current tracked run; returns its exit code.

    It runs in the run's output folder (or `cwd`), its output goes into the run's logs, and its
    path, sha256, version and package are recorded in the run's `[[programs]]`. Files matching
    the `outputs` globs (relative to where it ran) become outputs of the run. When it exits
    non-zero and `check` is true, ProgramFailed is raised with the last lines it printed.

    Example: `gittrack.shell(["lmp", "-in", "in.melt"], outputs=["dump.*"])`
    """
    session = current()
    if session is None:
        raise UsageError(
            "gittrack.shell() only works inside a tracked run; call it from a "
            "@gittrack.command() function."
        )
    args = [os.fspath(a) for a in argv]
    if not args:
        raise UsageError("gittrack.shell() needs a program to run, e.g. shell(['lmp', '-h']).")
    where = Path(cwd).absolute() if cwd is not None else session.output_dir
    info = program_identity(
        args[0], Path.cwd(), session.repo.root, session.repo.state_dir / "cache"
    )
    info["argv"] = args
    full_env = {**os.environ, **(env or {}), "GITTRACK_RUN_ID": session.id}
    done = run_streamed([str(programs.resolve(args[0], Path.cwd())), *args[1:]], where, full_env)
    info["exit_code"] = done.exit_code
    info["duration_s"] = done.duration_s
    session.record.programs.append(info)
    if outputs:
        collect_outputs(session, where, outputs)
    if check and done.exit_code != 0:
        raise ProgramFailed(args[0], done.exit_code, "\n".join(done.tail))
    return done.exit_code


def collect_outputs(session: Any, where: Path, patterns: Sequence[str]) -> list[Path]:
    """Files under `where` matching `patterns` become the run's outputs (named by their stem)."""
    found: list[Path] = []
    for pattern in patterns:
        for match in sorted(glob.glob(pattern, root_dir=where, recursive=True)):
            path = where / match
            if path.name.startswith(".") or path in found:
                continue
            found.append(path)
    out_dir = session.output_dir.resolve()
    for path in found:
        inside = _inside(path, out_dir)
        if inside and path.resolve().parent == out_dir:
            continue  # in the output folder already: kept as a file of the run anyway
        name = path.stem if path.is_file() else path.name
        if name in session.pending_outputs:
            name = path.name
        session.pending_outputs[name] = path
    return found
