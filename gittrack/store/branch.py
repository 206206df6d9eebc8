"""The runs branch: compare-and-swap commits behind an flock, reading runs, bulk import."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from ..errors import BranchDamaged, GitError, RecordError, RepoNotWritable
from ..model.record import (
    MAX_RECORD_BYTES,
    RunRecord,
    legacy_run_folder,
    run_folder,
    run_folder_paths,
    split_run_path,
    too_large,
)
from . import housekeeping, reflock
from .gcguard import guarded
from .localread import packed_value
from .objects import (
    CODE_REF_PREFIX,
    LOCK_TIMEOUT_S,
    MODE_TREE,
    READ_LIMITS,
    RUNS_REF,
    STALE_REF_LOCK_S,
    STATS,
    ZERO,
    CatFile,
    Entry,
    Identity,
    ObjectWriter,
    Repo,
    _timestamp,
    edit_tree,
    jitter,
    make_commit,
    parse_tree,
    write_blobs,
)
from .trees import tree_stride


@contextlib.contextmanager
def branch_lock(repo: Repo, timeout: float = LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Serialise writers of the runs branch; yields whether the lock was taken.

    An flock dies with its process, so a crashed writer never blocks later runs; a writer that
    hangs only delays others by `timeout`, after which they go on under compare-and-swap alone.
    """
    repo.make_dir(repo.state_dir)
    fd = repo.open_lock(repo.state_dir / "branch.flock")
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
                time.sleep(0.002 + jitter() * 0.01)
        yield locked
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def tip(repo: Repo) -> tuple[str, str] | None:
    """(commit, tree) at the tip of the runs branch now, or None before `gittrack init` (the
    reader reads the ref from its file each time: LocalObjects.pin)."""
    found = repo.reader().read(RUNS_REF)
    if found is None:
        proc = repo.git("rev-parse", "--quiet", "--verify", RUNS_REF, check=False)
        if proc.returncode == 0 and proc.stdout.strip():  # the ref exists, its commit does not
            raise BranchDamaged(proc.stdout.decode().strip())
        return None
    sha, _, data = found
    return sha, data[5:45].decode()


@guarded
def commit_to_branch(
    repo: Repo,
    message: str,
    edits: Mapping[str, Entry] | None = None,
    *,
    keep_alive: Iterable[str] = (),
    merge_parent: str | None = None,
    allow_create: bool = False,
    unless: Callable[[], bool] | None = None,
    writer: ObjectWriter | None = None,
    tidy: Callable[[CatFile, str | None], Mapping[str, Entry]] | None = None,
) -> str:
    """Commit `edits` on top of the runs branch tip with compare-and-swap; retried until it lands.

    `keep_alive` names code commits that get a ref under refs/gittrack/code/ in the same atomic
    transaction, so that no commit a run references can be garbage-collected. `unless`, checked
    under the lock before each attempt, cancels the commit (returning "") when it is true.
    `writer` is the one that wrote the edits' blobs: what a racing `git gc --prune=now` took of
    them is written again before and after the branch moves. `tidy(reader, tip tree)` gives
    more edits that depend on the tip, made first (`edits` win where both name a path).
    """
    writer = writer or ObjectWriter(repo)
    ident = Identity.get(repo)
    keep = sorted(set(keep_alive))
    attempt = 0
    with branch_lock(repo):
        while True:
            attempt += 1
            if unless is not None and unless():
                return ""
            reader = repo.reader()
            current = tip(repo)
            if current is None and not allow_create:
                raise GitError("the runs branch is missing; run 'gittrack init'")
            old_commit, old_tree = current if current else (ZERO, None)
            edits_now = {**tidy(reader, old_tree), **(edits or {})} if tidy else edits or {}
            tree = edit_tree(reader, writer, old_tree, edits_now)
            parents = [old_commit] if current else []
            if merge_parent:
                parents.append(merge_parent)
            commit = make_commit(writer, ident, tree, parents, message)
            writer.sync(folders=False)  # fsynced with the ref's own fsync when done in-process
            writer.ensure()
            lines = [f"update {RUNS_REF} {commit} {old_commit}"]
            # a keep-alive ref already in place is only verified (in the same transaction):
            # not rewritten and fsynced anew by every run of the same code
            lines += [
                f"{'verify' if _ref_is(repo, CODE_REF_PREFIX + c, c) else 'update'} "
                f"{CODE_REF_PREFIX}{c} {c}"
                for c in keep
            ]
            proc = _update_refs(repo, lines, writer)
            if proc.returncode == 0:
                writer.ensure()  # the branch holds them now: nothing can take them later
                STATS["commits"] += 1
                STATS["retries"] += attempt - 1
                return commit
            err = proc.stderr.decode(errors="replace")
            if "nonexistent object" in err and keep:  # a code commit is gone (pruned earlier)
                keep = [c for c in keep if _exists(repo, c)]
                continue
            if "File exists" in err or "Unable to create" in err:
                _remove_stale_ref_locks(repo, [RUNS_REF, *(CODE_REF_PREFIX + c for c in keep)])
            elif "No space left" in err or "Read-only" in err or "Permission denied" in err:
                raise RepoNotWritable(str(repo.root), err.strip().splitlines()[-1])
            if attempt > 1000:
                raise GitError(f"could not update {RUNS_REF}: {err.strip()}")
            time.sleep(min(0.2, 0.001 * attempt) * jitter())


