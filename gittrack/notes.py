"""Tags and notes added after a run, kept as git notes on its commit (refs/notes/gittrack).

A note is a few `key: value` lines that read well in `git log --notes=gittrack` and survive
`git notes merge -s cat_sort_uniq` (what `gittrack pull` uses): every line stands alone and
their order does not matter::

    note: "checked against the reference data"
    run: 3f2a9c1e0b7d4e21a6c8f0e1d2c3b4a5
    tag: reference
    untag: draft

A run's tags are those of its record plus `tag:` lines, minus `untag:` lines (so `untag` can
drop a tag given at run time, and after a merge a removal wins). A `note:` line replaces the
record's note.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import gitstore
from .errors import UsageError


@dataclass
class RunNote:
    """The parsed content of one git note on a run commit."""

    run: str = ""
    tags: list[str] = field(default_factory=list)
    untags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        lines = [f"run: {self.run}"] if self.run else []
        lines += [f"tag: {t}" for t in self.tags]
        lines += [f"untag: {t}" for t in self.untags]
        lines += [f"note: {json.dumps(n, ensure_ascii=False)}" for n in self.notes]
        return ("\n".join(sorted(set(lines))) + "\n").encode()

    def merge(self, other: RunNote) -> None:
        self.run = self.run or other.run
        for mine, theirs in ((self.tags, other.tags), (self.untags, other.untags), (self.notes, other.notes)):  # fmt: skip
            mine.extend(v for v in theirs if v not in mine)


def parse_note(data: bytes) -> RunNote:
    """A note's bytes -> RunNote; a note written by hand (no known keys) is all note text."""
    text = data.decode("utf-8", "replace")
    note = RunNote()
    known = False
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        value = value.strip()
        if not sep or key not in ("run", "tag", "untag", "note"):
            continue
        known = True
        if key == "run":
            note.run = value
        elif key == "tag" and value not in note.tags:
            note.tags.append(value)
        elif key == "untag" and value not in note.untags:
            note.untags.append(value)
        elif key == "note":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
            if isinstance(value, str) and value not in note.notes:
                note.notes.append(value)
    if not known and text.strip():
        note.notes.append(text.strip())
    return note


def effective(record_tags: Iterable[str], record_note: str, notes: Iterable[RunNote]) -> tuple[list[str], str]:  # fmt: skip
    """A run's tags and note: the record's, changed by its git notes (removals win)."""
    tags = list(dict.fromkeys(record_tags))
    removed: set[str] = set()
    texts: list[str] = []
    for note in notes:
        tags += [t for t in note.tags if t not in tags]
        removed.update(note.untags)
        texts += [n for n in note.notes if n not in texts]
    return [t for t in tags if t not in removed], "\n".join(texts) if texts else record_note


def _check_tags(tags: Iterable[str]) -> list[str]:
    clean = []
    for tag in tags:
        tag = tag.strip()
        if not tag or "\n" in tag or "," in tag:
            raise UsageError(f"Invalid tag {tag!r}: a tag is a non-empty word without commas or newlines; quote it if it has spaces.")  # fmt: skip
        clean.append(tag)
    return clean


def _change(repo: gitstore.Repo, ref: str, change: Callable[[RunNote, dict[str, Any]], None], message: str) -> tuple[str, list[str], str]:  # fmt: skip
    """Apply `change(note, record)` to the run's note; returns (run id, tags, note)."""
    from .index import Index
    from .refs import resolve_id

    run_id = resolve_id(repo, ref)
    index = Index(repo)
    row = index.get(run_id)
    if row is None or not row["commit"]:
        raise UsageError(f"Run {run_id[:8]} has no commit on the runs branch yet; tag it once it is recorded.")  # fmt: skip
    target = row["commit"]
    others = [o for o in index.note_objects(run_id) if o != target]
    record = row["recorded"]  # tags and note as the run recorded them, before any git note
    record_tags = list(record.get("tags") or [])
    result: dict[str, RunNote] = {}

    def update(read: Callable[[str], bytes | None]) -> dict[str, bytes | None]:
        note = RunNote(run=run_id)
        for commit in [target, *others]:
            data = read(commit)
            if data is not None:
                note.merge(parse_note(data))
        note.run = run_id
        change(note, record)
        note = parse_note(note.to_bytes())  # as stored: lines sorted
        result["note"] = note
        changes: dict[str, bytes | None] = {c: None for c in others if read(c) is not None}
        empty = not (note.tags or note.untags or note.notes)
        changes[target] = None if empty else note.to_bytes()
        if empty and read(target) is None:
            del changes[target]
        return changes

    gitstore.update_notes(repo, update, f"{message} {run_id[:8]}\n\nRun-Id: {run_id}\n")
    tags, text = effective(record_tags, record.get("note") or "", [result["note"]])
    return run_id, tags, text


def add_tags(repo: gitstore.Repo, ref: str, tags: Iterable[str]) -> tuple[str, list[str]]:
    """Tag a run; returns its id and its tags afterwards."""
    wanted = _check_tags(tags)

    def change(note: RunNote, record: dict[str, Any]) -> None:
        for tag in wanted:
            if tag in note.untags:
                note.untags.remove(tag)
            if tag not in note.tags and tag not in (record.get("tags") or []):
                note.tags.append(tag)

    run_id, now, _ = _change(repo, ref, change, "gittrack: tag " + " ".join(wanted))
    return run_id, now


def remove_tags(repo: gitstore.Repo, ref: str, tags: Iterable[str]) -> tuple[str, list[str]]:
    """Remove tags from a run (also tags given when it ran); returns its id and tags afterwards."""
    unwanted = _check_tags(tags)

    def change(note: RunNote, record: dict[str, Any]) -> None:
        for tag in unwanted:
            if tag in note.tags:
                note.tags.remove(tag)
            if tag in (record.get("tags") or []) and tag not in note.untags:
                note.untags.append(tag)

    run_id, now, _ = _change(repo, ref, change, "gittrack: untag " + " ".join(unwanted))
    return run_id, now


def set_note(repo: gitstore.Repo, ref: str, text: str) -> str:
    """Replace a run's note (an empty text removes it); returns the run's id."""

    def change(note: RunNote, record: dict[str, Any]) -> None:
        # an empty note line hides a note given when the run was recorded
        note.notes = [text.strip()] if text.strip() or record.get("note") else []

    run_id, _, _ = _change(repo, ref, change, "gittrack: note on")
    return run_id
