"""The user's working tree: code snapshots, ignores, writability, temporary worktrees."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .._hashes import sha1, sha256
from .._ids import short
from ..errors import GitError, NoCommits, RepoNotWritable
from ..model.record import Code
from .gcguard import holding_off_gc
from .objects import (
    CODE_REF_PREFIX,
    MODE_BLOB,
    MODE_EXEC,
    MODE_LINK,
    MODE_SUBMODULE,
    MODE_TREE,
    Entry,
    Identity,
    ObjectWriter,
    Repo,
    edit_tree,
    exclusive_temp,
    make_commit,
    parse_tree,
)

# -- code capture ---------------------------------------------------------------------------


def head_state(repo: Repo) -> tuple[str, str, bool]:
    """(HEAD commit, branch name or "", detached) without spawning git for the common case."""
    found = head(repo)
    return found.commit, found.branch, found.detached


class Head:
    """The commit checked out when a run starts, and its tree.

    A plain class: a frozen dataclass costs ~0.3 ms to build when the recording path imports it.
    """

    __slots__ = ("branch", "commit", "detached", "tree")

    def __init__(self, commit: str, tree: str, branch: str, detached: bool) -> None:
        self.commit = commit
        self.tree = tree
        self.branch = branch  # "" when detached
        self.detached = detached


def head(repo: Repo) -> Head:
    """HEAD's commit and tree: one cat-file query, no git process."""
    head_file = repo.git_dir / "HEAD"
    text = head_file.read_text().strip() if head_file.exists() else ""
    branch = text[16:] if text.startswith("ref: refs/heads/") else ""
    found = repo.reader().read("HEAD")
    if found is None or found[1] != "commit":
        raise NoCommits(str(repo.root))
    first = found[2][:46].decode("ascii", "replace")  # "tree <40 hex>\n" opens every commit
    if not first.startswith("tree "):
        raise GitError(f"HEAD ({short(found[0])}) is not a well-formed commit")
    return Head(found[0], first[5:45], branch, not text.startswith("ref:"))


