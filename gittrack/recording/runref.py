"""`RunRef`: a click parameter type naming earlier runs, and the inputs a run records at start.

A reference is an id, a unique prefix, a name, `latest`, several of them separated by commas, or
a query in the lookup language (`params.temp >= 200 and status = 'completed'`). Resolution only
ever finds runs already on the runs branch, i.e. finished before this run started: that is why
lineage graphs cannot have cycles.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._hashes import sha256
from .._jsontext import dumps
from ..errors import GittrackError, NoRunsMatch, TooManyRuns, UnusableRun, UsageError

if TYPE_CHECKING:
    from .. import store
    from ..library.run import Run
    from ..model.record import RunRecord
    from .session import RunSession

    # click >= 8.4 makes ParamType generic; subscripting it at run time would break older clicks
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType

TOKEN = r"^[\w.\-]+$"  # compiled on first use (re caches it), not when recording
USABLE = ("completed",)


class Pins:
    """Set by `gittrack rerun`: the runs each RunRef parameter received the first time.

    `values` maps a parameter name to its recorded value (an id, a list of ids, or for a click
    option with `multiple=True` one of those per value given). Each conversion of a value takes
    the next one, so every RunRef shape gets back exactly the runs it had, whatever its text
    (a prefix, a name, a query) would match now.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.taken: dict[str, int] = {}

    def take(self, param: click.Parameter) -> list[str] | None:
        """The run ids for the next value of `param`, or None when it is not pinned."""
        if not param.name or param.name not in self.values:
            return None
        value = self.values[param.name]
        if getattr(param, "multiple", False) and isinstance(value, list):
            index = self.taken.get(param.name, 0)
            self.taken[param.name] = index + 1
            value = value[index] if index < len(value) else []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]


pinned: contextvars.ContextVar[Pins | None] = contextvars.ContextVar(
    "gittrack_pinned_refs", default=None
)


def resolve_runs(repo: store.Repo, text: str) -> list[Run]:
    """The runs `text` names: an id, prefix, name, `latest`, a comma list of those, or a query."""
    from ..errors import RunNotFound
    from ..index.db import Index
    from ..library.run import Run, resolve_id

    text = text.strip()
    parts = [p.strip() for p in text.split(",")]
    if text and all(re.match(TOKEN, p) for p in parts):
        try:
            return [Run(resolve_id(repo, p), repo) for p in parts]
        except RunNotFound:
            if len(parts) > 1 or not _looks_like_query(text):
                raise
    try:
        from ..index.compiler import compile_where
    except ImportError as exc:  # pragma: no cover - until the lookup table lands
        raise UsageError(
            f'"{text}" is not a run id, prefix or name, and queries are not available.'
        ) from exc
    sql, params = compile_where(text)
    rows = Index(repo).select(sql, params)
    if not rows:
        raise NoRunsMatch(text)
    return [Run(r["id"], repo, commit=r["commit"]) for r in rows]


def _looks_like_query(text: str) -> bool:
    return any(op in text for op in ("=", "<", ">", " ", "(")) or text.startswith(
        ("params.", "metrics.")
    )


def check_usable(runs: Iterable[Run]) -> None:
    """Raise UnusableRun naming every run that did not complete."""
    bad = [(r.id, r.status) for r in runs if r.status not in USABLE]
    if bad:
        raise UnusableRun(bad)


