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
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
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
    fd = os.open(repo.state_dir / "branch.lock", os.O_RDWR | os.O_CREAT, 0o644)
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

    _cached: dict[Path, str] = {}

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
    subject = f"run {record.short}: {record.command} {' '.join(record.argv)}".strip()
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
        message = f"gittrack: code snapshot for run {run_id[:8]}\n\nUncommitted changes on {branch or 'detached HEAD'}."  # noqa: E501
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
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise RepoNotWritable(str(repo.root), exc.strerror or str(exc)) from exc


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