def _ref_is(repo: Repo, ref: str, sha: str) -> bool:
    """Whether `ref` holds `sha`, loose or (after a gc) packed (read without git)."""
    try:
        with open(repo.common_dir / ref, "rb") as fh:
            return fh.read(41).strip() == sha.encode()
    except FileNotFoundError:
        return packed_value(str(repo.common_dir), ref) == sha
    except OSError:
        return False


def _exists(repo: Repo, sha: str) -> bool:
    return repo.git("cat-file", "-e", sha, check=False).returncode == 0


def _update_refs(
    repo: Repo, lines: list[str], writer: ObjectWriter | None = None
) -> reflock.Outcome:
    """`git update-ref --stdin` of `lines` as one transaction (done in-process when it can be
    done exactly as git would: reflock.py). The folders `writer` has yet to fsync are made
    durable first: side by side with the ref's own fsync when in-process."""
    folders = writer.unsynced_folders() if writer is not None else []
    done = reflock.update(repo, lines, folders)
    if done is not None:
        if done.returncode == 0 and writer is not None:
            writer.folders_synced()
        return done
    if writer is not None:
        writer.sync()
    import subprocess  # only when git moves the refs

    script = "start\n" + "".join(line + "\n" for line in lines) + "prepare\ncommit\n"
    proc = subprocess.run(
        [
            "git",
            "-c",
            "core.fsync=reference",
            "-c",
            "core.fsyncMethod=fsync",
            "update-ref",
            "--stdin",
        ],
        cwd=repo.root,
        input=script.encode(),
        capture_output=True,
    )
    return reflock.Outcome(proc.returncode, proc.stderr)


def _remove_stale_ref_locks(repo: Repo, refs: Iterable[str]) -> None:
    """Ref locks left by a crash: those of a dead gittrack process at once, others once old."""
    reflock.clear_dead(repo)
    for ref in refs:
        lock = repo.common_dir / (ref + ".lock")
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > STALE_REF_LOCK_S:
                lock.unlink()
    packed = repo.common_dir / "packed-refs.lock"
    with contextlib.suppress(FileNotFoundError):
        if time.time() - packed.stat().st_mtime > STALE_REF_LOCK_S:
            packed.unlink()


def write_run(
    repo: Repo, record: RunRecord, files: Mapping[str, bytes | Path], *, if_absent: bool = False
) -> str:
    """Commit one run folder (run.toml plus `files`) to the runs branch; returns the commit.

    A "run.toml" in `files` is taken as `record`'s TOML as it is (already encoded by the
    caller, who staged those very bytes). With `if_absent`, nothing is committed (and ""
    returned) when the branch already holds the run: checked under the branch lock, so
    concurrent writers commit it once.
    """
    commit = _write_run(repo, record, files, if_absent=if_absent)
    housekeeping.after_commit(repo)  # outside the gc guard, or that gc would stand aside
    return commit


