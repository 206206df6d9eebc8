"""Tags, notes and memberships added after a run (git notes), kept in step in the lookup table.

The `notes` table holds each note's text by the commit it annotates; a run's current tags, note
and experiments (in `run_fields`, `tags` and `members`) are its record's, changed by its notes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

from .. import store
from .records import effective, exact, joined, memberships
from .sql import chunked


def sync_notes(db: sqlite3.Connection, repo: store.Repo, known: str, tip: str) -> set[str]:
    """Update the notes table to notes commit `tip`; returns the run ids whose notes changed."""
    from ..model.notes import MAX_NOTE_BYTES, parse_note

    changes: dict[str, str | None] = {}  # annotated object -> blob (None: removed)
    touched: set[str] = set()
    if known and tip and repo.reader().read(known) is not None:
        proc = repo.git("diff-tree", "-r", "--no-renames", "-z", known, tip)
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            parts = meta.split()
            if len(parts) >= 5:
                changes[path.replace("/", "")] = None if parts[4] == "D" else parts[3]
    else:  # first sync, notes ref deleted or rewritten beyond reach: read all notes
        touched = {r[0] for r in db.execute("SELECT run_id FROM notes")}
        db.execute("DELETE FROM notes")
        if tip:
            proc = repo.git("ls-tree", "-r", "-z", tip)
            for entry in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
                meta, _, path = entry.partition("\t")
                if path:
                    changes[path.replace("/", "")] = meta.split()[2]
    blobs = [b for b in changes.values() if b]
    # a note over the limit (damaged, or a collaborator's hostile push) is passed over unread
    found = repo.reader().read_many_limited(blobs, MAX_NOTE_BYTES) if blobs else ()
    contents = {blob: data for blob, data in found if isinstance(data, bytes)}
    for obj, blob in changes.items():
        touched.update(
            r[0] for r in db.execute("SELECT run_id FROM notes WHERE object = ?", (obj,))
        )
        db.execute("DELETE FROM notes WHERE object = ?", (obj,))
        data = contents.get(blob) if blob else None
        if data is None:
            continue
        note = parse_note(data)
        run_id = note.run or _run_of_commit(db, repo, obj)
        if run_id:
            db.execute(
                "INSERT INTO notes VALUES (?, ?, ?)",
                (obj, run_id, data.decode("utf-8", "replace")),
            )
            touched.add(run_id)
    return touched


# the index holds each commit's first 8 digits (fewer pages for a sync to rewrite); the `+`
# keeps SQLite from dropping it for a scan, as it does when the whole id is compared too
RUN_OF_COMMIT = "SELECT id FROM run_fields WHERE substr(commit_sha, 1, 8) = ? AND +commit_sha = ?"


def _run_of_commit(db: sqlite3.Connection, repo: store.Repo, commit: str) -> str:
    row = db.execute(RUN_OF_COMMIT, (commit[:8], commit)).fetchone()
    if row:
        return str(row[0])
    found = repo.reader().read(commit)
    match = re.search(rb"^Run-Id: (\w+)$", found[2], re.M) if found else None
    return match.group(1).decode() if match else ""


def notes_by_run(
    db: sqlite3.Connection, run_ids: Iterable[str] | None = None
) -> dict[str, list[Any]]:
    """{run id: its parsed git notes} of every run with notes (or of `run_ids`)."""
    texts = note_texts(db, run_ids)
    if not texts:
        return {}
    from ..model.notes import parse_note

    return {run_id: [parse_note(t.encode()) for t in found] for run_id, found in texts.items()}


def note_texts(
    db: sqlite3.Connection, run_ids: Iterable[str] | None = None
) -> dict[str, list[str]]:
    """{run id: the texts of its git notes} of every run with notes (or of `run_ids`)."""
    found: dict[str, list[str]] = {}
    rows: Iterable[tuple[str, str]]
    if run_ids is None:
        rows = db.execute("SELECT run_id, content FROM notes ORDER BY object")
    else:
        rows = []
        for chunk, marks in chunked(sorted(set(run_ids))):
            rows += db.execute(
                f"SELECT run_id, content FROM notes WHERE run_id IN ({marks}) ORDER BY object",
                chunk,
            ).fetchall()
    for run_id, content in rows:
        found.setdefault(run_id, []).append(content)
    return found


def refresh_tags(db: sqlite3.Connection, run_ids: set[str]) -> None:
    """Recompute the tags, note and experiments of runs whose git notes changed."""
    if not run_ids:
        return
    notes = notes_by_run(db, run_ids)
    for run_id in run_ids:
        row = db.execute("SELECT rid, record FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            continue
        record = json.loads(row[1]) if row[1] else {}
        tag_list, note = effective(record, notes.get(run_id, []))
        member_of = memberships(record, notes.get(run_id, []))
        db.execute(
            "UPDATE run_fields SET tags = ?, note = ?, joined = ?, exact = ? WHERE rid = ?",
            (
                json.dumps(tag_list),
                note,
                joined(record, member_of),
                exact(record, tag_list, note, member_of),
                row[0],
            ),
        )
        db.execute("DELETE FROM tags WHERE run = ?", (row[0],))
        db.executemany("INSERT OR IGNORE INTO tags VALUES (?, ?)", [(t, row[0]) for t in tag_list])
        db.execute("DELETE FROM members WHERE run = ?", (row[0],))
        db.executemany(
            "INSERT OR IGNORE INTO members VALUES (?, ?)", [(e, row[0]) for e in member_of]
        )
