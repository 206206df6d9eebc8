"""Git objects: finding the repository, reading through cat-file, writing objects and trees."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._hashes import sha1
from ..errors import GitError, NotAGitRepo
from .identity import Identity as Identity
from .localread import MISSING, ZERO as ZERO, LocalObjects
from .packs import fsync_all
from .shared import adjust, make_dirs
from .trees import (
    EMPTY_TREE as EMPTY_TREE,
    MODE_BLOB as MODE_BLOB,
    MODE_EXEC as MODE_EXEC,
    MODE_LINK as MODE_LINK,
    MODE_SUBMODULE as MODE_SUBMODULE,
    MODE_TREE as MODE_TREE,
    Entry as Entry,
    find_entry,
    format_tree as format_tree,
    parse_tree as parse_tree,
    splice,
    tree_stride,
)

if TYPE_CHECKING:
    import subprocess

BRANCH = "gittrack/runs"
RUNS_REF = f"refs/heads/{BRANCH}"
CODE_REF_PREFIX = "refs/gittrack/code/"
NOTES_REF = "refs/notes/gittrack"


LOCK_TIMEOUT_S = 60.0  # after this, go on without the lock: CAS alone keeps correctness
STALE_REF_LOCK_S = 10.0  # a ref .lock older than this, while we hold the flock, is left by a crash


# keeps a git child reading much of the history (an index build) well under 200 MiB whatever
# the pack's size: git's defaults map up to 8 GiB of pack and cache 96 MiB of delta bases
READ_LIMITS = (
    "-c",
    "core.packedGitWindowSize=16m",
    "-c",
    "core.packedGitLimit=96m",
    "-c",
    "core.deltaBaseCacheLimit=16m",
)

STATS = {"commits": 0, "retries": 0}  # this process's branch commits and CAS retries


class Repo:
    """A git working tree and where its git data lives.

    Compared and shown as a dataclass of its three folders (and reader) would be; a plain class
    because one is made at the start of every run, where @dataclass costs a third of a ms."""

    def __init__(
        self, root: Path, git_dir: Path, common_dir: Path, _reader: CatFile | None = None
    ) -> None:
        self.root = root  # the working tree
        self.git_dir = git_dir  # .git of this worktree (index, HEAD)
        self.common_dir = common_dir  # shared .git (objects, refs, config)
        self._reader = _reader

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Repo)
        mine = (self.root, self.git_dir, self.common_dir, self._reader)
        return mine == (other.root, other.git_dir, other.common_dir, other._reader)

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as @dataclass

    def __repr__(self) -> str:
        return f"Repo(root={self.root!r}, git_dir={self.git_dir!r}, common_dir={self.common_dir!r})"

    @property
    def state_dir(self) -> Path:
        """Local, never committed state: index database, heartbeats, locks, temp files."""
        return self.common_dir / "gittrack"

    def make_dir(self, folder: Path) -> Path:
        """Create `folder` (and its parents) as git would in this repository (shared or not)."""
        return make_dirs(self.common_dir, folder)

    def share(self, *paths: Path | str) -> None:
        """Give files and folders we just created the permissions core.sharedRepository asks."""
        adjust(self.common_dir, *paths)

    def open_lock(self, path: Path) -> int:
        """A descriptor of the lock file `path` to flock, created with the repository's shared
        permissions when missing (read-only: that is all an flock needs)."""
        fresh = not os.path.exists(path)
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        if fresh:
            self.share(path)
        return fd

    @property
    def shallow(self) -> bool:
        return (self.common_dir / "shallow").exists()

    def git(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        import subprocess  # not on the recording path: a run needs no git process but cat-file

        full_env = None
        if env:
            full_env = {**os.environ, **env}
        proc = subprocess.run(
            ["git", *args], cwd=self.root, input=input, capture_output=True, env=full_env
        )
        if check and proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise GitError(f"git {args[0]} failed: {message}")
        return proc

    def reader(self) -> CatFile:
        """The repository's `git cat-file --batch` process, shared by every Repo of this root."""
        if self._reader is None or not self._reader.alive():
            ended = None
            with _READERS_LOCK:
                shared = _READERS.get(self.root)
                if shared is None or not shared.alive():
                    ended = shared  # its process ended (e.g. the repository was moved)
                    shared = _READERS[self.root] = CatFile(self)
            if ended is not None:
                ended.close()
            self._reader = shared
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            with _READERS_LOCK:
                if _READERS.get(self.root) is self._reader:
                    del _READERS[self.root]
            self._reader = None


