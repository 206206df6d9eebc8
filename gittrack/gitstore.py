"""The runs branch: the only module that writes git objects and refs.

Recording a run must cost milliseconds whatever the history, so the hot path speaks git
directly: objects are written as loose objects from Python (fsynced), the few trees on the
edited path are read through one `git cat-file --batch` process, and the branch moves with a
compare-and-swap `git update-ref --stdin` transaction, behind an flock that prevents retry storms
but never blocks forever. Everything here is independent of the number of runs recorded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from hashlib import sha1, sha256
from pathlib import Path
from typing import ClassVar

from .errors import GittrackError, NoCommits, NotAGitRepo, RepoNotWritable
from .record import Code, RunRecord, run_folder

BRANCH = "gittrack/runs"
RUNS_REF = f"refs/heads/{BRANCH}"
CODE_REF_PREFIX = "refs/gittrack/code/"
NOTES_REF = "refs/notes/gittrack"
ZERO = "0" * 40

MODE_TREE = "40000"
MODE_BLOB = "100644"
MODE_EXEC = "100755"

LOCK_TIMEOUT_S = 60.0  # after this, go on without the lock: CAS alone keeps correctness
STALE_REF_LOCK_S = 10.0  # a ref .lock older than this, while we hold the flock, is left by a crash


STATS = {"commits": 0, "retries": 0}  # this process's branch commits and CAS retries


class GitError(GittrackError):
    """A git command failed in a way the user has to look at."""


@dataclass
class Repo:
    """A git working tree and where its git data lives."""

    root: Path  # the working tree
    git_dir: Path  # .git of this worktree (index, HEAD)
    common_dir: Path  # shared .git (objects, refs, config)
    _reader: CatFile | None = field(default=None, repr=False)

    @property
    def state_dir(self) -> Path:
        """Local, never committed state: index database, heartbeats, locks, temp files."""
        return self.common_dir / "gittrack"

    @property
    def shallow(self) -> bool:
        return (self.common_dir / "shallow").exists()

    def git(
        self, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
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
        if self._reader is None or not self._reader.alive():
            self._reader = CatFile(self)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


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


# -- reading objects ------------------------------------------------------------------------


class CatFile:
    """One long-lived `git cat-file --batch` process answering object queries."""

    def __init__(self, repo: Repo) -> None:
        self._proc = subprocess.Popen(
            ["git", "cat-file", "--batch"],
            cwd=repo.root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def read(self, rev: str) -> tuple[str, str, bytes] | None:
        """(sha, type, content) of `rev` (any revision expression), or None when missing."""
        assert self._proc.stdin and self._proc.stdout
        with self._lock:
            self._proc.stdin.write(rev.encode() + b"\n")
            self._proc.stdin.flush()
            header = self._proc.stdout.readline()
            if not header:
                raise GitError("git cat-file stopped unexpectedly")
            parts = header.split()
            if len(parts) != 3:  # "<rev> missing" or "<rev> ambiguous"
                return None
            size = int(parts[2])
            data = self._read_exact(size)
            self._proc.stdout.read(1)  # trailing newline
        return parts[0].decode(), parts[1].decode(), data

    def read_many(self, revs: Iterable[str]) -> Iterator[tuple[str, bytes | None]]:
        """Stream (rev, content) for many revisions through one process; missing -> None."""
        assert self._proc.stdin and self._proc.stdout
        revs = list(revs)
        with self._lock:
            writer = threading.Thread(target=self._write_all, args=(revs,), daemon=True)
            writer.start()
            for rev in revs:
                header = self._proc.stdout.readline()
                parts = header.split()
                if len(parts) != 3:
                    yield rev, None
                    continue
                data = self._read_exact(int(parts[2]))
                self._proc.stdout.read(1)
                yield rev, data
            writer.join()

    def _write_all(self, revs: list[str]) -> None:
        assert self._proc.stdin
        self._proc.stdin.write(b"".join(r.encode() + b"\n" for r in revs))
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
        if self._proc.stdin:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=2)
        if self._proc.poll() is None:
            self._proc.kill()


def parse_tree(data: bytes) -> dict[str, tuple[str, str]]:
    """Tree object bytes -> {name: (mode, sha)}."""
    entries: dict[str, tuple[str, str]] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode()
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (mode, data[nul + 1 : nul + 21].hex())
        pos = nul + 21
    return entries


def format_tree(entries: Mapping[str, tuple[str, str]]) -> bytes:
    """{name: (mode, sha)} -> tree object bytes, in git's order (folders sort as "name/")."""

    def key(name: str) -> bytes:
        raw = name.encode("utf-8", "surrogateescape")
        return raw + b"/" if entries[name][0] == MODE_TREE else raw

    return b"".join(
        entries[n][0].encode() + b" " + n.encode("utf-8", "surrogateescape") + b"\0"
        + bytes.fromhex(entries[n][1])
        for n in sorted(entries, key=key)
    )  # fmt: skip


