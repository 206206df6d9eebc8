"""Sharing: fetching, joining and pushing the runs branch; shipping code to workers."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha1
from pathlib import Path

from ..errors import GitError, GittrackError
from ..model.record import split_run_path
from .branch import (
    _update_refs,
    branch_lock,
    changed_runs,
    is_ancestor,
    list_run_ids,
    run_files,
    tip,
)
from .gcguard import guarded
from .objects import (
    BRANCH,
    CODE_REF_PREFIX,
    MODE_TREE,
    NOTES_REF,
    RUNS_REF,
    ZERO,
    CatFile,
    Entry,
    Identity,
    ObjectWriter,
    Repo,
    edit_tree,
    find_repo,
    make_commit,
    parse_tree,
)

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
    from ..errors import RemoteError

    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    reason = next(
        (ln for ln in lines if ln.startswith(("fatal:", "error:"))), lines[-1] if lines else ""
    )
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
    proc = repo.git(
        "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote, *specs, check=False
    )
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


@guarded
def join_branch(repo: Repo, other: str, label: str) -> JoinResult:
    """Take the runs of commit `other` into the runs branch: fast-forward or union merge."""
    from ..errors import RunConflict

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
            edits: dict[str, Entry]
            kept: list[str]
            if base == ours:
                kind, new, edits, kept = "fast-forward", other, {}, []
            else:
                edits, kept = {}, []
                _merge3(
                    reader,
                    "",
                    _as_tree(base_tree),
                    _as_tree(ours_tree),
                    _as_tree(theirs_tree),
                    edits,
                    kept,
                )
                clashes = [p for p in kept if _is_run_folder(p)]
                if clashes:
                    ids = [p.rsplit("/", 1)[1] for p in clashes]
                    raise RunConflict(label, ids, other, folders=clashes)
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


def _runs_in_edits(
    reader: CatFile, ours_tree: str, edits: Mapping[str, Entry]
) -> tuple[list[str], list[str]]:
    """(added or replaced, removed) run ids of a join's edits, which may name whole shards."""
    added: set[str] = set()
    removed: set[str] = set()
    for path, entry in edits.items():
        if not (path == "runs" or path.startswith("runs/")):
            continue
        run = split_run_path(path)
        if run is not None:
            (removed if entry is None else added).add(run[0])
            continue
        found = reader.read(f"{ours_tree}:{path}")
        ours_entry = (MODE_TREE, found[0]) if found and found[1] == "tree" else None
        had = set(_ids_under(reader, path, ours_entry)) if ours_entry else set()
        has = set(_ids_under(reader, path, entry)) if entry is not None else set()
        added |= has - had  # a shard taken whole from their side holds ours too
        removed |= had - has
    moved = added & removed  # from gittrack 0.1's layout to two levels: neither new nor gone
    return sorted(added - moved), sorted(removed - moved)


def _ids_under(reader: CatFile, path: str, entry: Entry) -> list[str]:
    """The run ids in `runs`, a shard or a sub-shard, in either layout."""
    ids: list[str] = []
    for name, sub in _tree_of(reader, entry).items():
        if sub[0] != MODE_TREE:
            continue
        child = f"{path}/{name}"
        run = split_run_path(child)
        ids += [run[0]] if run is not None else _ids_under(reader, child, sub)
    return ids


def _commit_tree(reader: CatFile, commit: str) -> str:
    found = reader.read(commit)
    if found is None or found[1] != "commit":
        raise GitError(f"commit {commit} is missing from the object database")
    return found[2][5:45].decode()


def _as_tree(sha: str | None) -> tuple[str, str] | None:
    return (MODE_TREE, sha) if sha else None


def _is_run_folder(path: str) -> bool:
    run = split_run_path(path)
    return run is not None and not run[1]


def _merge3(
    reader: CatFile,
    path: str,
    base: Entry,
    ours: Entry,
    theirs: Entry,
    edits: dict[str, Entry],
    conflicts: list[str],
) -> None:
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
        _merge3(
            reader,
            sub,
            listed[0].get(name),
            listed[1].get(name),
            listed[2].get(name),
            edits,
            conflicts,
        )


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
    repo.git(
        "notes",
        f"--ref={NOTES_REF}",
        "merge",
        "--quiet",
        "-s",
        "cat_sort_uniq",
        remote_notes_ref(remote),
    )
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
    proc = repo.git(
        "for-each-ref", "--format=%(refname) %(objectname)", "refs/remotes/", check=False
    )
    found = {}
    for line in proc.stdout.decode().splitlines():
        ref, _, sha = line.partition(" ")
        if ref.endswith(f"/{BRANCH}"):
            found[ref.split("/")[2]] = sha
    if not found:
        return None
    sha = found.get("origin") or found[sorted(found)[0]]
    moved = _update_refs(repo, [f"update {RUNS_REF} {sha} {ZERO}"])
    return sha if moved.returncode == 0 else None


# -- shipping code to workers without a shared filesystem (scale) ---------------------------


@guarded
def settings_commit(repo: Repo, with_runs: bool = False) -> str:
    """A parentless commit holding the runs branch's shared settings (and its runs if asked)."""
    current = tip(repo)
    if current is None:
        raise GitError("the runs branch is missing; run 'gittrack init'")
    writer = ObjectWriter(repo)
    tree = current[1] if with_runs else edit_tree(repo.reader(), writer, current[1], {"runs": None})
    commit = make_commit(
        writer, Identity.get(repo), tree, [], "gittrack: shared settings for workers"
    )
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
            ["git", "fetch", "-q", str(bundle_file), "refs/*:refs/*"],
            cwd=tmp / "repo.git",
            check=True,
            capture_output=True,
        )
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
        ["git", "clone", "-q", "--shared", "--no-checkout", str(base), str(dest)],
        check=True,
        capture_output=True,
    )
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