@guarded
def _write_run(
    repo: Repo, record: RunRecord, files: Mapping[str, bytes | Path], *, if_absent: bool = False
) -> str:
    """write_run() while holding gc off: the blobs are not reachable until the branch moves."""
    writer = ObjectWriter(repo, pack=True)
    folder_files = dict(files)
    if "run.toml" not in folder_files:
        folder_files["run.toml"] = record.to_toml().encode()
    blobs = write_blobs(writer, folder_files)
    base = run_folder(record.id)
    # the folder is built anew (deleting a folder that is not there is nothing): a re-written
    # run keeps no stale file, one in the old layout moves, and no lookup tells these apart
    edits: dict[str, Entry] = {base: None, legacy_run_folder(record.id): None}
    edits.update({f"{base}/{name}": entry for name, entry in blobs.items()})
    keep = [record.code.commit] if record.code.commit else []
    keep += [i.commit for i in record.inputs if i.commit]
    subject = f"run {record.short}: {record.command_line}"
    if len(subject) > 200:
        subject = subject[:197] + "..."
    message = f"{subject}\n\nStatus: {record.status}\nRun-Id: {record.id}\n"
    unless = (lambda: find_run_folder(repo, record.id) is not None) if if_absent else None

    def tidy(reader: CatFile, tree: str | None) -> dict[str, Entry]:
        return one_level_moves(reader, tree, record.id[:2])

    return commit_to_branch(
        repo, message, edits, keep_alive=keep, unless=unless, writer=writer, tidy=tidy
    )


def one_level_moves(reader: CatFile, tree: str | None, shard: str) -> dict[str, Entry]:
    """Edits moving the run folders a shard holds in gittrack 0.1's layout to their sub-shards.

    The first run written to such a shard moves them all, once: the shard holds only sub-shards
    after that, and every later run rewrites four small trees. A shard already uniform (only
    two-character names) is known from its bytes without parsing it.
    """
    found = reader.read(f"{tree}:runs/{shard}") if tree else None
    if found is None or found[1] != "tree":
        return {}
    stride = tree_stride(found[2])
    if stride is not None and stride[1] == 2:
        return {}
    moves: dict[str, Entry] = {}
    for name, (mode, sha) in parse_tree(found[2]).items():
        if len(name) > 4 and mode == MODE_TREE and name.startswith(shard):  # misplaced: kept
            moves[legacy_run_folder(name)] = None
            moves[run_folder(name)] = (mode, sha)
    return moves


def find_run_folder(repo: Repo, run_id: str, rev: str = RUNS_REF) -> str | None:
    """The path of the run's folder on `rev`, in whichever layout it was written; None if absent."""
    reader = repo.reader()
    for path in run_folder_paths(run_id):
        if reader.read_limited(f"{rev}:{path}", 0) is not None:
            return path
    return None


@guarded
def remove_runs(repo: Repo, run_ids: Iterable[str], message: str) -> str:
    """Commit the removal of run folders (history keeps them)."""
    edits: dict[str, Entry] = {p: None for r in run_ids for p in run_folder_paths(r)}
    return commit_to_branch(repo, message, edits)


@guarded
def init_branch(repo: Repo, files: Mapping[str, bytes]) -> str | None:
    """Create the runs branch with its first commit holding shared settings; None if it exists."""
    if tip(repo) is not None:
        return None
    writer = ObjectWriter(repo)
    edits = write_blobs(writer, dict(files))
    return commit_to_branch(
        repo, "gittrack: initialise runs branch", edits, allow_create=True, writer=writer
    )


@guarded
def write_settings(repo: Repo, files: Mapping[str, bytes | None], message: str) -> str:
    """Commit changed shared settings (e.g. the DVC remote in .dvc/config)."""
    writer = ObjectWriter(repo)
    edits: dict[str, Entry] = {}
    for path, content in files.items():
        edits[path] = None if content is None else write_blobs(writer, {path: content})[path]
    return commit_to_branch(repo, message, edits, writer=writer)


def read_file(repo: Repo, path: str, rev: str = RUNS_REF) -> bytes | None:
    found = repo.reader().read(f"{rev}:{path}")
    return found[2] if found else None


def read_run_file(repo: Repo, run_id: str, name: str, rev: str = RUNS_REF) -> bytes | None:
    """A file of the run's folder (`stdout.log`, `<output>.dvc`), in either layout."""
    for folder in run_folder_paths(run_id):
        found = read_file(repo, f"{folder}/{name}", rev)
        if found is not None:
            return found
    return None


