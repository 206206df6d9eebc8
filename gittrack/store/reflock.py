"""Moving loose refs in-process with git's own lock-file protocol, instead of `git update-ref`.

What `git update-ref --stdin` does for a loose ref in the files backend, done here to spare a
git process a run: create `<ref>.lock` exclusively (a writer holding it, git or gittrack, makes
the others retry), compare the ref's value under the lock, write the new value into the lock,
append the reflog line, fsync both, rename the lock over the ref. Only the plain case is done
here: anything this module does not handle exactly as git would (a packed or symbolic ref, a
reference-transaction hook, config that changes how refs or reflogs are written, a repository
extension such as reftable, a commit that is not known to exist, the checked-out branch) answers
None, and the caller runs git.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

from .identity import config_files
from .localread import is_sha, packed_value
from .objects import CODE_REF_PREFIX, RUNS_REF, ZERO, Identity, Repo, _timestamp
from .packs import fsync_all
from .procs import pid_alive

_OWNERS = itertools.count()  # this process's lock-owner files (threads may update at once)

# config that changes what a ref update does: git handles those repositories itself
# (an existing reflog is appended to whatever core.logAllRefUpdates says, as git does)
_CONFIG_MARKERS = (b"extensions", b"hookspath", b"include")
_ENV_MARKERS = (
    "GIT_DIR",
    "GIT_COMMON_DIR",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_COMMITTER_DATE",  # the reflog line's time would be git's
)


class Outcome:
    """How a ref update ended: git's exit code and what it wrote on stderr (as from
    `git update-ref --stdin`), without importing subprocess for a CompletedProcess."""

    __slots__ = ("returncode", "stderr")

    def __init__(self, returncode: int, stderr: bytes = b"") -> None:
        self.returncode = returncode
        self.stderr = stderr


def update(repo: Repo, lines: list[str], folders: Iterable[Path] = ()) -> Outcome | None:
    """Apply `update <ref> <new> <old>` and `verify <ref> <value>` lines as one locked update.

    `folders` (holding the new objects' entries) are fsynced together with the new value, all
    before the ref is renamed into place: one wait on the disk for both.

    Returns what `git update-ref --stdin` would (exit 0, or 1 with git's message on stderr:
    "cannot lock ref ...: is at X but expected Y", "Unable to create '....lock': File exists."),
    or None when git must do it. Only RUNS_REF may be updated against an old value; a code
    keep-alive ref may be set without one (`update <ref> <new>`, git keeping no reflog for it);
    other refs may only be verified.
    """
    ops: list[tuple[str, str, str]] = []  # (ref, new or "" to verify, expected or "" for any)
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0] == "update" and parts[1] == RUNS_REF:
            ops.append((parts[1], parts[2], parts[3]))
        elif len(parts) == 3 and parts[0] == "update" and parts[1].startswith(CODE_REF_PREFIX):
            ops.append((parts[1], parts[2], ""))
        elif len(parts) == 3 and parts[0] == "verify" and parts[2] != ZERO:
            ops.append((parts[1], "", parts[2]))
        else:
            return None
    configs = _config_texts(repo)
    if not ops or len({ref for ref, _, _ in ops}) != len(ops) or configs is None:
        return None
    if not _plain(repo, configs):
        return None
    if any(new and not old and not _unlogged(repo, ref, configs) for ref, new, old in ops):
        return None
    ops.sort()
    taken: list[tuple[str, int]] = []  # (lock path, descriptor)
    owner = ""  # the file saying this process holds them
    renamed: set[str] = set()  # locks that became the ref: the path may be another's lock now
    try:
        for ref, _, _ in ops:
            lock = os.path.join(repo.common_dir, ref + ".lock")
            try:
                fd = _create(repo, lock)
            except FileExistsError:
                return _failed(f"Unable to create '{lock}': File exists.")
            except OSError:  # a file in the way of its folder, say: git decides
                return None
            taken.append((lock, fd))
        owner = _own(repo, taken)
        for ref, new, expected in ops:
            if not expected:  # set whatever it holds: only a file or folder in the way matters
                if os.path.isdir(os.path.join(repo.common_dir, ref)) or _value(repo, ref) is None:
                    return None
                if not _is_commit(repo, new):
                    return None
                continue
            current = _value(repo, ref, packed=not new)
            if current is None:
                return None  # packed (to update), symbolic or unreadable: git knows
            if current != expected:
                shown = "it does not exist" if current == ZERO else f"is at {current}"
                return _failed(f"cannot lock ref '{ref}': {shown} but expected {expected}")
            if new and not _is_commit(repo, new):
                return None  # git says what is wrong with it
        return _commit(repo, ops, taken, folders, renamed)
    finally:
        for lock, fd in taken:  # whatever was not committed is released
            with contextlib.suppress(OSError):
                os.close(fd)
            if lock not in renamed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)
        if owner:
            with contextlib.suppress(OSError):
                os.unlink(owner)


def _own(repo: Repo, taken: list[tuple[str, int]]) -> str:
    """Say which ref locks this process holds (`<state>/reflocks/<host>.<pid>.<n>`: each lock's
    inode and path), so that if it dies holding them the next writer clears them at once
    (`clear_dead`). Best effort: without it, locks are cleared once they are stale."""
    folder = os.path.join(repo.state_dir, "reflocks")
    path = os.path.join(folder, f"{os.uname().nodename}.{os.getpid()}.{next(_OWNERS)}")
    lines = "".join(f"{os.fstat(fd).st_ino} {lock}\n" for lock, fd in taken)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                repo.make_dir(Path(folder))
            continue
        except OSError:
            return ""
        try:
            _write_all(fd, lines.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
        return path
    return ""


def clear_dead(repo: Repo) -> int:
    """Remove the ref locks that processes of this host held when they died; how many.

    A lock is removed only while it is still the very file its owner created (same inode): a
    lock taken since by anyone else is left alone.
    """
    folder = os.path.join(repo.state_dir, "reflocks")
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    host = os.uname().nodename
    cleared = 0
    for name in names:
        owner_host, _, rest = name.rpartition(".")[0].rpartition(".")
        if owner_host != host or not rest.isdigit() or pid_alive(int(rest)):
            continue
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as fh:
                listed = fh.read(1 << 16).decode("utf-8", "surrogateescape").splitlines()
        except OSError:
            continue
        for line in listed:
            ino, _, lock = line.partition(" ")
            refs = os.path.join(os.path.normpath(repo.common_dir), "refs") + os.sep
            if not ino.isdigit() or not lock.endswith(".lock"):
                continue
            if not os.path.normpath(lock).startswith(refs):
                continue  # only ever a ref's lock
            with contextlib.suppress(OSError):
                if os.stat(lock).st_ino == int(ino):
                    os.unlink(lock)
                    cleared += 1
        with contextlib.suppress(OSError):
            os.unlink(path)
    return cleared


def _commit(
    repo: Repo,
    ops: list[tuple[str, str, str]],
    taken: list[tuple[str, int]],
    folders: Iterable[Path],
    renamed: set[str],
) -> Outcome:
    """Write, log, fsync and rename into place the updates (all compared under their locks)."""
    durable: list[int] = []
    opened: list[int] = []  # descriptors this function opened (folders, reflogs)
    renames: list[tuple[str, str]] = []
    try:
        for folder in folders:
            with contextlib.suppress(FileNotFoundError):  # packed and removed by a gc
                opened.append(os.open(folder, os.O_RDONLY))
                durable.append(opened[-1])
        for (ref, new, expected), (lock, fd) in zip(ops, taken, strict=True):
            if not new:
                continue  # verified: its lock is only released
            _write_all(fd, f"{new}\n".encode())
            repo.share(lock)
            durable.append(fd)
            renames.append((lock, os.path.join(repo.common_dir, ref)))
            if ref != RUNS_REF:
                continue  # a code ref: no reflog, as git keeps (checked by _unlogged)
            log = os.path.join(repo.common_dir, "logs", ref)
            line = f"{expected} {new} {Identity.get(repo)} {_timestamp()}\n"
            log_fd = os.open(log, os.O_WRONLY | os.O_APPEND)  # exists: checked by _plain
            opened.append(log_fd)
            _write_all(log_fd, line.encode("utf-8", "surrogateescape"))
            durable.append(log_fd)
        fsync_all(durable)  # as core.fsync=reference: the new value survives a power cut
        for lock, path in renames:
            os.rename(lock, path)  # the update is visible from here on
            renamed.add(lock)
    except OSError as exc:  # a full disk, a read-only one: in git's words, for the caller
        return _failed(f"cannot update the refs: {exc}")
    finally:
        for log_fd in opened:
            os.close(log_fd)
    return Outcome(0)


def _create(repo: Repo, lock: str) -> int:
    """Create `lock` exclusively, and its folder first when a gc pruned it (as git does)."""
    try:
        return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileNotFoundError:
        repo.make_dir(Path(lock).parent)
        return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _failed(message: str) -> Outcome:
    return Outcome(1, f"fatal: {message}\n".encode())


def _value(repo: Repo, ref: str, packed: bool = False) -> str | None:
    """The ref's value (loose, or with `packed` from packed-refs: what a verify compares), ZERO
    when it exists nowhere, None when git must look (a packed ref to update, symbolic, or not a
    ref file)."""
    try:
        with open(os.path.join(repo.common_dir, ref), "rb") as fh:
            data = fh.read(100)
    except FileNotFoundError:
        data = b""
    except OSError:
        return None
    value = data.strip().decode("ascii", "replace")
    if is_sha(value):
        return value
    if data:
        return None
    found = packed_value(str(repo.common_dir), ref)
    if found == ZERO or (packed and found is not None):
        return found
    return None


def _is_commit(repo: Repo, sha: str) -> bool:
    found = repo.reader().read(sha)
    return found is not None and found[1] == "commit"


def _config_texts(repo: Repo) -> list[bytes] | None:
    """The git config files that exist, lowercased; None when one cannot be read."""
    texts = []
    for path in config_files(repo):
        try:
            with open(path, "rb") as fh:
                texts.append(fh.read().lower())
        except FileNotFoundError:
            continue
        except OSError:
            return None
    return texts


def _unlogged(repo: Repo, ref: str, configs: list[bytes]) -> bool:
    """Whether git would keep no reflog for setting `ref` (outside refs/heads): none exists yet
    and no config says core.logAllRefUpdates=always."""
    if os.path.exists(os.path.join(repo.common_dir, "logs", ref)):
        return False
    for text in configs:
        for line in text.splitlines():
            key, _, value = line.partition(b"=")
            if key.strip() == b"logallrefupdates" and value.strip() != b"true":
                return False  # "always", or anything git reads otherwise
    return True


def _plain(repo: Repo, configs: list[bytes]) -> bool:
    """Whether a ref update here is exactly the lock, write, log and rename done in _commit."""
    if any(key in os.environ for key in _ENV_MARKERS):
        return False
    common = str(repo.common_dir)
    if os.path.exists(os.path.join(common, "hooks", "reference-transaction")):
        return False
    if not os.path.isfile(os.path.join(common, "logs", RUNS_REF)):
        return False  # git creates the reflog (or is told not to keep one)
    # the checked-out branch: git logs HEAD's move too
    with contextlib.suppress(OSError), open(os.path.join(repo.git_dir, "HEAD"), "rb") as fh:
        if RUNS_REF.encode() in fh.read():
            return False
    return not any(marker in text for text in configs for marker in _CONFIG_MARKERS)