# one reader process per repository and process, closed at exit (a Repo is cheap to make anew)
_READERS: dict[Path, CatFile] = {}
_READERS_LOCK = threading.Lock()
CLOSE_WAIT_S = 10.0  # how long a close waits for another thread's query before ending it


@atexit.register
def _close_readers() -> None:
    for reader in list(_READERS.values()):
        reader.close()
    _READERS.clear()


def find_repo(start: str | os.PathLike[str] | None = None) -> Repo:
    """The git repository holding `start` (default: the current directory), found without git."""
    path = Path(start or os.getcwd()).resolve()
    for candidate in (path, *path.parents):
        dot_git = candidate / ".git"
        if dot_git.is_dir():
            return Repo(candidate, dot_git, dot_git)
        if dot_git.is_file():  # a linked worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text().strip()
            if text.startswith("gitdir:"):
                git_dir = (candidate / text[7:].strip()).resolve()
                common = git_dir
                if (git_dir / "commondir").exists():
                    common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
                return Repo(candidate, git_dir, common)
    raise NotAGitRepo(str(path))


_TEMP_COUNTER = itertools.count()


def exclusive_temp(folder: Path, prefix: str) -> tuple[int, str]:
    """A new file in `folder` opened exclusively: tempfile.mkstemp without importing tempfile
    (and random, hashlib's hmac...) on the recording path."""
    while True:
        path = folder / f"{prefix}{os.getpid()}_{next(_TEMP_COUNTER)}_{os.urandom(4).hex()}"
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), str(path)
        except FileExistsError:
            continue


def jitter() -> float:
    """A random fraction in [0, 1) for back-off, without importing random."""
    return int.from_bytes(os.urandom(2), "big") / 65536


# -- reading objects ------------------------------------------------------------------------


