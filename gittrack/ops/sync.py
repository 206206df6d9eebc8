"""Sharing runs with collaborators: `push` and `pull` through a git remote and the DVC remote.

What travels where: the runs branch, the keep-alive refs of every code commit a run executed and
the gittrack notes go to the git remote; outputs go to the DVC remote configured on the runs
branch (through gittrack.outputs, when the data layer is present).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import store
from ..errors import GittrackError, NoSuchRemote, RemoteMoved
from ..recording.died import record_died
from ..store import project
from .data import push_outputs

DEFAULT_REMOTE = "origin"


@dataclass
class PullSummary:
    """What a pull brought in."""

    remote: str
    # "nothing" (remote has no runs branch), "up-to-date", "created", "fast-forward", "merge"
    kind: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_ours: list[str] = field(default_factory=list)
    notes: bool = False
    tip: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PushSummary:
    """What a push sent, to the git remote and to the DVC remote."""

    remote: str  # "" when there is no git remote
    updated: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    data: Any = None  # what the data layer reported, None when it is absent
    data_error: str = ""

    @property
    def updated_line(self) -> str:
        """The refs updated, code refs counted rather than listed (a study has hundreds)."""
        named = [r for r in self.updated if not r.startswith(store.CODE_REF_PREFIX)]
        code = len(self.updated) - len(named)
        if code:
            named.append(f"{code} code commit{'s' if code != 1 else ''}")
        return ", ".join(named)

    def to_json_dict(self) -> dict[str, Any]:
        import dataclasses
        import json

        data = self.data
        if dataclasses.is_dataclass(data) and not isinstance(data, type):
            data = json.loads(json.dumps(dataclasses.asdict(data), default=str))
        elif not isinstance(data, int | str | list | dict | None):
            data = str(data)
        return {**self.__dict__, "data": data}


def _check_remote(repo: store.Repo, remote: str | None) -> str | None:
    """The remote to use, or None when the default is wanted and no remote exists."""
    known = store.git_remotes(repo)
    if remote is None:
        if DEFAULT_REMOTE in known:
            return DEFAULT_REMOTE
        if not known:
            return None
        if len(known) == 1:
            return known[0]
        raise NoSuchRemote(DEFAULT_REMOTE, known)
    if remote not in known:
        raise NoSuchRemote(remote, known)
    return remote


def pull(repo: store.Repo, remote: str | None = None) -> PullSummary:
    """Fetch a remote's runs, code refs and notes, and join its runs with ours."""
    name = _check_remote(repo, remote)
    if name is None:
        raise NoSuchRemote(remote or DEFAULT_REMOTE, [])
    store.ensure_excluded(repo, project.EXCLUDES)
    repo.make_dir(repo.state_dir)
    theirs = store.fetch_shared(repo, name)
    notes = store.merge_notes(repo, name)
    if theirs is None:
        current = store.tip(repo)
        return PullSummary(name, "nothing", notes=notes, tip=current[0] if current else "")
    joined = store.join_branch(repo, theirs, f"{name}'s gittrack/runs")
    return PullSummary(
        name, joined.kind, joined.added, joined.removed, joined.kept_ours, notes, joined.new
    )


def push(
    repo: store.Repo, remote: str | None = None, *, data: bool = True, progress: bool = False
) -> PushSummary:
    """Send the runs branch, code refs and notes to a git remote, and outputs to the DVC remote.

    With no git remote at all, only the outputs are pushed (the runs stay in this repository).
    """
    name = _check_remote(repo, remote)
    record_died(repo)  # died runs travel as died, not as staging folders left behind
    summary = PushSummary(name or "")
    if data:  # first: a collaborator who fetches the runs then finds their data
        try:
            summary.data = push_outputs(repo, progress=progress)
        except GittrackError as exc:  # the records still travel; the data follows later
            summary.data_error = str(exc)
    if name is not None and store.tip(repo) is not None:
        result = store.push_shared(repo, name)
        if result.rejected:
            raise RemoteMoved(name, result.rejected)
        summary.updated, summary.up_to_date = result.updated, result.up_to_date
    return summary
