"""Tags and notes added after a run, kept as git notes on its commit (refs/notes/gittrack).

A note is a few `key: value` lines that read well in `git log --notes=gittrack` and survive
`git notes merge -s cat_sort_uniq` (what `gittrack pull` uses): every line stands alone and
their order does not matter::

    note: "checked against the reference data"
    run: 3f2a9c1e0b7d4e21a6c8f0e1d2c3b4a5
    experiment: scan
    tag: reference
    untag: draft

A run's tags are those of its record plus `tag:` lines, minus `untag:` lines (so `untag` can
drop a tag given at run time, and after a merge a removal wins). A `note:` line replaces the
record's note. An `experiment:` line makes the run a member of that experiment besides the one
its record names: a sweep or an Experiment that reuses an earlier run adds it, so that the
earlier run's commit is never rewritten.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from .limits import MAX_NOTE_BYTES as MAX_NOTE_BYTES


@dataclass
class RunNote:
    """The parsed content of one git note on a run commit."""

    run: str = ""
    tags: list[str] = field(default_factory=list)
    untags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.tags or self.untags or self.notes or self.experiments)

    def to_bytes(self) -> bytes:
        lines = [f"run: {self.run}"] if self.run else []
        lines += [f"tag: {t}" for t in self.tags]
        lines += [f"untag: {t}" for t in self.untags]
        lines += [f"note: {json.dumps(n, ensure_ascii=False)}" for n in self.notes]
        lines += [f"experiment: {e}" for e in self.experiments]
        return ("\n".join(sorted(set(lines))) + "\n").encode()

    def merge(self, other: RunNote) -> None:
        self.run = self.run or other.run
        for mine, theirs in (
            (self.tags, other.tags),
            (self.untags, other.untags),
            (self.notes, other.notes),
            (self.experiments, other.experiments),
        ):
            mine.extend(v for v in theirs if v not in mine)


def parse_note(data: bytes) -> RunNote:
    """A note's bytes -> RunNote; a note written by hand (no known keys) is all note text."""
    text = data.decode("utf-8", "replace")
    note = RunNote()
    known = False
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        value = value.strip()
        if not sep or key not in ("run", "tag", "untag", "note", "experiment"):
            continue
        known = True
        if key == "run":
            note.run = value
        elif key == "tag" and value not in note.tags:
            note.tags.append(value)
        elif key == "untag" and value not in note.untags:
            note.untags.append(value)
        elif key == "experiment":
            if value and value not in note.experiments:
                note.experiments.append(value)
        elif key == "note":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
            if isinstance(value, str) and value not in note.notes:
                note.notes.append(value)
    if not known and text.strip():
        note.notes.append(text.strip())
    return note


def effective(
    record_tags: Iterable[str], record_note: str, notes: Iterable[RunNote]
) -> tuple[list[str], str]:
    """A run's tags and note: the record's, changed by its git notes (removals win)."""
    tags = list(dict.fromkeys(record_tags))
    removed: set[str] = set()
    texts: list[str] = []
    for note in notes:
        tags += [t for t in note.tags if t not in tags]
        removed.update(note.untags)
        texts += [n for n in note.notes if n not in texts]
    return [t for t in tags if t not in removed], "\n".join(texts) if texts else record_note


def memberships(record_experiment: str, notes: Iterable[RunNote]) -> list[str]:
    """The experiments a run is a member of: its record's first, then those its notes add."""
    found = [record_experiment] if record_experiment else []
    for note in notes:
        found += [e for e in note.experiments if e not in found]
    return found
