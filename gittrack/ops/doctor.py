"""`gittrack doctor`: bring a repository's gittrack state back to consistent, saying what it did.

Reads never write, so runs whose process died stay staged until a writer commits them; this is
the explicit way to do it (a run ending, a sweep or `push` do it too).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import store
from ..recording.died import record_died


@dataclass
class DoctorReport:
    """What `doctor` found and did."""

    died: list[str] = field(default_factory=list)  # died runs committed

    @property
    def actions(self) -> list[str]:
        return [f"run {run_id[:8]} recorded as died (its process is gone)" for run_id in self.died]


def doctor(repo: store.Repo) -> DoctorReport:
    """Commit died runs."""
    return DoctorReport(died=record_died(repo))