# -- writing objects ------------------------------------------------------------------------


class ObjectWriter:
    """Writes loose objects into the repository, fsynced, as git itself would."""

    def __init__(self, repo: Repo) -> None:
        self.objects = repo.common_dir / "objects"
        self._dirs_to_sync: set[Path] = set()

    def write(self, kind: str, data: bytes) -> str:
        raw = f"{kind} {len(data)}\0".encode() + data
        sha = sha1(raw).hexdigest()
        folder = self.objects / sha[:2]
        path = folder / sha[2:]
        if path.exists():
            return sha
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(zlib.compress(raw, 1))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._dirs_to_sync.add(folder)
        return sha

    def sync(self) -> None:
        """Make the new directory entries durable before a ref points at them."""
        for folder in self._dirs_to_sync:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirs_to_sync.clear()


# -- the runs branch ------------------------------------------------------------------------

Entry = tuple[str, str] | None  # (mode, sha), or None to delete


def edit_tree(reader: CatFile, writer: ObjectWriter, tree: str | None, edits: Mapping[str, Entry]) -> str:  # fmt: skip
    """Apply path -> entry edits to `tree` (None: empty), reading only the edited subtrees."""
    entries: dict[str, tuple[str, str]] = {}
    if tree:
        found = reader.read(tree)
        if found is None:
            raise GitError(f"tree {tree} is missing from the object database")
        entries = parse_tree(found[2])
    nested: dict[str, dict[str, Entry]] = {}
    for path, entry in edits.items():
        head, _, rest = path.partition("/")
        if rest:
            nested.setdefault(head, {})[rest] = entry
        elif entry is None:
            entries.pop(head, None)
        else:
            entries[head] = entry
    for head, sub_edits in nested.items():
        current = entries.get(head)
        sub = current[1] if current and current[0] == MODE_TREE else None
        new = edit_tree(reader, writer, sub, sub_edits)
        if new == EMPTY_TREE:
            entries.pop(head, None)
        else:
            entries[head] = (MODE_TREE, new)
    return writer.write("tree", format_tree(entries))


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


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


