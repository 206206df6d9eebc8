"""Tags and notes added after a run: writing git notes on its commit (refs/notes/gittrack).

The note format lives in model/notes.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import store
from .._ids import short
from ..errors import UsageError
from ..index.db import Index
from ..library import resolve_id
from ..model.notes import RunNote, effective, parse_note


def _check_tags(tags: Iterable[str]) -> list[str]:
    clean = []
    for tag in tags:
        tag = tag.strip()
        if not tag or "\n" in tag or "," in tag:
            raise UsageError(
                f"Invalid tag {tag!r}: a tag is a non-empty word without commas or newlines; "
                "quote it if it has spaces."
            )
        clean.append(tag)
    return clean


def _change(
    repo: store.Repo, ref: str, change: Callable[[RunNote, dict[str, Any]], None], message: str
) -> tuple[str, list[str], str]:
    """Apply `change(note, record)` to the run's note; returns (run id, tags, note)."""
    run_id = resolve_id(repo, ref)
    index = Index(repo)
    row = index.get(run_id)
    if row is None or not row["commit"]:
        raise UsageError(
            f"Run {short(run_id)} has no commit on the runs branch yet; tag it once it is recorded."
        )
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
        empty = note.empty
        changes[target] = None if empty else note.to_bytes()
        if empty and read(target) is None:
            del changes[target]
        return changes

    store.update_notes(repo, update, f"{message} {short(run_id)}\n\nRun-Id: {run_id}\n")
    tags, text = effective(record_tags, record.get("note") or "", [result["note"]])
    return run_id, tags, text


def add_tags(repo: store.Repo, ref: str, tags: Iterable[str]) -> tuple[str, list[str]]:
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


def remove_tags(repo: store.Repo, ref: str, tags: Iterable[str]) -> tuple[str, list[str]]:
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


def set_note(repo: store.Repo, ref: str, text: str) -> str:
    """Replace a run's note (an empty text removes it); returns the run's id."""

    def change(note: RunNote, record: dict[str, Any]) -> None:
        # an empty note line hides a note given when the run was recorded
        note.notes = [text.strip()] if text.strip() or record.get("note") else []

    run_id, _, _ = _change(repo, ref, change, "gittrack: note on")
    return run_id