class CatFile:
    """Object queries answered from the repository's files where that is plain (localread.py),
    else by one long-lived `git cat-file --batch` process, started on the first such query.

    Shared by every Repo of a repository in this process, so it is safe to use from several
    threads (one query at a time), from inside a `read_many` loop (such a nested query goes to a
    short-lived process of its own), and with a `read_many` loop left early (its remaining
    answers are drained, keeping the protocol in step).
    """

    def __init__(self, repo: Repo) -> None:
        self._root = repo.root
        self._local = LocalObjects(str(repo.git_dir), str(repo.common_dir))
        self._child: _Child | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._owner: int | None = None

    @property
    def _proc(self) -> _Child:
        if self._child is None:
            self._child = _Child(["git", "-C", str(self._root), "cat-file", "--batch"])
        return self._child

    def alive(self) -> bool:
        return not self._closed and (self._child is None or self._child.poll() is None)

    def _acquire(self) -> bool:
        """Take the process; False when this thread already holds it (a nested query).

        A reader closed meanwhile (another Repo of the same root, e.g. another worker thread's
        task that ended) starts a fresh process: whoever still holds it keeps reading.
        """
        if self._owner == threading.get_ident():
            return False
        self._lock.acquire()
        self._owner = threading.get_ident()
        if self._closed:
            self._child = None  # started anew on its next query
            self._closed = False
            with _READERS_LOCK:
                _READERS.setdefault(self._root, self)  # closed at exit again
        return True

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

    def _nested(self) -> CatFile:
        return CatFile(Repo(self._root, self._root / ".git", self._root / ".git"))

    def read(self, rev: str) -> tuple[str, str, bytes] | None:
        """(sha, type, content) of `rev` (any revision expression), or None when missing."""
        found = self.read_limited(rev, None)
        if found is None:
            return None
        assert not isinstance(found[2], int)  # no limit: the object is read
        return found[0], found[1], found[2]

    def read_limited(self, rev: str, limit: int | None) -> tuple[str, str, bytes | int] | None:
        """`read`, but an object over `limit` bytes is never read: its size stands for it.

        Answered from the files where that is plain (localread.py), else by git, whose answer
        gives the size before the content."""
        found = self._local.read(rev, limit)
        if found is MISSING:
            return None
        if isinstance(found, tuple):
            return found
        if not self._acquire():
            other = self._nested()
            try:
                return other.read_limited(rev, limit)
            finally:
                other.close()
        try:
            proc = self._proc
            assert proc.stdin
            proc.stdin.write(self._local.pin(rev).encode() + b"\n")
            proc.stdin.flush()
            return self._answer(limit)
        finally:
            self._release()

    def _answer(self, limit: int | None = None) -> tuple[str, str, bytes | int] | None:
        """Read one answer: (sha, type, content), or None for a missing object; an object over
        `limit` bytes is passed over in chunks (never held whole) and its size given instead."""
        assert self._proc.stdout
        header = self._proc.stdout.readline()
        if not header:
            raise GitError("git cat-file stopped unexpectedly")
        parts = header.split()
        if len(parts) != 3:  # "<rev> missing" or "<rev> ambiguous"
            return None
        size = int(parts[2])
        data: bytes | int = size
        if limit is None or size <= limit:
            data = self._read_exact(size)
        else:
            skip_exact(self._proc.stdout, size)
        self._proc.stdout.read(1)  # trailing newline
        return parts[0].decode(), parts[1].decode(), data

    def read_many(self, revs: Iterable[str]) -> Iterator[tuple[str, bytes | None]]:
        """Stream (rev, content) for many revisions through one process; missing -> None."""
        for rev, data in self.read_many_limited(revs, None):
            assert not isinstance(data, int)  # no limit: every object is read
            yield rev, data

    def read_many_limited(
        self, revs: Iterable[str], limit: int | None
    ) -> Iterator[tuple[str, bytes | int | None]]:
        """`read_many`, but an object over `limit` bytes is never read: its size stands for it."""
        revs = list(revs)
        if not self._acquire():
            other = self._nested()
            try:
                yield from other.read_many_limited(revs, limit)
            finally:
                other.close()
            return
        try:
            self._proc  # started here, before the writer thread reads it  # noqa: B018
        except BaseException:
            self._release()
            raise
        writer = threading.Thread(target=self._write_all, args=(revs,), daemon=True)
        answered = 0
        try:
            writer.start()
            for rev in revs:
                found = self._answer(limit)
                answered += 1
                yield rev, (found[2] if found else None)
        finally:
            while answered < len(revs) and self.alive():  # left early: drain the rest
                self._answer(limit)
                answered += 1
            writer.join()
            self._release()

    def _write_all(self, revs: list[str]) -> None:
        assert self._proc.stdin
        known: dict[str, str] = {}  # each ref read once a batch (LocalObjects.pin)
        sent = (self._local.pin(r, known) for r in revs)
        self._proc.stdin.write(b"".join(r.encode() + b"\n" for r in sent))
        self._proc.stdin.flush()

    def _read_exact(self, size: int) -> bytes:
        assert self._proc.stdout
        chunks, left = [], size
        while left:
            chunk = self._proc.stdout.read(left)
            if not chunk:
                raise GitError("git cat-file stopped unexpectedly")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """End the process, once a query another thread has in progress is answered."""
        if self._owner == threading.get_ident():  # closed inside its own loop: end it now
            self._stop()
            return
        taken = self._lock.acquire(timeout=CLOSE_WAIT_S)  # a loop left suspended: go on
        try:
            self._stop()
        finally:
            if taken:
                self._lock.release()

    def _stop(self) -> None:
        self._closed = True
        proc, self._child = self._child, None
        if proc is None:  # never started: every query was answered from the files
            return
        if proc.stdin:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if not proc.wait(timeout=2):
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


SKIP_CHUNK = 1 << 20


def skip_exact(stream: IO[bytes], size: int) -> None:
    """Read and drop `size` bytes of `stream` a chunk at a time (an object too large to hold)."""
    left = size
    while left:
        chunk = stream.read(min(left, SKIP_CHUNK))
        if not chunk:
            raise GitError("git cat-file stopped unexpectedly")
        left -= len(chunk)