@contextlib.contextmanager
def branch_lock(repo: Repo, timeout: float = LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Serialise writers of the runs branch; yields whether the lock was taken.

    An flock dies with its process, so a crashed writer never blocks later runs; a writer that
    hangs only delays others by `timeout`, after which they go on under compare-and-swap alone.
    """
    repo.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(repo.state_dir / "branch.flock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    locked = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    break  # filesystems without flock: rely on CAS
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002 + random.random() * 0.01)
        yield locked
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class Identity:
    """Author/committer line for commits gittrack writes: the user's git identity."""

    _cached: ClassVar[dict[Path, str]] = {}

    @classmethod
    def get(cls, repo: Repo) -> str:
        if repo.common_dir not in cls._cached:
            proc = repo.git("var", "GIT_COMMITTER_IDENT", check=False)
            ident = proc.stdout.decode().strip()
            if proc.returncode != 0 or not ident:
                ident = f"gittrack <gittrack@localhost> {int(time.time())} +0000"
            # keep name and email; the time part is filled in per commit
            cls._cached[repo.common_dir] = ident.rsplit(" ", 2)[0]
        return cls._cached[repo.common_dir]


def _timestamp() -> str:
    offset = -time.timezone if not time.localtime().tm_isdst else -time.altzone
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return f"{int(time.time())} {sign}{offset // 3600:02d}{offset % 3600 // 60:02d}"


def make_commit(writer: ObjectWriter, ident: str, tree: str, parents: Iterable[str], message: str) -> str:  # fmt: skip
    stamp = f"{ident} {_timestamp()}"
    lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
    lines += [f"author {stamp}", f"committer {stamp}", "", message.rstrip("\n"), ""]
    return writer.write("commit", "\n".join(lines).encode("utf-8", "surrogateescape"))


def tip(repo: Repo) -> tuple[str, str] | None:
    """(commit, tree) at the tip of the runs branch, or None before `gittrack init`."""
    found = repo.reader().read(RUNS_REF)
    if found is None:
        return None
    sha, _, data = found
    return sha, data[5:45].decode()


def commit_to_branch(
    repo: Repo,
    message: str,
    edits: Mapping[str, Entry] | None = None,
    *,
    keep_alive: Iterable[str] = (),
    merge_parent: str | None = None,
    allow_create: bool = False,
) -> str:  # fmt: skip
    """Commit `edits` on top of the runs branch tip with compare-and-swap; retried until it lands.

    `keep_alive` names code commits that get a ref under refs/gittrack/code/ in the same atomic
    transaction, so that no commit a run references can be garbage-collected.
    """
    writer = ObjectWriter(repo)
    ident = Identity.get(repo)
    keep = sorted(set(keep_alive))
    attempt = 0
    with branch_lock(repo):
        while True:
            attempt += 1
            reader = repo.reader()
            current = tip(repo)
            if current is None and not allow_create:
                raise GitError("the runs branch is missing; run 'gittrack init'")
            old_commit, old_tree = current if current else (ZERO, None)
            tree = edit_tree(reader, writer, old_tree, edits or {})
            parents = [old_commit] if current else []
            if merge_parent:
                parents.append(merge_parent)
            commit = make_commit(writer, ident, tree, parents, message)
            writer.sync()
            lines = [f"update {RUNS_REF} {commit} {old_commit}"]
            lines += [f"update {CODE_REF_PREFIX}{c} {c}" for c in keep]
            proc = _update_refs(repo, lines)
            if proc.returncode == 0:
                STATS["commits"] += 1
                STATS["retries"] += attempt - 1
                return commit
            err = proc.stderr.decode(errors="replace")
            if "File exists" in err or "Unable to create" in err:
                _remove_stale_ref_locks(repo, [RUNS_REF, *(CODE_REF_PREFIX + c for c in keep)])
            elif "No space left" in err or "Read-only" in err or "Permission denied" in err:
                raise RepoNotWritable(str(repo.root), err.strip().splitlines()[-1])
            if attempt > 1000:
                raise GitError(f"could not update {RUNS_REF}: {err.strip()}")
            time.sleep(min(0.2, 0.001 * attempt) * random.random())


def _update_refs(repo: Repo, lines: list[str]) -> subprocess.CompletedProcess[bytes]:
    script = "start\n" + "".join(line + "\n" for line in lines) + "prepare\ncommit\n"
    return subprocess.run(
        ["git", "-c", "core.fsync=reference", "-c", "core.fsyncMethod=fsync",
         "update-ref", "--stdin"],
        cwd=repo.root, input=script.encode(), capture_output=True,
    )  # fmt: skip


def _remove_stale_ref_locks(repo: Repo, refs: Iterable[str]) -> None:
    for ref in refs:
        lock = repo.common_dir / (ref + ".lock")
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > STALE_REF_LOCK_S:
                lock.unlink()
    packed = repo.common_dir / "packed-refs.lock"
    with contextlib.suppress(FileNotFoundError):
        if time.time() - packed.stat().st_mtime > STALE_REF_LOCK_S:
            packed.unlink()


def write_run(repo: Repo, record: RunRecord, files: Mapping[str, bytes | Path]) -> str:
    """Commit one run folder (run.toml plus `files`) to the runs branch; returns the commit."""
    writer = ObjectWriter(repo)
    folder_files: dict[str, bytes | Path] = {"run.toml": record.to_toml().encode()}
    folder_files.update(files)
    blobs = write_blobs(writer, folder_files)
    base = run_folder(record.id)
    edits = {f"{base}/{name}": entry for name, entry in blobs.items()}
    # replace the whole folder: a re-written run must not keep stale files
    edits = {base: None, **edits} if _folder_exists(repo, base) else edits
    keep = [record.code.commit] if record.code.commit else []
    keep += [i.commit for i in record.inputs if i.commit]
    subject = f"run {record.short}: {record.command_line}"
    if len(subject) > 200:
        subject = subject[:197] + "..."
    message = f"{subject}\n\nStatus: {record.status}\nRun-Id: {record.id}\n"
    return commit_to_branch(repo, message, edits, keep_alive=keep)


def _folder_exists(repo: Repo, path: str) -> bool:
    return repo.reader().read(f"{RUNS_REF}:{path}") is not None


def remove_runs(repo: Repo, run_ids: Iterable[str], message: str) -> str:
    """Commit the removal of run folders (history keeps them)."""
    edits: dict[str, Entry] = {run_folder(r): None for r in run_ids}
    return commit_to_branch(repo, message, edits)


def init_branch(repo: Repo, files: Mapping[str, bytes]) -> str | None:
    """Create the runs branch with its first commit holding shared settings; None if it exists."""
    if tip(repo) is not None:
        return None
    writer = ObjectWriter(repo)
    edits = write_blobs(writer, dict(files))
    return commit_to_branch(repo, "gittrack: initialise runs branch", edits, allow_create=True)


def write_settings(repo: Repo, files: Mapping[str, bytes | None], message: str) -> str:
    """Commit changed shared settings (e.g. the DVC remote in .dvc/config)."""
    writer = ObjectWriter(repo)
    edits: dict[str, Entry] = {}
    for path, content in files.items():
        edits[path] = None if content is None else write_blobs(writer, {path: content})[path]
    return commit_to_branch(repo, message, edits)


def read_file(repo: Repo, path: str, rev: str = RUNS_REF) -> bytes | None:
    found = repo.reader().read(f"{rev}:{path}")
    return found[2] if found else None


def read_record_bytes(repo: Repo, run_id: str, rev: str = RUNS_REF) -> bytes | None:
    return read_file(repo, f"{run_folder(run_id)}/run.toml", rev)


def list_run_ids(repo: Repo, prefix: str = "", rev: str = RUNS_REF) -> list[str]:
    """Ids of the runs on the branch; with a 2+ character prefix only one shard is read."""
    reader = repo.reader()
    if len(prefix) >= 2:
        found = reader.read(f"{rev}:runs/{prefix[:2]}")
        if found is None:
            return []
        return sorted(n for n in parse_tree(found[2]) if n.startswith(prefix))
    runs = reader.read(f"{rev}:runs")
    if runs is None:
        return []
    ids: list[str] = []
    for shard, (mode, sha) in sorted(parse_tree(runs[2]).items()):
        if mode == MODE_TREE and shard.startswith(prefix):
            sub = reader.read(sha)
            if sub:
                ids.extend(sorted(parse_tree(sub[2])))
    return ids


def run_files(repo: Repo, run_id: str, rev: str = RUNS_REF) -> dict[str, str]:
    """{file name: blob sha} of a run's folder on the branch."""
    found = repo.reader().read(f"{rev}:{run_folder(run_id)}")
    return {n: sha for n, (_, sha) in parse_tree(found[2]).items()} if found else {}


def changed_runs(repo: Repo, old: str, new: str) -> tuple[set[str], set[str]]:
    """(changed or added, removed) run ids between two branch commits, via git diff-tree."""
    proc = repo.git("diff-tree", "-r", "--no-renames", "--name-status", "-z", old, new, "--", "runs")
    fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    changed: set[str] = set()
    removed: set[str] = set()
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = path.split("/")
        if len(parts) < 4 or parts[3] != "run.toml":
            continue
        (removed if status == "D" else changed).add(parts[2])
    return changed - removed, removed - changed


def is_ancestor(repo: Repo, old: str, new: str) -> bool:
    return repo.git("merge-base", "--is-ancestor", old, new, check=False).returncode == 0


# -- code capture ---------------------------------------------------------------------------


def head_state(repo: Repo) -> tuple[str, str, bool]:
    """(HEAD commit, branch name or "", detached) without spawning git for the common case."""
    head_file = repo.git_dir / "HEAD"
    text = head_file.read_text().strip() if head_file.exists() else ""
    branch = text[16:] if text.startswith("ref: refs/heads/") else ""
    found = repo.reader().read("HEAD")
    if found is None or found[1] != "commit":
        raise NoCommits(str(repo.root))
    return found[0], branch, not text.startswith("ref:")


def snapshot_code(repo: Repo, script: Path | None, run_id: str) -> Code:
    """The code a run executes: HEAD when the tree is clean, else a snapshot commit of it.

    The snapshot is built in a temporary copy of the index, so the user's index, files and HEAD
    are untouched; it holds tracked and untracked-but-not-ignored files.
    """
    head, branch, detached = head_state(repo)
    head_tree = repo.reader().read(f"{head}^{{tree}}")
    assert head_tree is not None
    repo.state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=repo.state_dir)
    os.close(fd)
    try:
        index = repo.git_dir / "index"
        env = {"GIT_INDEX_FILE": tmp_index}
        if index.exists():
            shutil.copyfile(index, tmp_index)  # keeps stat data: `add -A` stays fast
        else:
            os.unlink(tmp_index)
            repo.git("read-tree", head, env=env)
        repo.git("add", "-A", env=env)
        tree = repo.git("write-tree", env=env).stdout.decode().strip()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_index)
    commit, dirty = head, tree != head_tree[0]
    if dirty:
        writer = ObjectWriter(repo)
        message = f"gittrack: code snapshot for run {run_id[:8]}\n\nUncommitted changes on {branch or 'detached HEAD'}."
        commit = make_commit(writer, Identity.get(repo), tree, [head], message)
        writer.sync()
    script_rel, script_hash = "", ""
    if script is not None:
        script = script.resolve()
        with contextlib.suppress(ValueError):
            script_rel = script.relative_to(repo.root.resolve()).as_posix()
        with contextlib.suppress(OSError):
            script_hash = sha256(script.read_bytes()).hexdigest()
    return Code(
        commit=commit, tree=tree, hash=script_hash, dirty=dirty, script=script_rel or (str(script) if script else ""),
        head=head, branch=branch, detached=detached, shallow=repo.shallow,
    )  # fmt: skip


