"""gittrack's error tree: each error is one sentence saying what is wrong and how to fix it."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any

from ._ids import short


class GittrackError(Exception):
    """Base of every error gittrack raises on purpose; the CLI prints it as one line."""

    exit_code = 1  # what the command line exits with


class NotAGitRepo(GittrackError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is not inside a git repository. "
            "Run 'git init' there first (or 'gittrack init --git')."
        )


class NoCommits(GittrackError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"The git repository at {path} has no commits yet. "
            "Commit your code first, e.g. 'git add -A && git commit -m start'."
        )


class RepoNotWritable(GittrackError):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"Cannot write to the git repository at {path} ({reason}). "
            "Check its permissions and free disk space before running."
        )


class RunNotFound(GittrackError, LookupError):
    def __init__(self, ref: str, suggestions: Sequence[str] = ()) -> None:
        self.ref = ref
        self.suggestions = list(suggestions)
        hint = ""
        if self.suggestions:
            hint = f" Did you mean {', '.join(self.suggestions)}?"
        super().__init__(f"No run matches \"{ref}\".{hint} ('gittrack ls' lists runs.)")


class AmbiguousRun(GittrackError, LookupError):
    def __init__(self, ref: str, candidates: Sequence[str]) -> None:
        self.ref = ref
        self.candidates = list(candidates)
        shown = ", ".join(c[:12] for c in self.candidates[:10])
        more = f" and {len(self.candidates) - 10} more" if len(self.candidates) > 10 else ""
        super().__init__(
            f'"{ref}" matches {len(self.candidates)} runs ({shown}{more}); '
            "give more characters of the id."
        )


class ScriptError(GittrackError):
    """The script given to `gittrack run` cannot be used."""


class RecordError(GittrackError, ValueError):
    """A run.toml that cannot be read."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        self.reason = reason
        super().__init__(f"The record of run {short(run_id)} is unreadable: {reason}.")


class UnsafeRecord(RecordError):
    """A record naming a path outside its run's folder: it is never used on disk."""

    def __init__(self, run_id: str, reason: str) -> None:
        GittrackError.__init__(
            self,
            f"run {short(run_id)}: {reason}; skipped (the record is unreadable: gittrack never "
            "writes such a path, so it was crafted or damaged).",
        )
        self.run_id = run_id
        self.reason = reason


class SchemaTooNew(RecordError):
    def __init__(self, run_id: str, schema: int, supported: int) -> None:
        self.schema = schema
        GittrackError.__init__(
            self,
            f"Run {short(run_id)} was written with record schema {schema}, newer than this "
            f"gittrack understands ({supported}); upgrade gittrack (pip install -U gittrack).",
        )
        self.run_id = run_id
        self.reason = "schema too new"


class UsageError(GittrackError, ValueError):
    """A value given by the user that gittrack cannot use; the command line exits 2."""

    exit_code = 2


class SchedulerUnavailable(UsageError):
    """The batch scheduler asked for (sbatch, qsub) is missing or does not answer."""


class QueryError(UsageError):
    """A --where query that does not parse; names the position and what was expected."""

    def __init__(self, query: str, position: int, expected: str) -> None:
        self.query = query
        self.position = position
        self.expected = expected
        pointer = " " * position + "^"
        super().__init__(
            f"Invalid query at position {position + 1}: expected {expected}.\n  {query}\n  "
            f"{pointer}"
        )


class OutputError(GittrackError):
    """An output that cannot be stored or found."""


class RemoteError(GittrackError):
    """A git or DVC remote that cannot be reached or written."""


class ConflictError(GittrackError):
    """Two histories disagree about the same run."""


# -- outputs (data management) --------------------------------------------------------------


class OutputNameError(OutputError, ValueError):
    def __init__(self, name: object) -> None:
        self.name = name
        super().__init__(
            f"Output name {name!r} is not allowed: use a plain file name without '/', '\\\\', "
            "'..' or a leading '.', e.g. 'trajectory'."
        )