class _Child:
    """A child process whose standard input and output are pipes to us (its errors go to
    /dev/null): what subprocess.Popen gives cat-file, started with posix_spawn so that the
    recording path does not import subprocess (and selectors) at all."""

    def __init__(self, args: list[str]) -> None:
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:  # our ends are not inherited (close-on-exec); the child's become 0, 1 and 2
            self.pid = os.posix_spawnp(
                args[0],
                args,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_in, 0),
                    (os.POSIX_SPAWN_DUP2, child_out, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),  # as subprocess restores them
            )
        except BaseException:
            os.close(to_child)
            os.close(from_child)
            raise
        finally:
            for fd in (child_in, child_out, devnull):
                os.close(fd)
        self.stdin: IO[bytes] | None = os.fdopen(to_child, "wb")
        self.stdout: IO[bytes] | None = os.fdopen(from_child, "rb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None (it is reaped here)."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler)
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the end, at most `timeout` seconds; whether it ended."""
        if timeout is None:
            if self.returncode is None:
                try:
                    _, status = os.waitpid(self.pid, 0)
                    self.returncode = os.waitstatus_to_exitcode(status)
                except ChildProcessError:
                    self.returncode = -1
            return True
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while self.poll() is None:
            if time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


# -- writing objects ------------------------------------------------------------------------


class ObjectWriter:
    """Writes loose objects into the repository, fsynced, as git itself would.

    A `git gc --prune=now` deletes every loose object no ref reaches yet, whatever its age, so
    objects are written while `holding_off_gc` (see there); `ensure()` rewrites whatever still
    went missing (a gc that ignored the lock).
    """

    def __init__(self, repo: Repo, *, pack: bool = False) -> None:
        """`pack`: keep new objects in memory and write them as one pack at `sync()` (two
        fsynced files however many objects: a run's blobs, trees and commit)."""
        self.repo = repo
        self.objects = repo.common_dir / "objects"
        self.common_dir = repo.common_dir
        self.temp_dir = repo.state_dir / "tmp"
        self._dirs_to_sync: set[Path] = set()
        self._written: dict[str, tuple[str, bytes]] = {}
        self._pack = pack
        self._pending: dict[str, tuple[str, bytes]] = {}  # to go into the next pack
        self._packs: dict[Path, list[str]] = {}  # packs written, with their objects

    def write(self, kind: str, data: bytes) -> str:
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = sha1(raw).hexdigest()
        if sha in self._written:
            return sha
        self._written[sha] = (kind, data)
        if not (self.objects / sha[:2] / sha[2:]).exists():
            if self._pack:
                self._pending[sha] = (kind, data)
            else:
                self._store(sha, raw)
        return sha

    def _write_pending(self) -> None:
        """Write the objects not yet on disk as one pack (see packs.py)."""
        if not self._pending:
            return
        from .packs import write_pack

        folder = self.objects / "pack"
        if not folder.is_dir():
            self.repo.make_dir(folder)
        fd, temp = exclusive_temp(folder, "tmp_gittrack_")
        os.close(fd)  # only a unique name: the pack and index are written beside it
        try:
            path = write_pack(folder, self._pending, temp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        adjust(self.common_dir, path, path.with_suffix(".idx"))
        self._packs[path] = list(self._pending)
        self._pending.clear()
        self._dirs_to_sync.add(folder)

    def _store(self, sha: str, raw: bytes) -> None:
        """Write `raw` as the loose object `sha`: beside objects/, then linked into place."""
        folder, path = self.objects / sha[:2], self.objects / sha[:2] / sha[2:]
        temp_dir = self.temp_dir if self.temp_dir.is_dir() else None
        if temp_dir is None:
            with contextlib.suppress(OSError):
                self.temp_dir.mkdir(parents=True, exist_ok=True)
                adjust(self.common_dir, self.temp_dir)
                temp_dir = self.temp_dir
        fd, tmp = exclusive_temp(temp_dir or self.objects, "tmp_obj_")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(zlib.compress(raw, 1))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)  # as git: read-only, readable by all (shared or not)
            adjust(self.common_dir, tmp)
            for _ in range(100):  # a racing prune may remove the (empty) folder meanwhile
                if not folder.is_dir():
                    with contextlib.suppress(FileExistsError):
                        folder.mkdir()
                    adjust(self.common_dir, folder)
                try:
                    os.link(tmp, path)
                    break
                except FileExistsError:
                    break
                except FileNotFoundError:
                    continue
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._dirs_to_sync.add(folder)

    def ensure(self) -> int:
        """Rewrite every object this writer wrote that is gone (a racing prune); how many."""
        self._write_pending()
        packed = {sha for path, shas in self._packs.items() if path.exists() for sha in shas}
        gone = [
            sha
            for sha in self._written
            if sha not in packed and not (self.objects / sha[:2] / sha[2:]).exists()
        ]
        if gone:  # not loose: packed by a gc meanwhile, or pruned
            proc = self.repo.git(
                "cat-file", "--batch-check", input="".join(f"{g}\n" for g in gone).encode()
            )
            gone = [
                line.split()[0] for line in proc.stdout.decode().splitlines() if "missing" in line
            ]
        for sha in gone:
            kind, data = self._written[sha]
            if self._pack:
                self._pending[sha] = (kind, data)
            else:
                self._store(sha, f"{kind} {len(data)}\0".encode() + data)
        self._write_pending()
        if gone:
            self.sync()
        return len(gone)

    def sync(self, folders: bool = True) -> None:
        """Write what is pending and make the new directory entries durable before a ref points
        at them; with `folders=False` the caller fsyncs `unsynced_folders()` itself (beside the
        ref's own fsync) and then calls `folders_synced()`."""
        self._write_pending()
        if folders:
            self.sync_folders()

    def unsynced_folders(self) -> list[Path]:
        """The folders holding new entries that are not yet fsynced."""
        return sorted(self._dirs_to_sync)

    def folders_synced(self) -> None:
        self._dirs_to_sync.clear()

    def sync_folders(self) -> None:
        fds: list[int] = []
        try:
            for folder in self._dirs_to_sync:
                with contextlib.suppress(FileNotFoundError):  # packed and removed by a gc
                    fds.append(os.open(folder, os.O_RDONLY))
            fsync_all(fds)
        finally:
            for fd in fds:
                os.close(fd)
        self._dirs_to_sync.clear()


# -- the runs branch ------------------------------------------------------------------------


def edit_tree(
    reader: CatFile, writer: ObjectWriter, tree: str | None, edits: Mapping[str, Entry]
) -> str:
    """Apply path -> entry edits to `tree` (None: empty), reading only the edited subtrees.

    Each tree on the way is edited as bytes (trees.splice): the cost of a big shard folder is a
    binary search and a copy, not a parse and sort of all its entries.
    """
    data = b""
    if tree:
        found = reader.read(tree)
        if found is None:
            raise GitError(f"tree {tree} is missing from the object database")
        data = found[2]
    changes: dict[str, Entry] = {}
    nested: dict[str, dict[str, Entry]] = {}
    for path, entry in edits.items():
        head, _, rest = path.partition("/")
        if rest:
            nested.setdefault(head, {})[rest] = entry
        else:
            changes[head] = entry
    # a tree that is not uniform is parsed once here, not once for every folder edited in it
    listing = parse_tree(data) if len(nested) > 1 and tree_stride(data) is None else None
    for head, sub_edits in nested.items():
        if head in changes:
            current = changes[head]
        else:
            current = listing.get(head) if listing is not None else find_entry(data, head)
        sub = current[1] if current and current[0] == MODE_TREE else None
        new = edit_tree(reader, writer, sub, sub_edits)
        changes[head] = None if new == EMPTY_TREE else (MODE_TREE, new)
    return writer.write("tree", splice(data, changes))


def write_blobs(writer: ObjectWriter, files: Mapping[str, bytes | Path]) -> dict[str, Entry]:
    """Blobs for in-memory contents or files on disk, as tree entries keyed by relative path."""
    entries: dict[str, Entry] = {}
    for name, content in files.items():
        mode = MODE_BLOB
        if isinstance(content, Path):
            if os.access(content, os.X_OK):
                mode = MODE_EXEC
            content = content.read_bytes()
        entries[name] = (mode, writer.write("blob", content))
    return entries


def _timestamp() -> str:
    offset = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return f"{int(time.time())} {sign}{offset // 3600:02d}{offset % 3600 // 60:02d}"


def make_commit(
    writer: ObjectWriter, ident: str, tree: str, parents: Iterable[str], message: str
) -> str:
    stamp = f"{ident} {_timestamp()}"
    lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
    lines += [f"author {stamp}", f"committer {stamp}", "", message.rstrip("\n"), ""]
    return writer.write("commit", "\n".join(lines).encode("utf-8", "surrogateescape"))
