"""Re-running a recorded run from its exact code, params and inputs, and comparing the two."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CodeUnavailable, RunFailed
from .executors import Task

if TYPE_CHECKING:
    from .. import store
    from ..library.compare import Verdict
    from ..library.run import Run


@dataclass
class RerunReport:
    """The original run, the new one, and per output / metric whether they agree."""

    original: str
    rerun: str
    status: str
    outputs: dict[str, Verdict]  # name -> identical bytes / identical values / differs / ...
    metrics: dict[str, dict[str, Any]]  # name -> {before, after, delta?, same}
    error: str = ""

    @property
    def identical(self) -> bool:
        """Every output identical (in bytes or in values) and every metric equal."""
        return all(v.same for v in self.outputs.values()) and all(
            m["same"] for m in self.metrics.values()
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "rerun": self.rerun,
            "status": self.status,
            "identical": self.identical,
            "outputs": {
                name: {"verdict": v.kind, "detail": v.detail} for name, v in self.outputs.items()
            },
            "metrics": self.metrics,
            "error": self.error,
        }


def compare(before: Run, after: Run) -> tuple[dict[str, Verdict], dict[str, dict[str, Any]]]:
    """Outputs (bytes, then values) and metrics of two runs side by side."""
    from ..library.compare import compare_output

    outputs = {
        name: compare_output(before, after, name)
        for name in sorted(set(before.outputs) | set(after.outputs))
    }
    metrics: dict[str, dict[str, Any]] = {}
    for name in sorted(set(before.metrics) | set(after.metrics)):
        old, new = before.metrics.get(name), after.metrics.get(name)
        entry: dict[str, Any] = {"before": old, "after": new, "same": old == new}
        numeric = (int, float)
        if isinstance(old, numeric) and isinstance(new, numeric) and not isinstance(old, bool):
            entry["delta"] = new - old
        metrics[name] = entry
    return outputs, metrics


def rerun(repo: store.Repo, ref: str, experiment: str = "") -> RerunReport:
    """Run `ref` again from its exact code commit (a temporary worktree), params and inputs.

    The new run records `rerun_of`; it is a member of `experiment` only (by default of none, so
    that the original's experiment does not count the run twice).
    """
    from .. import store
    from ..library.run import Run
    from .executors import LocalExecutor

    original = Run(ref, repo)
    record = original.record
    code = record.code
    if record.exec:
        return _rerun_exec(repo, original, experiment)
    if not code.commit or not code.script:
        raise CodeUnavailable(
            record.id, code.commit or "?", "the record names no code commit or script"
        )
    if repo.reader().read(f"{code.commit}^{{commit}}") is None:
        raise CodeUnavailable(record.id, code.commit, "the commit is not in this repository")
    pins = _pins(record)
    _, _, function = record.command.partition(":")
    try:
        with store.temporary_worktree(repo, code.commit) as tree:
            task = Task(
                script=str(tree / code.script),
                args=list(record.argv),
                function=function or None,
                experiment=experiment,
                force=True,
                allow_failed=True,
                rerun_of=record.id,
                repo=str(tree),
                cwd=str(tree),
                pinned=pins,
            )
            result = next(iter(LocalExecutor(1).run([task])))
    except store.GitError as exc:
        raise CodeUnavailable(record.id, code.commit, str(exc)) from exc
    if not result.run_id:
        raise RunFailed(result, None)
    new = Run(result.run_id, repo)
    outputs, metrics = compare(original, new)
    return RerunReport(record.id, new.id, new.status, outputs, metrics, result.error)


def _rerun_exec(repo: store.Repo, original: Run, experiment: str) -> RerunReport:
    """Run an exec run's program again from its code commit, with its exact params and inputs."""
    from .. import store
    from ..library.run import Run
    from .executors import LocalExecutor

    record = original.record
    args = record.exec.get("args")
    cwd = record.exec.get("cwd", "")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise CodeUnavailable(record.id, record.code.commit or "?", "its [exec] table has no args")
    if not isinstance(cwd, str) or Path(cwd).is_absolute() or ".." in Path(cwd).parts:
        cwd = ""
    if repo.reader().read(f"{record.code.commit}^{{commit}}") is None:
        raise CodeUnavailable(record.id, record.code.commit, "the commit is not in this repository")
    try:
        with store.temporary_worktree(repo, record.code.commit) as tree:
            task = Task(
                script="",
                kind="exec",
                args=list(args),
                experiment=experiment,
                force=True,
                allow_failed=True,
                rerun_of=record.id,
                repo=str(tree),
                cwd=str(tree / cwd),
            )
            result = next(iter(LocalExecutor(1).run([task])))
    except store.GitError as exc:
        raise CodeUnavailable(record.id, record.code.commit, str(exc)) from exc
    if not result.run_id:
        raise RunFailed(result, None)
    new = Run(result.run_id, repo)
    outputs, metrics = compare(original, new)
    return RerunReport(record.id, new.id, new.status, outputs, metrics, result.error)


def _pins(record: Any) -> dict[str, Any]:
    """Params whose recorded values are all ids of the run's inputs: the RunRef parameters.

    Their recorded values (an id, a list, or a list of lists for a click option with
    `multiple=True`) are given back to the rerun as they are: see `runref.Pins`.
    """
    inputs = {i.run for i in record.inputs}
    pins: dict[str, Any] = {}
    for key, value in record.params.items():
        ids = list(_flat(value))
        if ids and all(isinstance(i, str) and i in inputs for i in ids):
            pins[key] = value
    return pins


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        for item in value:
            yield from _flat(item)
    else:
        yield value
