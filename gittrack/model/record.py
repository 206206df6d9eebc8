"""The run record: what `run.toml` holds, encoded and decoded without any I/O.

Every key is documented in docs/storage-format.md; `schema` is checked first so that an older
gittrack refuses a newer record with a clear message and a newer one migrates older records.
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePath
from typing import Any

import tomli_w

from .._ids import short
from ..errors import RecordError, SchemaTooNew, UnsafeRecord, UsageError
from .limits import MAX_DEPTH as MAX_DEPTH, MAX_RECORD_BYTES as MAX_RECORD_BYTES, VALUE_DEPTH

SCHEMA = 2

STATUSES = ("running", "completed", "failed", "interrupted", "died")
NESTED = "it is nested too deeply to read"  # a run.toml past the parser's recursion limit


class _Compared:
    """`==` and `repr()` as @dataclass writes them (field by field, in order), written once for
    the record's classes: @dataclass generating them for each costs ~0.7 ms at every import,
    that is at the start of every run (the classes are dataclasses with eq=False, repr=False)."""

    __slots__ = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Compared)
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable and compared by value, as @dataclass

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)  # type: ignore[arg-type]
            if f.repr
        )
        return f"{self.__class__.__qualname__}({shown})"


@dataclass(eq=False, repr=False, init=False)
class CodeFile(_Compared):
    """One source file of the repository a run executed: its git blob id, and whether it
    differs from HEAD."""

    blob: str = ""
    dirty: bool = False

    def __init__(self, blob: str = "", dirty: bool = False) -> None:
        self.blob = blob
        self.dirty = dirty


@dataclass(eq=False, repr=False, init=False)
class Code(_Compared):
    """The code a run executed: a commit on the user's history or a snapshot of a dirty tree."""

    commit: str = ""  # the commit the run executed (HEAD, or the snapshot when dirty)
    tree: str = ""  # that commit's tree id
    hash: str = ""  # sha256 of the entry script's bytes
    dirty: bool = False  # one of `files` differs from HEAD
    script: str = ""  # path of the entry script relative to the repo root
    head: str = ""  # HEAD when the run started (the snapshot's parent when dirty)
    branch: str = ""  # the checked-out branch, "" when HEAD is detached
    detached: bool = False
    shallow: bool = False
    # the repository's source files the run executed, by repo-relative POSIX path
    files: dict[str, CodeFile] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)  # changed files the snapshot left out
    # why `files` may lack modules the run imported as it ran (collecting them failed): such a
    # run is never reused
    incomplete: str = ""

    def __init__(
        self,
        commit: str = "",
        tree: str = "",
        hash: str = "",
        dirty: bool = False,
        script: str = "",
        head: str = "",
        branch: str = "",
        detached: bool = False,
        shallow: bool = False,
        files: dict[str, CodeFile] | None = None,
        omitted: list[str] | None = None,
        incomplete: str = "",
    ) -> None:
        self.commit = commit
        self.tree = tree
        self.hash = hash
        self.dirty = dirty
        self.script = script
        self.head = head
        self.branch = branch
        self.detached = detached
        self.shallow = shallow
        self.files = {} if files is None else files
        self.omitted = [] if omitted is None else omitted
        self.incomplete = incomplete

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Code:
        data = dict(data)
        raw = data.pop("files", None) or {}
        if not isinstance(raw, Mapping) or not all(isinstance(f, Mapping) for f in raw.values()):
            raise TypeError("code.files must be a table of tables")
        return cls(**data, files={str(p): CodeFile(**f) for p, f in raw.items()})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.omitted:
            del data["omitted"]
        if not self.incomplete:
            del data["incomplete"]
        return data


@dataclass(eq=False, repr=False, init=False)
class Input(_Compared):
    """One upstream output consumed by this run (or the whole run when `output` is empty)."""

    run: str
    commit: str = ""
    output: str = ""
    md5: str = ""

    def __init__(self, run: str, commit: str = "", output: str = "", md5: str = "") -> None:
        self.run = run
        self.commit = commit
        self.output = output
        self.md5 = md5