def ensure_excluded(repo: Repo, patterns: Iterable[str]) -> None:
    """Add patterns to .git/info/exclude (never the user's .gitignore), once each."""
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    missing = [p for p in patterns if p not in text.splitlines()]
    if missing:
        prefix = "" if not text or text.endswith("\n") else "\n"
        with exclude.open("a") as fh:
            fh.write(prefix + "# gittrack\n" * (not text.count("# gittrack")) + "\n".join(missing) + "\n")


def check_writable(repo: Repo) -> None:
    """Fail early, before hours of simulation, when the repository cannot take a record."""
    objects = repo.common_dir / "objects"
    try:
        repo.state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp_check_", dir=objects)
        try:
            os.write(fd, b"gittrack")  # an empty file proves too little (quota, full disk)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise RepoNotWritable(str(repo.root), exc.strerror or str(exc)) from exc


# -- bulk import ----------------------------------------------------------------------------


def import_runs(repo: Repo, records: Iterable[RunRecord]) -> int:
    """Append many runs, one commit each, through one `git fast-import` (histories, tests).

    Much faster than `write_run` per run because objects go into one pack and the branch moves
    once; without the per-run fsync and lock, so it is meant for building histories, not for
    concurrent recording.
    """
    current = tip(repo)
    ident = Identity.get(repo)
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=repo.root, stdin=subprocess.PIPE
    )
    assert proc.stdin
    count = 0
    stamp = _timestamp()
    for record in records:
        data = record.to_toml().encode()
        message = f"run {record.short}: {record.command_line}"
        message += f"\n\nStatus: {record.status}\nRun-Id: {record.id}\n"
        raw = message.encode()
        chunk = [
            f"commit {RUNS_REF}\ncommitter {ident} {stamp}\ndata {len(raw)}\n".encode(), raw, b"\n",
        ]  # fmt: skip
        if count == 0 and current:
            chunk.append(f"from {current[0]}\n".encode())
        path = f"{run_folder(record.id)}/run.toml"
        chunk.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        proc.stdin.write(b"".join(chunk))
        count += 1
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise GitError("git fast-import failed while importing runs")
    repo.close()  # the long-lived reader must see the new tip
    return count


