"""One run as the web UI shows it: its record, logs, inputs and consumers, outputs and series.

Everything here reads (the lookup table, the runs branch, local output folders); nothing writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import store
from .._ids import short
from ..errors import GittrackError, RecordError, RunNotFound, UsageError
from ..index.db import Index
from ..model.record import Output, RunRecord
from ..store import project, staging
from .listing import find_staged

LOG_LIMIT = 200_000  # characters of a captured log shown in a page
DOWNLOAD_LIMIT = 50 * 1024 * 1024  # outputs up to this size can be downloaded from the UI
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
LIVE_SERIES = "metrics.csv"  # what gittrack.log() appends to while a run executes


@dataclass
class RunView:
    """What a run page shows: the record (or why it is unreadable) and what surrounds it."""

    id: str
    data: dict[str, Any] | None
    commit: str = ""
    problem: str = ""
    raw: str = ""
    logs: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    input_groups: list[dict[str, Any]] = field(default_factory=list)
    queries: dict[str, str] = field(default_factory=dict)  # RunRef param -> text it was given
    downstream: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    live: bool = False  # staged: still running (or died, not yet committed)


def resolve(repo: store.Repo, ref: str) -> str:
    """The full id of a run reference (id, prefix, name, `latest`); RunNotFound otherwise."""
    from .run import resolve_id

    if not ref or len(ref) > 200:
        raise RunNotFound(ref[:40])
    return resolve_id(repo, ref)


def run_view(repo: store.Repo, ref: str) -> RunView:
    """The run page's content for a reference; unreadable records come back with `problem`.

    A run still executing (staged, not yet committed) is found by id, prefix or name too.
    """
    try:
        run_id = resolve(repo, ref)
    except RunNotFound:
        staged = staged_view(repo, ref)
        if staged is None:
            raise
        return staged
    index = Index(repo)
    row = index.get(run_id)
    if row is None:
        raise RunNotFound(ref)
    view = RunView(run_id, row["record"], row["commit"] or "", row["problem"] or "")
    if view.data is None:
        try:
            raw = store.read_record_bytes(repo, run_id)
        except RecordError:  # too large to show: the problem says so
            raw = None
        view.raw = raw.decode("utf-8", "replace") if raw is not None else ""
        return view
    for name in ("stdout.log", "stderr.log"):
        blob = store.read_run_file(repo, run_id, name)
        if blob:
            text = blob.decode("utf-8", "replace")
            view.logs[name] = (
                text if len(text) <= LOG_LIMIT else text[:LOG_LIMIT] + "\n[... truncated]"
            )
    summaries = run_summaries(index, [i["run"] for i in view.data.get("inputs", [])])
    for item in view.data.get("inputs", []):
        view.inputs.append(item | {"info": summaries.get(item["run"])})
    view.input_groups = group_inputs(view.inputs)
    view.queries = ref_queries(view.data)
    view.downstream = _related(index, run_id, "input")
    view.children = _related(index, run_id, "parent")
    return view


def _related(index: Index, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The runs that consumed `run_id` ("input") or that it launched ("parent"), oldest first:
    found through the lineage edges' index, never a scan of every record."""
    from ..index.edges import edges_of

    ids = sorted({edge[0] for edge in edges_of(index, [run_id], downstream=True, kinds=[kind])})
    found = run_summaries(index, ids)
    rows = sorted(found.values(), key=lambda r: (r["started"] or "", r["id"]))
    return [{k: r[k] for k in ("id", "name", "status", "command")} for r in rows]


def run_summaries(index: Index, ids: list[str]) -> dict[str, dict[str, Any]]:
    """{id: {id, name, status, command, experiment, params, started}} for runs present in the
    index."""
    found: dict[str, dict[str, Any]] = {}
    keys = ("id", "name", "status", "command", "experiment", "params", "started")
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        sql = (
            "SELECT id, name, status, command, experiment, json_extract(record, '$.params'), "
            f"started FROM runs WHERE id IN ({','.join('?' * len(chunk))})"
        )
        for row in index.db.execute(sql, chunk):
            data = dict(zip(keys, row, strict=True))
            data["params"] = json.loads(data["params"] or "{}")
            found[data["id"]] = data
    return found


