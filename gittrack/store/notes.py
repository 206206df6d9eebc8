"""Tags and notes on run commits (refs/notes/gittrack)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ..errors import GitError, RepoNotWritable, UsageError
from ..model.notes import MAX_NOTE_BYTES
from .branch import _remove_stale_ref_locks, _update_refs, branch_lock
from .gcguard import guarded
from .objects import (
    MODE_BLOB,
    NOTES_REF,
    ZERO,
    Entry,
    Identity,
    ObjectWriter,
    Repo,
    edit_tree,
    jitter,
    make_commit,
)

# -- notes: tags and notes on run commits (refs/notes/gittrack) -----------------------------
#
# Notes are plain git notes, so `git log --notes=gittrack gittrack/runs` shows them and they
# travel with the notes ref. Written here with the same compare-and-swap as the branch, at a
# 2/38 fan-out; a note found at another fan-out (written by `git notes`) is moved.


def notes_tip(repo: Repo) -> str | None:
    """The commit at the tip of refs/notes/gittrack, or None when no note was ever written."""
    found = repo.reader().read(NOTES_REF)  # as the ref is now (LocalObjects.pin)
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
        found = reader.read_limited(f"{rev}:{path}", MAX_NOTE_BYTES)
        if found is not None and found[1] == "blob":  # one over the limit is not a note
            return found[2] if isinstance(found[2], bytes) else None
    return None


@guarded
def update_notes(
    repo: Repo,
    update: Callable[[Callable[[str], bytes | None]], Mapping[str, bytes | None]],
    message: str,
) -> str | None:
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
                if content is not None and len(content) > MAX_NOTE_BYTES:
                    raise UsageError(
                        f"The note of commit {commit[:8]} would be {len(content):,} bytes, "
                        f"over the {MAX_NOTE_BYTES >> 20} MiB a run's note may hold; "
                        "shorten it (or store the text as an output)."
                    )
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
            time.sleep(min(0.2, 0.001 * attempt) * jitter())