# -- temporary worktrees (rerun) ------------------------------------------------------------


@contextlib.contextmanager
def temporary_worktree(repo: Repo, commit: str) -> Iterator[Path]:
    """A detached `git worktree` of `commit` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="gittrack-rerun-"))
    tree = folder / "tree"
    try:
        repo.git("worktree", "add", "--detach", "--quiet", str(tree), commit)
        yield tree
    finally:
        repo.git("worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(folder, ignore_errors=True)
        repo.git("worktree", "prune", check=False)


# -- sharing: fetch, join and push the runs branch (scale) -----------------------------------
#
# A collaborator's runs are fetched into private refs (refs/gittrack/remotes/<remote>/...) and
# joined with ours: a fast-forward when one side is behind, else a merge commit whose tree is the
# union of both sides. Run folders are named by random ids, so they never collide; the same run
# id with different content on both sides is a conflict, never silently overwritten.

REMOTE_REF_PREFIX = "refs/gittrack/remotes/"


def remote_runs_ref(remote: str) -> str:
    """The private ref holding the last fetched runs branch of `remote`."""
    return f"{REMOTE_REF_PREFIX}{remote}/runs"


def remote_notes_ref(remote: str) -> str:
    return f"{REMOTE_REF_PREFIX}{remote}/notes"


def git_remotes(repo: Repo) -> list[str]:
    """Names of the git remotes configured in the repository."""
    return repo.git("remote").stdout.decode().split()


def ref_value(repo: Repo, ref: str) -> str | None:
    proc = repo.git("rev-parse", "--verify", "-q", ref, check=False)
    return proc.stdout.decode().strip() or None


def _remote_failure(remote: str, proc: subprocess.CompletedProcess[bytes]) -> GittrackError:
    from .errors import RemoteError

    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    reason = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))), lines[-1] if lines else "")
    reason = reason.removeprefix("fatal: ").removeprefix("error: ")
    return RemoteError(
        f"Cannot reach the git remote '{remote}' ({reason}); "
        "check its URL with 'git remote -v' and your network, then try again."
    )


def fetch_shared(repo: Repo, remote: str) -> str | None:
    """Fetch `remote`'s runs branch, code refs and notes into private refs; its runs tip or None."""
    proc = repo.git("ls-remote", remote, RUNS_REF, NOTES_REF, check=False)
    if proc.returncode != 0:
        raise _remote_failure(remote, proc)
    present = {line.split("\t")[1] for line in proc.stdout.decode().splitlines() if "\t" in line}
    specs = [f"+{CODE_REF_PREFIX}*:{CODE_REF_PREFIX}*"]
    if RUNS_REF in present:
        specs.append(f"+{RUNS_REF}:{remote_runs_ref(remote)}")
    if NOTES_REF in present:
        specs.append(f"+{NOTES_REF}:{remote_notes_ref(remote)}")
    proc = repo.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote, *specs, check=False)
    if proc.returncode != 0:
        raise _remote_failure(remote, proc)
    return ref_value(repo, remote_runs_ref(remote)) if RUNS_REF in present else None