def group_inputs(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inputs grouped by experiment (or command), each with the params that vary among them."""
    from .lineage import ranges

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in inputs:
        info = item.get("info") or {}
        key = (info.get("experiment") or "", info.get("command") or "") if info else ("", "")
        groups.setdefault(key, []).append(item)
    out = []
    for (experiment, command), items in groups.items():
        params = [(i.get("info") or {}).get("params") or {} for i in items]
        spans = ranges([{"params": p} for p in params]) if len(items) > 1 else {}
        out.append(
            {
                "experiment": experiment,
                "command": command,
                "runs": items,
                "varying": list(spans) if len(items) > 1 else sorted(params[0]),
                "ranges": spans,
                "missing": not items[0].get("info"),
            }
        )
    return out


def ref_queries(data: dict[str, Any]) -> dict[str, str]:
    """For each param holding run ids, the text it was given on the command line (a query)."""
    argv = [str(a) for a in data.get("argv") or []]
    found = {}
    for name, value in (data.get("params") or {}).items():
        ids = value if isinstance(value, list) else [value]
        if not ids or not all(isinstance(v, str) and RUN_ID.match(v) for v in ids):
            continue
        flags = {f"--{name}", f"--{name.replace('_', '-')}"}
        for i, arg in enumerate(argv):
            flag, eq, rest = arg.partition("=")
            if flag in flags:
                text = rest if eq else (argv[i + 1] if i + 1 < len(argv) else "")
                if text and text not in ids:
                    found[name] = text
                break
    return found


def code_diff(repo: store.Repo, old: str, new: str, limit: int = 400_000) -> str:
    """The `git diff` between two code commits (empty when the code is the same)."""
    if not (re.fullmatch(r"[0-9a-f]{4,64}", old) and re.fullmatch(r"[0-9a-f]{4,64}", new)):
        raise UsageError(
            "A code commit must be a hexadecimal commit id; pick runs that recorded their code."
        )
    proc = repo.git("diff", "--no-color", "--no-ext-diff", old, new, "--", check=False)
    if proc.returncode != 0:
        raise UsageError(
            f"The code commits {short(old)} and {short(new)} are not both in this repository; "
            "run 'gittrack pull' first."
        )
    text = proc.stdout.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "\n[... truncated]"


# -- outputs and time series -----------------------------------------------------------------


def notebook_cells(repo: store.Repo, run_id: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells of the executed notebook a notebook run stored (output `notebook`), if any."""
    from .notebooks import cells

    output = (data.get("outputs") or {}).get("notebook") or {}
    if not str(output.get("path", "")).endswith(".ipynb"):
        return []
    try:
        path = output_file(repo, run_id, "notebook")
    except GittrackError:
        return []
    return cells(path) if path is not None else []


def output_file(repo: store.Repo, run_id: str, name: str) -> Path | None:
    """The local file of output `name`, restored from the DVC cache or remote when needed."""
    record = _record(repo, run_id)
    output = record.outputs.get(name)
    if output is None or output.kind == "dir" or output.md5.endswith(".dir") or output.error:
        return None
    if output.partial or not output.md5:  # incomplete data is never served
        return None
    base = (repo.root / ".gittrack" / "outputs" / run_id).resolve()
    local = (base / output.path).resolve()
    if not local.is_relative_to(base):
        return None
    if local.is_file() and local.stat().st_size == output.size:
        return local
    try:
        from .run import Run

        path = Run(run_id, repo, record=record).path(name)
    except (ImportError, GittrackError, OSError):
        return None
    return path if path.is_file() else None


def _record(repo: store.Repo, run_id: str) -> RunRecord:
    data = store.read_record_bytes(repo, run_id)
    if data is None:
        raise RunNotFound(run_id)
    return RunRecord.from_toml(data, run_id)


def timeseries_output(data: dict[str, Any]) -> str | None:
    """The name of a run's time-series output (`metrics.csv`, written by gittrack.log)."""
    for name, output in (data.get("outputs") or {}).items():
        if name in ("metrics.csv", "metrics") or str(output.get("path", "")).endswith(
            "metrics.csv"
        ):
            return str(name)
    return None


def timeseries(repo: store.Repo, run_id: str, data: dict[str, Any]) -> dict[str, list[Any]]:
    """{column: values} of a run's metrics.csv ("step" first when present); {} when absent."""
    if data.get("status") in ("running", "died") and not data.get("outputs"):
        path: Path | None = project.outputs_root(repo) / run_id / LIVE_SERIES  # being written
    else:
        name = timeseries_output(data)
        path = output_file(repo, run_id, name) if name else None
    if path is None or not path.is_file():
        return {}
    import csv  # only for a run with a time series (not loaded by `show`)
    import io

    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(io.StringIO(handle.read(5_000_000)))
            series: dict[str, list[Any]] = {k: [] for k in reader.fieldnames or []}
            for line in reader:
                for key in series:
                    series[key].append(_number(line.get(key)))
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return series


def series_of(repo: store.Repo, refs: list[str]) -> dict[str, dict[str, list[Any]]]:
    """{run id: its time series} for runs named by reference (recorded or still running);
    runs without a series give {}; an unknown reference raises RunNotFound."""
    index = Index(repo)
    out: dict[str, dict[str, list[Any]]] = {}
    for ref in refs:
        try:
            run_id = resolve(repo, ref)
        except RunNotFound:
            staged = find_staged(repo, ref)
            if staged is None:
                raise
            out[staged[0].id] = timeseries(repo, staged[0].id, {"status": staged[1]})
            continue
        row = index.get(run_id)
        out[run_id] = timeseries(repo, run_id, row["record"]) if row and row["record"] else {}
    return out


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


# -- runs still executing --------------------------------------------------------------------


def staged_view(repo: store.Repo, ref: str) -> RunView | None:
    """The page of a run that has not been committed yet: its partial record and logs so far."""
    found = find_staged(repo, ref)
    if found is None:
        return None
    record, state = found
    data = record.to_json_dict() | {"status": state, "duration_s": elapsed(record)}
    view = RunView(record.id, data, live=True)
    view.logs = staged_logs(repo, record.id)
    summaries = run_summaries(Index(repo), [i.run for i in record.inputs])
    view.inputs = [
        {"run": i.run, "output": i.output, "info": summaries.get(i.run)} for i in record.inputs
    ]
    view.input_groups = group_inputs(view.inputs)
    view.queries = ref_queries(data)
    return view


def elapsed(record: RunRecord) -> float:
    """Seconds since a run started."""
    import datetime as dt

    if record.started is None:
        return 0.0
    started = record.started
    started = started if started.tzinfo else started.replace(tzinfo=dt.UTC)
    return round(max(0.0, (dt.datetime.now(dt.UTC) - started).total_seconds()), 1)


def staged_logs(repo: store.Repo, run_id: str) -> dict[str, str]:
    """The last LOG_LIMIT characters of a staged run's stdout.log and stderr.log."""
    logs = {}
    for name in ("stdout.log", "stderr.log"):
        path = staging.folder(repo) / run_id / name
        try:
            size = path.stat().st_size
            with path.open("rb") as handle:
                handle.seek(max(0, size - LOG_LIMIT))
                logs[name] = handle.read().decode("utf-8", "replace")
        except OSError:
            logs[name] = ""
    return logs


def live_state(repo: store.Repo) -> str:
    """Changes whenever a run is recorded, starts or dies (what the UI's event stream watches)."""
    found = store.tip(repo)
    staged = ",".join(f"{rec.id}:{state}" for rec, state in staging.stale_runs(repo))
    return f"{found[0] if found else ''}|{staged}"


def live_run(repo: store.Repo, run_id: str) -> dict[str, Any] | None:
    """What a running run's page updates: state, elapsed time, logs, series; None once recorded."""
    found = find_staged(repo, run_id)
    if found is None:
        return None
    record, state = found
    return {
        "status": state,
        "elapsed_s": elapsed(record),
        "logs": staged_logs(repo, run_id),
        "series": timeseries(repo, run_id, {"status": state}),
    }


@dataclass
class RunDetails:
    """What `gittrack show` adds to a record: input runs, where outputs are, the logs' tails."""

    inputs: dict[str, dict[str, Any]]  # {id: {id, name, status, command}} of indexed inputs
    outputs_dir: Path  # the run's output folder
    on_disk: dict[str, bool]  # output name -> whether its data is in the output folder
    log_tails: dict[str, list[str]]  # stream -> its last lines


def run_details(repo: store.Repo, data: dict[str, Any], tail: int = 10) -> RunDetails:
    """The input runs' summaries, the outputs' place on disk and the last `tail` log lines."""
    from .outputs import present

    run_id = data["id"]
    summaries = run_summaries(Index(repo), [i["run"] for i in data.get("inputs") or []])
    folder = project.outputs_root(repo) / run_id
    on_disk = {}
    for name, output in (data.get("outputs") or {}).items():
        known = {k: v for k, v in output.items() if k in Output.__dataclass_fields__}
        record = Output(**known)
        on_disk[name] = bool(record.md5) and present(folder / record.path, record)
    tails: dict[str, list[str]] = {}
    for stream in ("stdout", "stderr"):
        blob = store.read_run_file(repo, run_id, f"{stream}.log")
        if blob and blob.strip():
            tails[stream] = blob.decode("utf-8", "replace").rstrip("\n").splitlines()[-tail:]
    return RunDetails(summaries, folder, on_disk, tails)