@dataclass(eq=False, repr=False, init=False)
class Output(_Compared):
    """One stored output: a file or folder in the DVC cache, pointed at from the run folder."""

    path: str  # relative to the run's output folder
    md5: str = ""  # DVC's md5 (folders: the md5 of DVC's .dir listing, ending in ".dir")
    size: int = 0
    kind: str = "file"  # file, dir, npy, parquet, csv, bytes, text, json
    pushed: bool = False
    nfiles: int = 0  # folders only
    error: str = ""  # set when the value could not be stored
    partial: bool = False  # the run was killed while storing it: the data is incomplete

    def __init__(
        self,
        path: str,
        md5: str = "",
        size: int = 0,
        kind: str = "file",
        pushed: bool = False,
        nfiles: int = 0,
        error: str = "",
        partial: bool = False,
    ) -> None:
        self.path = path
        self.md5 = md5
        self.size = size
        self.kind = kind
        self.pushed = pushed
        self.nfiles = nfiles
        self.error = error
        self.partial = partial


@dataclass(eq=False, repr=False, init=False)
class RunRecord(_Compared):
    """Everything gittrack knows about one run; the content of its `run.toml`."""

    id: str
    command: str = ""
    status: str = "running"
    name: str = ""
    argv: list[str] = field(default_factory=list)
    started: dt.datetime | None = None
    finished: dt.datetime | None = None
    duration_s: float = 0.0
    exit_code: int | None = None  # None while running, and for a run that died (no exit status)
    experiment: str = ""
    parent: str = ""  # the tracked run that launched this one (an experiment driver)
    rerun_of: str = ""
    memo: str = ""  # hash of command, params and input files (docs/concepts.md, Reuse)
    tags: list[str] = field(default_factory=list)
    note: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    param_sources: dict[str, str] = field(default_factory=dict)
    code: Code = field(default_factory=Code)
    inputs: list[Input] = field(default_factory=list)
    # files its click.Path/File params read, by content: path (relative to the repository
    # inside it, else absolute) to md5; a config edited without a commit is on record too
    input_files: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=dict)  # type, message, traceback
    logs: dict[str, Any] = field(default_factory=dict)  # file names and truncation flags
    # programs a run executed (`gittrack exec`, `gittrack.shell`): path, sha256, version, package
    programs: list[dict[str, Any]] = field(default_factory=list)
    # how `gittrack exec` ran: the command template, outputs, inputs, cwd (what rerun needs)
    exec: dict[str, Any] = field(default_factory=dict)

    def __init__(  # written out: @dataclass's own would cost ~1 ms at the start of every run
        self,
        id: str,
        command: str = "",
        status: str = "running",
        name: str = "",
        argv: list[str] | None = None,
        started: dt.datetime | None = None,
        finished: dt.datetime | None = None,
        duration_s: float = 0.0,
        exit_code: int | None = None,
        experiment: str = "",
        parent: str = "",
        rerun_of: str = "",
        memo: str = "",
        tags: list[str] | None = None,
        note: str = "",
        params: dict[str, Any] | None = None,
        param_sources: dict[str, str] | None = None,
        code: Code | None = None,
        inputs: list[Input] | None = None,
        input_files: dict[str, str] | None = None,
        outputs: dict[str, Output] | None = None,
        metrics: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        error: dict[str, str] | None = None,
        logs: dict[str, Any] | None = None,
        programs: list[dict[str, Any]] | None = None,
        exec: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.command = command
        self.status = status
        self.name = name
        self.argv = [] if argv is None else argv
        self.started = started
        self.finished = finished
        self.duration_s = duration_s
        self.exit_code = exit_code
        self.experiment = experiment
        self.parent = parent
        self.rerun_of = rerun_of
        self.memo = memo
        self.tags = [] if tags is None else tags
        self.note = note
        self.params = {} if params is None else params
        self.param_sources = {} if param_sources is None else param_sources
        self.code = Code() if code is None else code
        self.inputs = [] if inputs is None else inputs
        self.input_files = {} if input_files is None else input_files
        self.outputs = {} if outputs is None else outputs
        self.metrics = {} if metrics is None else metrics
        self.env = {} if env is None else env
        self.error = {} if error is None else error
        self.logs = {} if logs is None else logs
        self.programs = [] if programs is None else programs
        self.exec = {} if exec is None else exec

    @property
    def short(self) -> str:
        return short(self.id)

    def mark_died(self, last_seen: float) -> None:
        """Say this staged run died: it ended when it was last seen alive, with no exit code."""
        self.status = "died"
        self.exit_code = None  # the committer may know it: the signal a parent saw
        seen = utc_ms(last_seen)
        if self.finished is None or self.finished < seen:
            self.finished = seen
        if self.started is not None:
            self.duration_s = round(max(0.0, (self.finished - self.started).total_seconds()), 3)

    @property
    def command_line(self) -> str:
        """The command and its arguments, quoted so that a shell can run it again."""
        return shlex.join([self.command, *self.argv])

    # -- encoding -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (TOML types: datetimes stay datetimes) in the documented key order."""
        data: dict[str, Any] = {"schema": SCHEMA}
        for key, value in asdict(self).items():
            if key in ("code", "inputs", "outputs", "params"):
                continue
            data[key] = value
        data["params"] = {k: _toml_value(v) for k, v in self.params.items() if v is not None}
        data["code"] = self.code.to_dict()
        data["inputs"] = [asdict(i) for i in self.inputs]
        data["outputs"] = {
            name: {
                k: v
                for k, v in asdict(o).items()
                if (v not in ("", None) or k in ("md5", "path")) and (k != "partial" or v)
            }
            for name, o in self.outputs.items()
        }
        data["metrics"] = _clean(self.metrics)
        data["env"] = _clean(self.env)
        data["programs"] = [_clean(p) for p in self.programs]
        data["exec"] = _clean(self.exec)
        return {k: v for k, v in data.items() if v is not None and not _empty_optional(k, v)}

    def to_json_dict(self) -> dict[str, Any]:
        """The record's one JSON form (see `json_data`), for --json output and the index."""
        return json_data(self.to_dict())

    def to_toml(self) -> str:
        """The record as TOML: multi-line text (a traceback, say) as multi-line strings, unless
        the record holds a carriage return anywhere: a TOML reader turns a CR LF inside a
        multi-line string into LF, so such a record is written with every string escaped on one
        line, and its values read back exactly."""
        data = self.to_dict()
        text = tomli_w.dumps(data, multiline_strings=not _has_cr(data))
        try:
            text.encode()
        except UnicodeEncodeError:  # bytes that are not UTF-8 (an argv, a file name): \xNN
            data = _without_surrogates(data)
            text = tomli_w.dumps(data, multiline_strings=not _has_cr(data))
        return text

    @classmethod
    def from_toml(cls, text: str | bytes, run_id: str = "?") -> RunRecord:
        if len(text) > MAX_RECORD_BYTES:  # characters of a str: at least as many bytes
            raise RecordError(run_id, too_large(len(text)))
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordError(run_id, f"not UTF-8 ({exc.reason})") from exc
        import tomllib  # reading only: recording a run never parses TOML

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RecordError(run_id, f"invalid TOML ({exc})") from exc
        except RecursionError as exc:
            raise RecordError(run_id, NESTED) from exc
        return cls.from_dict(data, run_id)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], run_id: str = "?") -> RunRecord:
        from .schema import RUN_ID, check_paths, check_types  # reading only: not when recording

        data = dict(data)
        schema = data.pop("schema", None)
        if not isinstance(schema, int) or isinstance(schema, bool):
            raise RecordError(run_id, "missing or invalid 'schema' key")
        if schema > SCHEMA:
            raise SchemaTooNew(str(data.get("id", run_id)), schema, SCHEMA)
        if schema < SCHEMA and schema not in MIGRATIONS:
            raise RecordError(run_id, f"'schema' {schema} is not a record schema gittrack knows")
        while schema < SCHEMA:
            try:
                data = MIGRATIONS[schema](data)
            except (TypeError, ValueError, AttributeError) as exc:  # a damaged older record
                raise RecordError(run_id, f"cannot be read as schema {schema} ({exc})") from exc
            schema += 1
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise RecordError(run_id, "missing 'id'")
        record_id = data["id"]
        if not RUN_ID.fullmatch(record_id):
            raise RecordError(run_id, f"its id {record_id!r} is not a run id")
        if RUN_ID.fullmatch(run_id) and record_id != run_id:
            raise RecordError(run_id, f"its id {short(record_id)} differs from its folder's")
        problem = check_types(data)
        if problem:
            raise RecordError(record_id, problem)
        problem = check_paths(data)
        if problem:
            raise UnsafeRecord(record_id, problem)
        try:  # keys a newer gittrack may add to these tables are left out, not refused
            code = Code.from_dict(_known(Code, data.pop("code", {})))
            inputs = [Input(**_known(Input, i)) for i in data.pop("inputs", [])]
            outputs = {n: Output(**_known(Output, o)) for n, o in data.pop("outputs", {}).items()}
            known = set(cls.__dataclass_fields__)
            extra = {k: v for k, v in data.items() if k not in known}
            record = cls(
                **{k: v for k, v in data.items() if k in known},
                code=code,
                inputs=inputs,
                outputs=outputs,
            )
        except TypeError as exc:
            raise RecordError(record_id, f"its layout is not gittrack's ({exc})") from exc
        if extra:
            record.env.setdefault("_unknown_keys", sorted(extra))
        params = dict(record.params)
        for name in record.param_sources:
            params.setdefault(name, None)  # None is not representable in TOML: omitted on write
        record.params = params
        return record