@dataclass
class JoinResult:
    """How the runs branch took in another branch's runs."""

    kind: str  # "up-to-date", "created", "fast-forward" or "merge"
    old: str | None
    new: str
    added: list[str] = field(default_factory=list)  # run ids that arrived
    removed: list[str] = field(default_factory=list)  # run ids removed by the other side
    kept_ours: list[str] = field(default_factory=list)  # settings files both sides changed


def join_branch(repo: Repo, other: str, label: str) -> JoinResult:
    """Take the runs of commit `other` into the runs branch: fast-forward or union merge."""
    from .errors import RunConflict

    writer = ObjectWriter(repo)
    with branch_lock(repo):
        for _ in range(1000):
            reader = repo.reader()
            current = tip(repo)
            if current is None:
                proc = _update_refs(repo, [f"update {RUNS_REF} {other} {ZERO}"])
                if proc.returncode == 0:
                    return JoinResult("created", None, other, added=list_run_ids(repo, rev=other))
                continue
            ours, ours_tree = current
            if ours == other or is_ancestor(repo, other, ours):
                return JoinResult("up-to-date", ours, ours)
            theirs_tree = _commit_tree(reader, other)
            base = repo.git("merge-base", ours, other, check=False).stdout.decode().strip()
            base_tree = _commit_tree(reader, base) if base else None
            if base == ours:
                kind, new, edits, kept = "fast-forward", other, {}, []
            else:
                edits, kept = {}, []
                _merge3(reader, "", _as_tree(base_tree), _as_tree(ours_tree), _as_tree(theirs_tree), edits, kept)
                clashes = [p.rsplit("/", 1)[1] for p in kept if _is_run_folder(p)]
                if clashes:
                    raise RunConflict(label, clashes)
                tree = edit_tree(reader, writer, ours_tree, edits)
                arrived = len(_runs_in_edits(reader, ours_tree, edits)[0])
                message = (
                    f"gittrack: join runs from {label}\n\n"
                    f"{arrived} run(s) arrived; the tree is the union of both sides.\n"
                )
                new = make_commit(writer, Identity.get(repo), tree, [ours, other], message)
                writer.sync()
                kind = "merge"
            proc = _update_refs(repo, [f"update {RUNS_REF} {new} {ours}"])
            if proc.returncode == 0:
                if kind == "fast-forward":
                    changed, gone = changed_runs(repo, ours, other)
                    added, removed = sorted(changed), sorted(gone)
                else:
                    added, removed = _runs_in_edits(reader, ours_tree, edits)
                kept = [p for p in kept if not _is_run_folder(p)]
                return JoinResult(kind, ours, new, added, removed, kept)
            time.sleep(0.01 * random.random())
    raise GitError(f"could not update {RUNS_REF} while joining {label}")


def _runs_in_edits(reader: CatFile, ours_tree: str, edits: Mapping[str, Entry]) -> tuple[list[str], list[str]]:  # fmt: skip
    """(added or replaced, removed) run ids of a join's edits, which may name whole shards."""
    added: set[str] = set()
    removed: set[str] = set()
    for path, entry in edits.items():
        if not (path == "runs" or path.startswith("runs/")):
            continue
        depth = path.count("/")
        if depth >= 2:
            (removed if entry is None else added).add(path.split("/")[2])
            continue
        if entry is None:
            found = reader.read(f"{ours_tree}:{path}")
            entry = (MODE_TREE, found[0]) if found else None
            target = removed
        else:
            target = added
        listing = _tree_of(reader, entry)
        if depth == 0:  # the whole runs folder
            for shard in listing.values():
                target.update(_tree_of(reader, shard))
        else:
            target.update(listing)
    return sorted(added), sorted(removed)


def _commit_tree(reader: CatFile, commit: str) -> str:
    found = reader.read(commit)
    if found is None or found[1] != "commit":
        raise GitError(f"commit {commit} is missing from the object database")
    return found[2][5:45].decode()


def _as_tree(sha: str | None) -> tuple[str, str] | None:
    return (MODE_TREE, sha) if sha else None


def _is_run_folder(path: str) -> bool:
    return path.startswith("runs/") and path.count("/") == 2


def _merge3(
    reader: CatFile, path: str, base: Entry, ours: Entry, theirs: Entry,
    edits: dict[str, Entry], conflicts: list[str],
) -> None:  # fmt: skip
    """Three-way merge of one path: take their change where we did not change it.

    Only subtrees that differ are read; run folders are compared whole. A path both sides
    changed differently goes to `conflicts` (ours is kept).
    """
    if theirs in (base, ours):
        return
    if ours == base:
        edits[path] = theirs
        return
    trees = all(e is None or e[0] == MODE_TREE for e in (base, ours, theirs))
    if not trees or _is_run_folder(path):
        conflicts.append(path)
        return
    listed = [_tree_of(reader, e) for e in (base, ours, theirs)]
    for name in sorted(set(listed[0]) | set(listed[2])):
        sub = f"{path}/{name}" if path else name
        _merge3(reader, sub, listed[0].get(name), listed[1].get(name), listed[2].get(name), edits, conflicts)


