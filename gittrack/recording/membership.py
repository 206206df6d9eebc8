"""A reused run joining the experiment that reused it, through a git note on its commit.

The earlier run's commit is never rewritten: an `experiment: NAME` line in its note (see
model/notes.py) makes it a member, which the lookup table reads like the record's own field.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import store
from .._ids import short
from ..index.db import Index
from ..model.notes import parse_note


def join(repo: store.Repo, run_id: str, experiment: str) -> bool:
    """Make run `run_id` a member of `experiment`; False when it already was (nothing written)."""
    row = Index(repo).get(run_id)
    if row is None or not row["commit"] or not experiment:
        return False
    record = row["record"] or {}
    if experiment == record.get("experiment") or experiment in (record.get("experiments") or []):
        return False
    commit = row["commit"]
    written = False

    def update(read: Callable[[str], bytes | None]) -> dict[str, bytes | None]:
        nonlocal written
        data = read(commit)
        note = parse_note(data) if data is not None else parse_note(b"")
        if experiment in note.experiments:
            written = False
            return {}
        note.run = run_id
        note.experiments.append(experiment)
        written = True
        return {commit: note.to_bytes()}

    store.update_notes(
        repo,
        update,
        f"gittrack: {short(run_id)} joins experiment {experiment}\n\nRun-Id: {run_id}\n",
    )
    return written
