"""Repairing the runs branch when it names objects that are gone (`gittrack doctor`).

A `git gc --prune=now` racing a writer, or a damaged disk, can leave `refs/heads/gittrack/runs`
pointing at a commit (or a tree below it) that no longer exists. The branch's reflog remembers
every commit it pointed at; the newest one whose objects are all present is where it goes back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GitError
from .branch import _update_refs, branch_lock
from .objects import RUNS_REF, Repo


@dataclass
class BranchRepair:
    """What repairing the runs branch found: the broken tip and where it now points."""

    broken: str  # the commit the branch named
    restored: str  # the intact commit it points at now ("" when none was found)
    lost: int  # reflog entries newer than `restored` that were skipped as damaged


def complete(repo: Repo, commit: str) -> bool:
    """Whether `commit` and every object reachable from it are present."""
    proc = repo.git("rev-list", "--objects", "--quiet", commit, "--", check=False)
    return proc.returncode == 0


def branch_damage(repo: Repo) -> str | None:
    """The runs branch's commit when it names missing objects, else None (also when absent)."""
    proc = repo.git("rev-parse", "--verify", "--quiet", RUNS_REF, check=False)
    tip = proc.stdout.decode().strip()
    if proc.returncode != 0 or not tip:
        return None
    return None if complete(repo, tip) else tip


def reflog(repo: Repo) -> list[str]:
    """Every commit the runs branch pointed at, newest first, read from the reflog file itself
    (`git reflog` refuses a ref whose tip is missing)."""
    path = repo.common_dir / "logs" / RUNS_REF
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = [line.split()[1] for line in reversed(lines) if len(line.split()) > 1]
    return [sha for sha in dict.fromkeys(found) if len(sha) == 40 and sha.strip("0")]


def repair_branch(repo: Repo) -> BranchRepair | None:
    """Point a damaged runs branch back at its newest intact commit from the reflog."""
    # the check walks every object (seconds on a long history): writers wait only for a repair
    if branch_damage(repo) is None:
        return None
    with branch_lock(repo):
        broken = branch_damage(repo)  # again: a writer may have moved the branch meanwhile
        if broken is None:
            return None
        candidates = reflog(repo)
        skipped = 0
        for commit in candidates:
            if commit != broken and complete(repo, commit):
                proc = _update_refs(repo, [f"update {RUNS_REF} {commit} {broken}"])
                if proc.returncode != 0:
                    message = proc.stderr.decode(errors="replace").strip()
                    raise GitError(f"could not move {RUNS_REF} back to {commit[:10]}: {message}")
                # drop the reflog entries naming the missing objects, which fsck reports
                repo.git("reflog", "expire", "--stale-fix", "--expire=never", RUNS_REF, check=False)
                return BranchRepair(broken, commit, skipped)
            skipped += commit != broken
        return BranchRepair(broken, "", skipped)