def _tree_of(reader: CatFile, entry: Entry) -> dict[str, tuple[str, str]]:
    if entry is None:
        return {}
    found = reader.read(entry[1])
    if found is None:
        raise GitError(f"tree {entry[1]} is missing from the object database")
    return parse_tree(found[2])


def merge_notes(repo: Repo, remote: str) -> bool:
    """Merge `remote`'s fetched gittrack notes into ours (lines of both kept); True if any."""
    if ref_value(repo, remote_notes_ref(remote)) is None:
        return False
    repo.git("notes", f"--ref={NOTES_REF}", "merge", "--quiet", "-s", "cat_sort_uniq", remote_notes_ref(remote))
    return True


@dataclass
class PushResult:
    """What `git push` did with each shared ref."""

    updated: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def push_shared(repo: Repo, remote: str) -> PushResult:
    """Push the runs branch, code keep-alive refs and notes to `remote` (never forced)."""
    specs = [f"{RUNS_REF}:{RUNS_REF}", f"{CODE_REF_PREFIX}*:{CODE_REF_PREFIX}*"]
    if ref_value(repo, NOTES_REF):
        specs.append(f"{NOTES_REF}:{NOTES_REF}")
    proc = repo.git("push", "--porcelain", remote, *specs, check=False)
    result = PushResult()
    for line in proc.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        ref = parts[1].split(":")[-1]
        if parts[0] == "!":
            result.rejected.append(ref)
        elif parts[0] == "=":
            result.up_to_date.append(ref)
        else:
            result.updated.append(ref)
    if proc.returncode != 0 and not result.rejected:
        raise _remote_failure(remote, proc)
    if RUNS_REF not in result.rejected and (head := ref_value(repo, RUNS_REF)):
        repo.git("update-ref", remote_runs_ref(remote), head)
    return result


def adopt_remote_branch(repo: Repo) -> str | None:
    """In a fresh clone, start the runs branch from the remote's (origin first); its tip or None."""
    proc = repo.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/", check=False)
    found = {}
    for line in proc.stdout.decode().splitlines():
        ref, _, sha = line.partition(" ")
        if ref.endswith(f"/{BRANCH}"):
            found[ref.split("/")[2]] = sha
    if not found:
        return None
    sha = found.get("origin") or found[sorted(found)[0]]
    proc = _update_refs(repo, [f"update {RUNS_REF} {sha} {ZERO}"])
    return sha if proc.returncode == 0 else None


# -- shipping code to workers without a shared filesystem (scale) ---------------------------


def settings_commit(repo: Repo, with_runs: bool = False) -> str:
    """A parentless commit holding the runs branch's shared settings (and its runs if asked)."""
    current = tip(repo)
    if current is None:
        raise GitError("the runs branch is missing; run 'gittrack init'")
    writer = ObjectWriter(repo)
    tree = current[1] if with_runs else edit_tree(repo.reader(), writer, current[1], {"runs": None})
    commit = make_commit(writer, Identity.get(repo), tree, [], "gittrack: shared settings for workers")
    writer.sync()
    return commit


def make_bundle(repo: Repo, commits: Mapping[str, str]) -> bytes:
    """A git bundle holding `commits` ({name: sha}) and their history, as bytes."""
    token = secrets_token()
    refs = {f"refs/gittrack/bundle/{token}/{name}": sha for name, sha in commits.items()}
    _update_refs(repo, [f"update {ref} {sha}" for ref, sha in refs.items()])
    fd, path = tempfile.mkstemp(prefix="bundle-", dir=repo.state_dir)
    os.close(fd)
    try:
        repo.git("bundle", "create", "--quiet", path, *refs)
        return Path(path).read_bytes()
    finally:
        os.unlink(path)
        _update_refs(repo, [f"delete {ref}" for ref in refs])


def secrets_token() -> str:
    import secrets

    return secrets.token_hex(8)


BUNDLE_CACHE_S = 7 * 24 * 3600  # unpacked bundles unused this long are removed