def too_large(size: int) -> str:
    """Why a run.toml of `size` bytes is not read (see MAX_RECORD_BYTES)."""
    return (
        f"run.toml is {size / 2**20:.1f} MiB, over the {MAX_RECORD_BYTES // 2**20} MiB a record "
        "may hold (it was not read)"
    )


def _known(kind: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a record table that dataclass `kind` has."""
    return {k: v for k, v in data.items() if k in kind.__dataclass_fields__}


def utc_ms(timestamp: float) -> dt.datetime:
    """A POSIX timestamp as a UTC datetime to the millisecond (what TOML datetimes keep)."""
    stamp = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def json_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The one JSON form of a record, from its TOML data (`to_dict()` or a parsed run.toml).

    Datetimes become ISO 8601 strings, and a param whose value was None (which TOML cannot
    hold, so run.toml leaves it out) is null. `ls --format json`, `show --json`, the Python
    API and the UI's /api/runs all give this form.
    """
    out: dict[str, Any] = _jsonable(data)
    out["code"] = asdict(Code()) | (out.get("code") or {})  # a hand-written record may lack it
    for key in ("metrics", "env", "param_sources"):
        out.setdefault(key, {})
    out.setdefault("argv", [])
    params = out.get("params") or {}
    for name in out.get("param_sources") or {}:
        params.setdefault(name, None)
    out["params"] = params
    for key in ("started", "finished"):
        out.setdefault(key, None)
    return out


def _jsonable(value: Any) -> Any:
    """TOML data as JSON data: tables and arrays copied, dates and times as ISO 8601 text."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def _from_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 knew the code only as a whole tree: no `[code.files]`. Its memo key hashed that
    tree, so it is dropped: what such a run executed cannot be compared file by file."""
    code = dict(data.get("code") or {})
    code.setdefault("files", {})
    return {k: v for k, v in data.items() if k != "memo"} | {"code": code}


# Older schemas migrate one step at a time: MIGRATIONS[n] turns schema n data into n + 1.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _from_schema_1}

_OPTIONAL_EMPTY = {
    "name",
    "experiment",
    "parent",
    "rerun_of",
    "memo",
    "note",
    "tags",
    "error",
    "inputs",
    "input_files",
    "outputs",
    "logs",
    "finished",
    "programs",
    "exec",
}


def _empty_optional(key: str, value: Any) -> bool:
    return key in _OPTIONAL_EMPTY and value in ("", [], {}, None)


def _toml_value(value: Any) -> Any:
    """Turn a click parameter value into its closest TOML type (int stays int)."""
    if isinstance(value, bool | int | float | str | dt.datetime | dt.date):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_toml_value(v) for v in value if v is not None]
    if isinstance(value, Mapping):
        return {str(k): _toml_value(v) for k, v in value.items() if v is not None}
    if hasattr(value, "id") and hasattr(value, "record"):  # a Run handle from RunRef
        return value.id
    if hasattr(value, "name") and hasattr(value, "read"):  # an open click.File
        return str(value.name)
    return str(value)