def read_record_bytes(repo: Repo, run_id: str, rev: str = RUNS_REF) -> bytes | None:
    """A run's run.toml, or None when there is none; a RecordError when it is larger than
    MAX_RECORD_BYTES (its content is never read: a damaged record costs only itself)."""
    reader = repo.reader()
    for folder in run_folder_paths(run_id):
        found = reader.read_limited(f"{rev}:{folder}/run.toml", MAX_RECORD_BYTES)
        if found is not None:
            break
    else:
        return None
    if isinstance(found[2], int):
        raise RecordError(run_id, too_large(found[2]))
    return found[2]


def has_record(repo: Repo, run_id: str, rev: str = RUNS_REF) -> bool:
    """Whether the branch holds a run.toml for the run (not read: any size answers)."""
    reader = repo.reader()
    return any(
        reader.read_limited(f"{rev}:{folder}/run.toml", 0) is not None
        for folder in run_folder_paths(run_id)
    )


def list_run_ids(
    repo: Repo, prefix: str = "", rev: str = RUNS_REF, blobs: dict[str, str] | None = None
) -> list[str]:
    """Ids of the runs on the branch, in either layout; with a 2+ character prefix only one
    shard is read (and, with 4+, one sub-shard of it).

    `blobs`, when given, is filled with {run id: blob id of its run.toml} (a folder without one
    is listed but left out there), all from one `git ls-tree -r`: what a full index build reads.
    """
    if blobs is not None:
        return _run_blobs(repo, rev, prefix, blobs)
    reader = repo.reader()
    if len(prefix) >= 2:
        found = reader.read(f"{rev}:runs/{prefix[:2]}")
        return sorted(i for i in _shard_ids(reader, found, prefix[2:4]) if i.startswith(prefix))
    runs = reader.read(f"{rev}:runs")
    if runs is None:
        return []
    ids: list[str] = []
    for shard, (mode, sha) in sorted(parse_tree(runs[2]).items()):
        if mode == MODE_TREE and shard.startswith(prefix):
            ids.extend(sorted(_shard_ids(reader, reader.read(sha))))
    return ids


def _shard_ids(
    reader: CatFile, shard: tuple[str, str, bytes] | None, sub_prefix: str = ""
) -> list[str]:
    """The run ids in a shard folder: its sub-shards' folders (those whose two characters start
    with `sub_prefix`) and the folders it holds itself, the old layout."""
    if shard is None:
        return []
    ids: list[str] = []
    for name, (mode, sha) in parse_tree(shard[2]).items():
        if len(name) != 2:
            ids.append(name)
        elif mode == MODE_TREE and name.startswith(sub_prefix[:2]):
            sub = reader.read(sha)
            ids.extend(parse_tree(sub[2]) if sub else ())
    return ids


def run_folders(repo: Repo, ids: Iterable[str], rev: str, blobs: dict[str, str]) -> list[str]:
    """Those of `ids` whose folder is on `rev` (with or without a run.toml), `blobs` filled as
    `list_run_ids` fills it: a sync's look at the folders whose other files changed."""
    found: list[str] = []
    wanted = sorted(set(ids))
    for at in range(0, len(wanted), 500):  # a bounded command line
        paths = [p for i in wanted[at : at + 500] for p in run_folder_paths(i)]
        found += _run_blobs(repo, rev, "", blobs, paths)
    return sorted(set(found) & set(wanted))


def _run_blobs(
    repo: Repo, rev: str, prefix: str, blobs: dict[str, str], paths: Iterable[str] = ("runs",)
) -> list[str]:
    """`list_run_ids` with each run.toml's blob id, from one bounded `git ls-tree -r`."""
    proc = repo.git(*READ_LIMITS, "ls-tree", "-r", "-z", rev, "--", *paths, check=False)
    if proc.returncode != 0:
        return []
    folders: set[str] = set()
    for entry in proc.stdout.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        found = split_run_path(path.decode("utf-8", "surrogateescape"))
        if found is None or not found[0].startswith(prefix):
            continue
        run_id, name = found
        folders.add(run_id)
        if name == "run.toml" and meta.startswith(b"100"):
            blobs[run_id] = meta.split()[2].decode()
    return sorted(folders)


def run_files(repo: Repo, run_id: str, rev: str = RUNS_REF) -> dict[str, str]:
    """{file name: blob sha} of a run's folder on the branch."""
    reader = repo.reader()
    for folder in run_folder_paths(run_id):
        found = reader.read(f"{rev}:{folder}")
        if found is not None:
            return {n: sha for n, (_, sha) in parse_tree(found[2]).items()}
    return {}