class UnsupportedOutput(OutputError, TypeError):
    KINDS = (
        "numpy arrays, pandas DataFrames, bytes, JSON-able lists, or a pathlib.Path to a file "
        "or folder the run wrote"
    )

    def __init__(self, name: str, value: object, detail: str = "") -> None:
        self.output = name
        kind = type(value).__module__ + "." + type(value).__qualname__
        kind = kind.removeprefix("builtins.")
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"Output '{name}' of type {kind} cannot be stored{extra}; return {self.KINDS}."
        )


class StorageFull(OutputError):
    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(
            f"No space left to store {what} ({reason}); free disk space in the working tree "
            "or the DVC cache and rerun."
        )


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # EFBIG: `ulimit -f`
SQLITE_FULL = ("disk I/O error", "database or disk is full")


def storage_fault(exc: BaseException, what: str = "gittrack's state") -> StorageFull | None:
    """`exc` as a StorageFull when it says the disk is full (or a file grew over a limit)."""
    if isinstance(exc, StorageFull):
        return exc
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return StorageFull(what, exc.strerror or str(exc))
    if type(exc).__module__ == "sqlite3" and str(exc) in SQLITE_FULL:
        return StorageFull(what, f"the index database: {exc}")
    return None


UNWRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
SQLITE_UNWRITABLE = ("unable to open database file", "attempt to write a readonly database")


def unwritable_fault(exc: BaseException, folder: str) -> RepoNotWritable | None:
    """`exc` as a RepoNotWritable of `folder` when it says nothing can be written there
    (permissions, a read-only or immutable file system), else None."""
    if isinstance(exc, OSError) and exc.errno in UNWRITABLE_ERRNOS:
        return RepoNotWritable(folder, exc.strerror or str(exc))
    if type(exc).__module__ == "sqlite3" and str(exc) in SQLITE_UNWRITABLE:
        return RepoNotWritable(folder, str(exc))
    return None


class RunConflict(ConflictError):
    """The same run id holds different content here and on the other side of a pull."""

    def __init__(
        self,
        source: str,
        run_ids: Sequence[str],
        theirs: str = "",
        folders: Sequence[str] = (),
    ) -> None:
        self.source = source
        self.run_ids = list(run_ids)
        shown = ", ".join(short(r) for r in self.run_ids[:5])
        more = f" and {len(self.run_ids) - 5} more" if len(self.run_ids) > 5 else ""
        paths = " ".join(folders) if 0 < len(folders) <= 5 else "runs/"
        compare = (
            f"Compare them with 'git diff gittrack/runs {theirs[:12]} -- {paths}', "
            if theirs
            else "Compare them, "
        )
        super().__init__(
            f"Run(s) {shown}{more} differ between this repository and {source}; nothing was "
            f"joined. {compare}remove the wrong copy on one side ('gittrack rm'), then pull "
            "again."
        )


class RemoteMoved(RemoteError):
    """The remote's runs branch has commits we do not have."""

    def __init__(self, remote: str, refs: Sequence[str]) -> None:
        self.remote = remote
        self.refs = list(refs)
        super().__init__(
            f"The git remote '{remote}' has runs you do not have yet ({', '.join(self.refs)} "
            "moved); "
            f"run 'gittrack pull {remote}' first, then push again."
        )


class NoSuchRemote(RemoteError):
    def __init__(self, remote: str, known: Sequence[str]) -> None:
        self.remote = remote
        hint = f" (configured: {', '.join(known)})" if known else ""
        super().__init__(
            f"There is no git remote named '{remote}'{hint}; add it with "
            f"'git remote add {remote} URL'."
        )


class GraphvizMissing(GittrackError):
    def __init__(self, fmt: str) -> None:
        super().__init__(
            f"Rendering {fmt} needs Graphviz's 'dot' program, which is not installed; install it "
            "(apt install graphviz, brew install graphviz, conda install graphviz) or use "
            "--format dot."
        )