def clone_from_bundle(bundle: bytes, code: str, settings: str, dest: Path, cache: Path) -> Repo:
    """A detached checkout of `code` at `dest`, whose runs branch starts at `settings`.

    The bundle is unpacked once per machine into a bare repository under `cache`; each task's
    checkout borrows its objects (git clone --shared), so starting a task costs milliseconds.
    """
    cache.mkdir(parents=True, exist_ok=True)
    base = cache / (sha1(bundle).hexdigest() + ".git")
    if not base.exists():
        tmp = Path(tempfile.mkdtemp(prefix="unbundle-", dir=cache))
        bundle_file = tmp / "code.bundle"
        bundle_file.write_bytes(bundle)
        subprocess.run(["git", "init", "-q", "--bare", str(tmp / "repo.git")], check=True)
        subprocess.run(
            ["git", "fetch", "-q", str(bundle_file), "refs/*:refs/*"], cwd=tmp / "repo.git",
            check=True, capture_output=True,
        )  # fmt: skip
        with contextlib.suppress(OSError):  # another process on this machine may win the race
            os.rename(tmp / "repo.git", base)
        shutil.rmtree(tmp, ignore_errors=True)
        for old in cache.glob("*.git"):  # unpacked bundles of sweeps long finished
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > BUNDLE_CACHE_S:
                    shutil.rmtree(old, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.utime(base)
    subprocess.run(
        ["git", "clone", "-q", "--shared", "--no-checkout", str(base), str(dest)], check=True,
        capture_output=True,
    )  # fmt: skip
    repo = find_repo(dest)
    repo.git("checkout", "-q", "--detach", code)
    repo.git("update-ref", RUNS_REF, settings)
    return repo


def run_folder_contents(repo: Repo, run_id: str) -> dict[str, bytes]:
    """{file name: bytes} of a run's folder on the runs branch (for sending it elsewhere)."""
    files = run_files(repo, run_id)
    reader = repo.reader()
    contents: dict[str, bytes] = {}
    for name, sha in files.items():
        found = reader.read(sha)
        if found is not None and found[1] == "blob":
            contents[name] = found[2]
    return contents


# -- notes: tags and notes on run commits (refs/notes/gittrack) -----------------------------
#
# Notes are plain git notes, so `git log --notes=gittrack gittrack/runs` shows them and they
# travel with the notes ref. Written here with the same compare-and-swap as the branch, at a
# 2/38 fan-out; a note found at another fan-out (written by `git notes`) is moved.


def notes_tip(repo: Repo) -> str | None:
    """The commit at the tip of refs/notes/gittrack, or None when no note was ever written."""
    found = repo.reader().read(NOTES_REF)
    return found[0] if found else None


def _note_paths(commit: str) -> list[str]:
    return [commit, f"{commit[:2]}/{commit[2:]}", f"{commit[:2]}/{commit[2:4]}/{commit[4:]}"]


def read_note(repo: Repo, commit: str, rev: str | None = None) -> bytes | None:
    """The note attached to `commit` at notes commit `rev` (default: the notes tip)."""
    rev = rev or notes_tip(repo)
    if rev is None:
        return None
    reader = repo.reader()
    for path in _note_paths(commit):
        found = reader.read(f"{rev}:{path}")
        if found is not None and found[1] == "blob":
            return found[2]
    return None


def update_notes(
    repo: Repo,
    update: Callable[[Callable[[str], bytes | None]], Mapping[str, bytes | None]],
    message: str,
) -> str | None:  # fmt: skip
    """Change notes with compare-and-swap: `update(read)` returns {commit: content or None}.

    `read(commit)` gives the note at the notes tip being built on; when another writer moves
    the ref first, `update` runs again on the new tip. Returns the new notes commit.
    """
    writer = ObjectWriter(repo)
    ident = Identity.get(repo)
    attempt = 0
    with branch_lock(repo):
        while True:
            attempt += 1
            old = notes_tip(repo)
            changes = update(lambda c, rev=old: read_note(repo, c, rev) if rev else None)  # type: ignore[misc]
            if not changes:
                return old
            edits: dict[str, Entry] = {}
            for commit, content in changes.items():
                for path in _note_paths(commit):
                    edits[path] = None
                if content is not None:
                    edits[_note_paths(commit)[1]] = (MODE_BLOB, writer.write("blob", content))
            old_tree = None
            if old:
                found = repo.reader().read(old)
                old_tree = found[2][5:45].decode() if found else None
            tree = edit_tree(repo.reader(), writer, old_tree, edits)
            commit = make_commit(writer, ident, tree, [old] if old else [], message)
            writer.sync()
            proc = _update_refs(repo, [f"update {NOTES_REF} {commit} {old or ZERO}"])
            if proc.returncode == 0:
                return commit
            err = proc.stderr.decode(errors="replace")
            if "File exists" in err or "Unable to create" in err:
                _remove_stale_ref_locks(repo, [NOTES_REF])
            elif "No space left" in err or "Read-only" in err or "Permission denied" in err:
                raise RepoNotWritable(str(repo.root), err.strip().splitlines()[-1])
            if attempt > 1000:
                raise GitError(f"could not update {NOTES_REF}: {err.strip()}")
            time.sleep(min(0.2, 0.001 * attempt) * random.random())