class RunRef(_ParamType):
    """A click parameter naming earlier runs; the command receives `gittrack.Run` objects.

    `multiple=True` yields a tuple of runs (a query, or ids separated by commas); otherwise the
    reference must name exactly one run. Runs that failed or died are refused unless
    `allow_failed=True` or `gittrack run --allow-failed`. Every run received is recorded as an
    input of the run in progress.
    """

    name = "run"

    def __init__(self, multiple: bool = False, allow_failed: bool = False) -> None:
        self.multiple = multiple
        self.allow_failed = allow_failed

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "RUNS" if self.multiple else "RUN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..library.run import Run

        if isinstance(value, Run):
            runs = [value]
        elif isinstance(value, list | tuple) and value and all(isinstance(v, Run) for v in value):
            runs = list(value)
        else:
            try:
                runs = self._resolve(str(value), param, ctx)
            except GittrackError as exc:
                self.fail(str(exc), param, ctx)
        if len(runs) > 1 and not self.multiple:
            self.fail(str(TooManyRuns(str(value), len(runs))), param, ctx)
        if not self._allow_failed():
            try:
                check_usable(runs)
            except GittrackError as exc:
                self.fail(str(exc), param, ctx)
        return tuple(runs) if self.multiple else runs[0]

    def _resolve(
        self, text: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> list[Run]:
        from ..library.run import Run

        repo = _repo_for(ctx)
        pins = pinned.get()
        ids = pins.take(param) if pins is not None and param is not None else None
        if ids is not None:
            return [Run(i, repo) for i in ids]
        return resolve_runs(repo, text)

    def _allow_failed(self) -> bool:
        from .context import next_options

        options = next_options()
        env = os.environ.get("GITTRACK_ALLOW_FAILED", "") not in ("", "0")
        return self.allow_failed or env or bool(options and options.allow_failed)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[Any]:
        from click.shell_completion import CompletionItem

        from ..index.db import Index

        try:
            index = Index(_repo_for(ctx))
            if incomplete and not re.match(r"^[0-9a-f]*$", incomplete):
                rows = index.db.execute(
                    "SELECT DISTINCT name FROM runs WHERE name LIKE ? ORDER BY name LIMIT 50",
                    (incomplete.replace("%", "") + "%",),
                )
                return [CompletionItem(r[0]) for r in rows]
            return [CompletionItem(i) for i in index.ids_with_prefix(incomplete.lower())]
        except GittrackError:
            return []

    def __repr__(self) -> str:
        return f"RunRef(multiple={self.multiple})"


def _repo_for(ctx: click.Context | None) -> store.Repo:
    """The repository a tracked command records into, known before its run starts."""
    from .. import store
    from .context import next_options, repo_path, script_of

    options = next_options()
    script = options.script if options and options.script else None
    if script is None and ctx is not None:
        script = script_of(ctx.command)
    return store.find_repo(repo_path(options, script))


# -- at the start of a run ---------------------------------------------------------------------


def record_inputs(session: RunSession, ctx: click.Context) -> None:
    """Record RunRef values and files that are recorded outputs as inputs; set the memo key."""
    index: Any = None  # opened only for file arguments: most runs never touch the index
    files: dict[str, Any] = {}
    memoisable = True
    for param in ctx.command.params:
        if not param.name or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if isinstance(param.type, RunRef):
            from ..library.run import Run

            for run in _flatten(value):
                if isinstance(run, Run):
                    session.add_input(run.id, run.commit)
        if isinstance(param.type, click.Path | click.File):
            if index is None:
                from ..index.db import Index

                index = Index(session.repo)
            hashes: list[str | None] = []
            for item in _flatten(value):
                path = _file_of(item, param.type)
                if path is None:
                    if _is_dir_or_stream(item):
                        memoisable = False
                    hashes.append(None)
                    continue
                md5 = _edges().file_md5(index, path)
                hashes.append(md5)
                session.record.input_files[_shown_path(session, path)] = md5
                _file_edge(session, index, path, md5)
            files[param.name] = hashes
    if memoisable:
        session.record.memo = memo_key(session.record, files)


def _edges() -> Any:
    from ..index import edges

    return edges


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [v for item in value for v in _flatten(item)]
    return [value]


def _file_of(value: Any, kind: click.ParamType[Any]) -> Path | None:
    """The existing regular file a click.Path/File value reads, or None."""
    if value is None:
        return None
    if isinstance(kind, click.File):
        if "r" not in kind.mode:
            return None
        name = getattr(value, "name", None)
        value = name if isinstance(name, str) else None
        if value is None or value == "-":
            return None
    try:
        path = Path(os.fsdecode(value))
    except TypeError:
        return None
    return path if path.is_file() else None


def _shown_path(session: RunSession, path: Path) -> str:
    """A read file as run.toml names it: relative to the repository inside it, else absolute."""
    where = path.resolve()
    try:
        return where.relative_to(session.repo.root.resolve()).as_posix()
    except ValueError:
        return where.as_posix()


def _is_dir_or_stream(value: Any) -> bool:
    if value is None:
        return False
    name = getattr(value, "name", value)
    if not isinstance(name, str | bytes | os.PathLike):
        return True
    return name == "-" or Path(os.fsdecode(name)).is_dir()


def _file_edge(session: RunSession, index: Any, path: Path, md5: str) -> None:
    """A file whose content equals a recorded output becomes an input edge to its producer."""
    from ..index import edges
    from ..store import project

    found = edges.producers(index, md5)
    if not found:
        return
    root = project.outputs_root(session.repo)
    inside = [(r, n) for r, n in found if edges.is_under(path, root / r)]
    run_id, name = (inside or found)[0]
    row = index.get(run_id)
    session.add_input(run_id, row["commit"] if row else "", name, md5)


def memo_key(record: RunRecord, files: dict[str, Any]) -> str:
    """Hash of the command, its params and its input files: runs with equal keys are candidates
    for reuse, and one is reused when its code files are unchanged (`find_reusable`)."""
    from ..model.record import _toml_value

    data = {
        "command": record.command,
        "params": {k: _toml_value(v) for k, v in record.params.items()},
        "files": files,
    }
    return sha256(dumps(data, sort_keys=True, default=str).encode()).hexdigest()


MAX_CANDIDATES = 50  # earlier runs with the run's memo key whose code is compared, newest first


def find_reusable(session: RunSession) -> RunRecord | None:
    """The newest completed run with this run's memo key whose code files are unchanged now.

    Looked up in memo.py's files rather than the lookup table, so that the start of a run
    neither opens nor syncs the index; each candidate is read from the branch.
    """
    from .. import store
    from ..errors import RecordError
    from ..index import memo, reuse
    from ..model.record import RunRecord

    key = session.record.memo
    if not key:
        return None
    for run_id in reuse.lookup(session.repo, key)[:MAX_CANDIDATES]:
        data = store.read_record_bytes(session.repo, run_id)
        try:
            record = RunRecord.from_toml(data, run_id) if data else None
        except RecordError:
            record = None
        if (
            record is None
            or record.status != "completed"
            or record.memo != key
            or any(o.partial for o in record.outputs.values())  # incomplete data: never reused
        ):
            memo.forget(session.repo, key, run_id)  # removed or rewritten since: not a candidate
            continue
        if not session.code_files.unchanged(record.code.files):
            continue
        if record.programs and not _same_programs(session, record):
            continue  # a program it ran (gittrack exec, gittrack.shell) was rebuilt since
        return record
    return None


def _same_programs(session: RunSession, record: RunRecord) -> bool:
    """Whether every program outside the repository that `record` ran is still that build."""
    from .programs import same_build

    cache = session.repo.state_dir / "cache"
    return all(same_build(p, cache) for p in record.programs if not p.get("in_repo"))
