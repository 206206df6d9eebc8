"""`gittrack doctor`: bring a repository's gittrack state back to consistent, saying what it did.

Reads never write, so runs whose process died stay staged until a writer commits them; this is
the explicit way to do it (a run ending, a sweep or `push` do it too). It also repairs a runs
branch that names missing objects (left by a `git gc --prune=now` racing a writer): the branch
goes back to its newest intact commit in the reflog, and staged runs are committed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import store
from .._ids import short
from ..recording.died import record_died


@dataclass
class DoctorReport:
    """What `doctor` found and did."""

    died: list[str] = field(default_factory=list)  # died runs committed
    branch: store.BranchRepair | None = None  # the runs branch's repair, if it needed one

    @property
    def actions(self) -> list[str]:
        done = []
        if self.branch and self.branch.restored:
            skipped = self.branch.lost
            lost = f", skipping {skipped} damaged later commit(s)" if skipped else ""
            done.append(
                f"gittrack/runs pointed at {self.branch.broken[:10]}, whose objects are "
                f"missing; moved it back to {self.branch.restored[:10]}, its newest intact "
                f"commit in the reflog{lost}"
            )
        elif self.branch:
            done.append(
                f"gittrack/runs points at {self.branch.broken[:10]}, whose objects are missing, "
                "and its reflog holds no intact commit; restore it from a clone "
                "('gittrack pull'), or remove it with 'git update-ref -d "
                "refs/heads/gittrack/runs' and run 'gittrack init'"
            )
        done += [
            f"run {short(run_id)} recorded as died (its process is gone)" for run_id in self.died
        ]
        return done

    @property
    def healthy(self) -> bool:
        """False when something is still broken after the repair."""
        return not (self.branch and not self.branch.restored)


def doctor(repo: store.Repo) -> DoctorReport:
    """Repair a runs branch naming missing objects, then commit died runs."""
    repaired = store.repair_branch(repo)
    if repaired and not repaired.restored:
        return DoctorReport(branch=repaired)
    return DoctorReport(died=record_died(repo), branch=repaired)