class NoRunsMatch(UsageError, LookupError):
    def __init__(self, query: str) -> None:
        self.query = query
        super().__init__(
            f'No run matches the query "{query}"; check it with: gittrack ls --where "{query}"'
        )


class UnusableRun(UsageError):
    def __init__(self, runs: list[tuple[str, str]]) -> None:
        self.runs = runs
        shown = ", ".join(f"{short(rid)} ({status})" for rid, status in runs[:5])
        more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
        super().__init__(
            f"Refusing to use runs that did not complete as inputs: {shown}{more}; "
            "add \"and status = 'completed'\" to a query, or pass --allow-failed to 'gittrack run' "
            "(RunRef(allow_failed=True) in code)."
        )


class TooManyRuns(UsageError):
    def __init__(self, ref: str, count: int) -> None:
        super().__init__(
            f'"{ref}" matches {count} runs but this option takes one; narrow the query '
            "or declare the option with RunRef(multiple=True)."
        )


class SweepSpecError(UsageError):
    def __init__(self, spec: str, why: str) -> None:
        self.spec = spec
        super().__init__(
            f"Sweep values '{spec}' do not parse: {why}; give a list a,b,c or a range "
            "start:stop[:step] (stop excluded, e.g. 1:4 gives 1,2,3)."
        )


class RunFailed(GittrackError):
    """A run launched by an Experiment did not complete; `.run` is the recorded run, if any."""

    def __init__(self, result: Any, run: Any) -> None:
        self.result = result
        self.run = run
        what = result.task.script or "the program"
        if run is not None:
            message = (
                f"Run {run.short} of {what} {result.status}: {result.error}; "
                f"'gittrack show {run.short}' has its traceback and logs."
            )
        else:
            message = f"No run of {what} could start: {result.error}"
        super().__init__(message)


class CodeUnavailable(GittrackError):
    def __init__(self, run_id: str, commit: str, reason: str) -> None:
        super().__init__(
            f"The code of run {short(run_id)} (commit {commit[:10]}) cannot be checked out: "
            f"{reason}; "
            "fetch it first (gittrack pull, or git fetch --unshallow)."
        )


class BranchDamaged(GittrackError):
    """The runs branch names a commit or tree that is not in the repository."""

    def __init__(self, commit: str) -> None:
        self.commit = commit
        super().__init__(
            f"The runs branch gittrack/runs points at {commit[:10]}, whose objects are missing "
            "(a 'git gc --prune=now' may have raced a run); run 'gittrack doctor' to repair it."
        )


class GitError(GittrackError):
    """A git command failed in a way the user has to look at."""


class ProgramNotFound(UsageError, FileNotFoundError):
    """The program given to `gittrack exec` or `gittrack.shell` is neither on PATH nor a file."""

    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(
            f"Program '{program}' was not found on PATH nor as a file; check its name "
            "or give its path."
        )


class ProgramFailed(GittrackError):
    """A program a run executed exited non-zero; `exit_code` is its code, `tail` its last lines."""

    def __init__(self, program: str, exit_code: int, tail: str) -> None:
        self.program = program
        self.exit_code = exit_code
        self.tail = tail
        end = f"; the end of its output:\n{tail}" if tail.strip() else " (it printed nothing)"
        super().__init__(f"{program} exited with code {exit_code}{end}")


class NotebookFailed(GittrackError):
    """A cell of a notebook run raised; the executed notebook (with the error) is still kept."""

    exit_code = 1

    def __init__(self, notebook: str, error: str) -> None:
        self.notebook = notebook
        super().__init__(f"Notebook {notebook} failed: {error}")


class MissingExtra(GittrackError, ImportError):
    """An optional part of gittrack whose packages are not installed."""

    def __init__(self, what: str, extra: str) -> None:
        self.extra = extra
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'gittrack[{extra}]'")