def _has_cr(value: Any) -> bool:
    """Whether a carriage return is in any string of `value` (TOML data: tables and arrays)."""
    if isinstance(value, str):
        return "\r" in value
    if isinstance(value, dict):
        return any(_has_cr(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_cr(v) for v in value)
    return False


def _without_surrogates(value: Any) -> Any:
    """`value` with each undecodable byte Python keeps as a surrogate (os.fsdecode's, argv's)
    written as the text \\xNN, in keys too: UTF-8, and so TOML, cannot hold surrogates."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            raw = value.encode("utf-8", "surrogateescape")  # the original bytes
        except UnicodeEncodeError:  # a lone surrogate of another kind (from JSON, say)
            raw = value.encode("utf-8", "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _clean(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _toml_value(v) for k, v in mapping.items() if v is not None}


NESTING_CAP = 1000  # levels counted at most: deeper is reported as "more than" this


def nesting(value: Any, cap: int = NESTING_CAP) -> int:
    """How many tables and arrays `value` nests (a scalar 0, `{}` or `[]` 1), counted a level at
    a time (no recursion) and at most to `cap` + 1 (a value that holds itself ends there too)."""
    depth, level = 0, [value]
    while depth <= cap:
        level = [v for v in level if isinstance(v, Mapping | list | tuple)]
        if not level:
            break
        depth += 1
        level = [x for v in level for x in (v.values() if isinstance(v, Mapping) else v)]
    return depth


def check_nesting(kind: str, values: Mapping[str, Any]) -> None:
    """Refuse a value (a param, metadata) nested deeper than a record may hold, in one sentence:
    recorded, it would make the whole run unreadable."""
    for key, value in values.items():
        depth = nesting(value)
        if depth > VALUE_DEPTH:
            shown = f"{depth}" if depth <= NESTING_CAP else f"more than {NESTING_CAP}"
            raise UsageError(
                f"{kind} '{key}' is nested {shown} levels deep, more than the {VALUE_DEPTH} a run "
                "record holds; flatten it, or save it as an output with gittrack.save()."
            )


def is_scalar(value: Any) -> bool:
    """True for values that become metrics: numbers, bools, strings and dicts of them (no deeper
    than a record holds: a deeper dict is stored as an output)."""
    if isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, Mapping):
        if nesting(value) > VALUE_DEPTH:
            return False
        return all(isinstance(k, str) and is_scalar(v) for k, v in value.items())
    try:  # numpy scalars
        import numbers

        return isinstance(value, numbers.Number) and not hasattr(value, "__len__")
    except Exception:  # pragma: no cover
        return False


def metric_value(value: Any) -> Any:
    """A metric as a plain Python value (numpy scalars become int/float)."""
    if isinstance(value, Mapping):
        return {k: metric_value(v) for k, v in value.items()}
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return float(value) if not math.isnan(float(value)) else math.nan


def run_folder(run_id: str) -> str:
    """Where a run's folder is written on the runs branch: `runs/3f/2a/<id>`.

    Two levels of 256 keep every tree a recording rewrites small (about 15 run folders in each
    at a million runs, where one level held 3,900 in 230 KiB).
    """
    return f"runs/{run_id[:2]}/{run_id[2:4]}/{run_id}"


def legacy_run_folder(run_id: str) -> str:
    """Where gittrack 0.1 wrote a run's folder (`runs/3f/<id>`): still read, and moved to
    `run_folder` when the run is written again."""
    return f"runs/{run_id[:2]}/{run_id}"


def run_folder_paths(run_id: str) -> tuple[str, str]:
    """Both places a run's folder may be, in the order readers look."""
    return run_folder(run_id), legacy_run_folder(run_id)


def split_run_path(path: str) -> tuple[str, str] | None:
    """(run id, path inside its folder, "" for the folder itself) of a path in either layout;
    None for `runs`, a shard or a sub-shard. A two-character name under a shard is a sub-shard:
    no run id is that short."""
    parts = path.split("/", 4)
    if len(parts) < 3 or parts[0] != "runs":
        return None
    if len(parts[2]) == 2:
        return (parts[3], "/".join(parts[4:])) if len(parts) > 3 else None
    return parts[2], "/".join(parts[3:])