def blob_id(data: bytes) -> str:
    """The id git gives a blob of `data` (`git hash-object`), computed in-process."""
    return sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree_blobs(repo: Repo, tree: str, paths: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob id) in `tree` of each of `paths` that is a file there; each folder read once."""
    reader = repo.reader()
    folders: dict[str, dict[str, tuple[str, str]]] = {}

    def folder(name: str) -> dict[str, tuple[str, str]]:
        if name not in folders:
            sub = tree
            if name:
                parent, _, base = name.rpartition("/")
                entry = folder(parent).get(base)
                sub = entry[1] if entry and entry[0] == MODE_TREE else ""
            found = reader.read(sub) if sub else None
            folders[name] = parse_tree(found[2]) if found and found[1] == "tree" else {}
        return folders[name]

    out: dict[str, tuple[str, str]] = {}
    for path in paths:
        parent, _, base = path.rpartition("/")
        entry = folder(parent).get(base)
        if entry is not None and entry[0] not in (MODE_TREE, MODE_SUBMODULE):
            out[path] = entry
    return out


def file_mode(path: Path) -> str:
    return MODE_EXEC if os.access(path, os.X_OK) else MODE_BLOB


class Snapshot:
    """Builds a dirty run's code snapshot commit on top of HEAD's tree, in-process.

    The commit holds HEAD's tree with the changes of tracked files and the run's code files
    (tracked or not) as they are now; no other untracked file, nothing under the skipped
    folders (.git, gittrack's output folder) and no file over `limit` bytes, which is listed in
    `omitted` instead. The user's index and files are never touched.
    """

    def __init__(self, repo: Repo, base: Head, limit: int, skip: Iterable[str] = ()) -> None:
        self.repo = repo
        self.base = base
        self.limit = limit
        self.skip = tuple(skip)
        self.omitted: dict[str, int] = {}  # path -> size of each file left out
        self._tracked: dict[str, Entry] | None = None
        self._writer = ObjectWriter(repo, pack=True)

    def _entry(self, path: str, data: bytes | None = None) -> Entry:
        """The tree entry for `path` as it is in the working tree; None when left out."""
        full = self.repo.root / path
        try:
            if full.is_symlink():
                return (MODE_LINK, self._writer.write("blob", os.fsencode(os.readlink(full))))
            size = len(data) if data is not None else full.stat().st_size
            if size > self.limit:
                self.omitted[path] = size
                return None
            content = full.read_bytes() if data is None else data
        except OSError:
            return None
        return (file_mode(full), self._writer.write("blob", content))

    def tracked_changes(self) -> dict[str, Entry]:
        """Edits of HEAD's tree for tracked files that changed (staged or not); run once."""
        if self._tracked is not None:
            return self._tracked
        edits: dict[str, Entry] = {}
        self._tracked = edits
        if not (self.repo.git_dir / "index").exists():
            return edits  # no index (a bare checkout): every file would look deleted
        proc = self.repo.git("diff-index", "-z", "--no-renames", self.base.commit, check=False)
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        head_blobs: dict[str, str] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.lstrip(":").split()
            if len(parts) < 5 or path.startswith(self.skip) or MODE_SUBMODULE in parts[:2]:
                continue
            if parts[4] == "D":
                edits[path] = None
            else:
                head_blobs[path] = parts[2]
        for path, old in head_blobs.items():
            entry = self._entry(path)
            if entry is not None and entry[1] != old:
                edits[path] = entry
        return edits

    def build(self, run_id: str, code: Mapping[str, bytes]) -> tuple[str, str]:
        """(commit, tree) of HEAD plus tracked changes plus `code`: {path: content that ran}.

        Built while holding `git gc` off; the commit gets its keep-alive ref at once (the run
        may go on for hours before its record is committed), after rewriting any object a
        prune took since it was written.
        """
        with holding_off_gc(self.repo.common_dir):
            commit, tree = self._build(run_id, code)
            if commit != self.base.commit:
                self._writer.ensure()
                self.repo.git("update-ref", CODE_REF_PREFIX + commit, commit)
            return commit, tree

    def _build(self, run_id: str, code: Mapping[str, bytes]) -> tuple[str, str]:
        edits = dict(self.tracked_changes())
        for path, data in code.items():
            if path.startswith(self.skip):
                continue
            edits.pop(path, None)
            entry = self._entry(path, data)
            if entry is not None:
                edits[path] = entry
        if not edits:
            return self.base.commit, self.base.tree
        tree = edit_tree(self.repo.reader(), self._writer, self.base.tree, edits)
        if tree == self.base.tree:
            return self.base.commit, self.base.tree
        where = self.base.branch or "detached HEAD"
        message = (
            f"gittrack: code snapshot for run {short(run_id)}\n\nUncommitted changes on {where}."
        )
        commit = make_commit(
            self._writer, Identity.get(self.repo), tree, [self.base.commit], message
        )
        self._writer.sync()
        return commit, tree


def untracked_sources(repo: Repo, suffixes: tuple[str, ...] = (".py",)) -> list[str]:
    """Untracked, not ignored files ending in `suffixes`: code a sweep may ship to workers."""
    proc = repo.git("ls-files", "-z", "--others", "--exclude-standard", check=False)
    names = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [n for n in names if n.endswith(suffixes)]


def script_identity(repo: Repo, script: Path | None) -> tuple[str, str]:
    """(path relative to the repo root, or as given outside it; sha256 of its bytes)."""
    script_rel, script_hash = "", ""
    if script is not None:
        script = script.resolve()
        with contextlib.suppress(ValueError):
            script_rel = script.relative_to(repo.root.resolve()).as_posix()
        with contextlib.suppress(OSError):
            script_hash = sha256(script.read_bytes()).hexdigest()
    return script_rel or (str(script) if script else ""), script_hash


def snapshot_worktree(repo: Repo, run_id: str, limit: int, skip: Iterable[str] = ()) -> Code:
    """The working tree as a commit, to ship to workers without a shared filesystem.

    Tracked changes and untracked Python sources, within the size limit; HEAD when clean.
    """
    base = head(repo)
    snap = Snapshot(repo, base, limit, skip)
    code: dict[str, bytes] = {}
    for path in untracked_sources(repo):
        if path.startswith(snap.skip):
            continue
        with contextlib.suppress(OSError):
            if (repo.root / path).stat().st_size <= limit:
                code[path] = (repo.root / path).read_bytes()
    commit, tree = snap.build(run_id, code)
    return Code(
        commit=commit,
        tree=tree,
        dirty=commit != base.commit,
        head=base.commit,
        branch=base.branch,
        detached=base.detached,
        shallow=repo.shallow,
        omitted=sorted(snap.omitted),
    )


def ensure_excluded(repo: Repo, patterns: Iterable[str]) -> None:
    """Add patterns to .git/info/exclude (never the user's .gitignore), once each."""
    exclude = repo.common_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    text = exclude.read_text() if exclude.exists() else ""
    missing = [p for p in patterns if p not in text.splitlines()]
    if missing:
        prefix = "" if not text or text.endswith("\n") else "\n"
        with exclude.open("a") as fh:
            fh.write(
                prefix + "# gittrack\n" * (not text.count("# gittrack")) + "\n".join(missing) + "\n"
            )


def check_writable(repo: Repo) -> None:
    """Fail early, before hours of simulation, when the repository cannot take a record."""
    objects = repo.common_dir / "objects"
    try:
        repo.make_dir(repo.state_dir)
        fd, tmp = exclusive_temp(objects, "tmp_check_")
        try:
            os.write(fd, b"gittrack")  # an empty file proves too little (quota, full disk)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):  # a racing `git prune` took it
                os.unlink(tmp)
    except OSError as exc:
        raise RepoNotWritable(str(repo.root), exc.strerror or str(exc)) from exc


# -- temporary worktrees (rerun) ------------------------------------------------------------


@contextlib.contextmanager
def temporary_worktree(repo: Repo, commit: str) -> Iterator[Path]:
    """A detached `git worktree` of `commit` in a temporary folder, removed afterwards."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="gittrack-rerun-"))
    tree = folder / "tree"
    try:
        repo.git("worktree", "add", "--detach", "--quiet", str(tree), commit)
        yield tree
    finally:
        repo.git("worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(folder, ignore_errors=True)
        repo.git("worktree", "prune", check=False)