DIFF_RUNS = ("diff-tree", "-r", "--no-renames", "--raw", "-z")


class RunChanges:
    """`git diff-tree` of the runs between two branch commits, started now and read later by
    `changed_runs`: a sync starts it before its imports and checks, which then cost no wait."""

    def __init__(self, repo: Repo, old: str, new: str) -> None:
        import subprocess  # not at the top: a clean recording starts no process through it
        import tempfile  # not at the top: it imports shutil, which recording runs never load

        self.old, self.new = old, new
        # a file, not a pipe: git never waits for its reader (closed by `cancel`)
        self.out = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["git", *DIFF_RUNS, old, new, "--", "runs"],
            cwd=repo.root,
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=subprocess.PIPE,
        )

    def output(self) -> bytes:
        """What git printed (its error is a GitError)."""
        _, err = self.proc.communicate()
        if self.proc.returncode != 0:
            message = err.decode(errors="replace").strip() or f"exit {self.proc.returncode}"
            raise GitError(f"git diff-tree failed: {message}")
        self.out.seek(0)
        return self.out.read()

    def cancel(self) -> None:
        """Stop git if still running and drop its output."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.out.close()


def changed_runs(
    repo: Repo,
    old: str,
    new: str,
    blobs: dict[str, str] | None = None,
    started: RunChanges | None = None,
    others: set[str] | None = None,
) -> tuple[set[str], set[str]]:
    """(changed or added, removed) run ids between two branch commits, via git diff-tree.

    `blobs`, when given, is filled with {run id: blob id of its new run.toml} of the changed
    ones (what a sync then reads, without looking the paths up again); `started` is the same
    diff already under way; `others`, when given, gets the ids of the folders where another
    file than run.toml changed, or run.toml became no file (a folder without run.toml is a
    run too, to the index).
    """
    if started is not None and (started.old, started.new) == (old, new):
        output = started.output()
    else:
        output = repo.git(*DIFF_RUNS, old, new, "--", "runs").stdout
    fields = output.decode("utf-8", "surrogateescape").split("\0")
    changed: set[str] = set()
    removed: set[str] = set()
    went: dict[str, str] = {}  # run id: blob of the run.toml removed (a moved one reappears)
    came: dict[str, str] = {}
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        found = split_run_path(path)
        if found is None or found[1] != "run.toml":
            if others is not None and found is not None and found[1]:
                others.add(found[0])
            continue
        run_id = found[0]
        info = meta.split()  # :old-mode new-mode old-blob new-blob status
        if info[-1:] == ["D"]:
            removed.add(run_id)
            went[run_id] = info[2] if len(info) >= 5 else ""
            continue
        if others is not None and len(info) >= 5 and not info[1].startswith("100"):
            others.add(run_id)  # a run.toml that is no file (a link): its folder looked at
            continue
        changed.add(run_id)
        came[run_id] = info[3] if len(info) >= 5 else "?"
        if blobs is not None and len(info) >= 5 and info[1].startswith("100"):
            blobs[run_id] = info[3]
    # a run.toml moved from gittrack 0.1's layout unchanged is no change; one moved and
    # rewritten is a change, not a removal
    moved = {i for i in changed & removed if went[i] == came[i]}
    if blobs is not None:
        for run_id in moved:
            blobs.pop(run_id, None)
    if others is not None:
        others -= moved
    return changed - moved, removed - changed


def is_ancestor(repo: Repo, old: str, new: str) -> bool:
    return repo.git("merge-base", "--is-ancestor", old, new, check=False).returncode == 0


# -- bulk import ----------------------------------------------------------------------------


@guarded
def import_runs(repo: Repo, records: Iterable[RunRecord]) -> int:
    """Append many runs, one commit each, through one `git fast-import` (histories, tests).

    Much faster than `write_run` per run because objects go into one pack and the branch moves
    once; without the per-run fsync and lock, so it is meant for building histories, not for
    concurrent recording.
    """
    import subprocess

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
            f"commit {RUNS_REF}\ncommitter {ident} {stamp}\ndata {len(raw)}\n".encode(),
            raw,
            b"\n",
        ]
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
