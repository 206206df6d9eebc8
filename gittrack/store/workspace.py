"""The user's working tree: code snapshots, ignores, writability, temporary worktrees."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from hashlib import sha256
from pathlib import Path

from ..errors import NoCommits, RepoNotWritable
from ..model.record import Code
from .objects import Identity, ObjectWriter, Repo, exclusive_temp, make_commit

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
    fd, tmp_index = exclusive_temp(repo.state_dir, "index-")
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
        commit=commit,
        tree=tree,
        hash=script_hash,
        dirty=dirty,
        script=script_rel or (str(script) if script else ""),
        head=head,
        branch=branch,
        detached=detached,
        shallow=repo.shallow,
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
        repo.state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = exclusive_temp(objects, "tmp_check_")
        try:
            os.write(fd, b"gittrack")  # an empty file proves too little (quota, full disk)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise RepoNotWritable(str(repo.root), exc.strerror or str(exc)) from exc


# -- temporary worktrees (rerun) ------------------------------------------------------------


@contextlib.contextmanager
def temporary_worktree(repo: Repo, commit: str) -> Iterator[Path]:
    """A detached `git worktree` of `commit` in a temporary folder, removed afterwards."""
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
