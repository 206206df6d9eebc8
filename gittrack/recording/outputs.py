"""What a run's return values and saved objects become: files in its output folder, stored via DVC.

During a run, `output_dir()`, `save()` and `log()` write into the run's output folder
`.gittrack/outputs/<run id>/` (git-ignored); placing.py turns each value into a file. When the
run ends, `finalize()` places every output there, stores it in the DVC cache, adds a DVC
pointer file per output to the run's folder on the runs branch, fills `[outputs.NAME]` and
pushes to the DVC remote. library/outputs.py brings outputs back for `Run.path()`/`Run.load()`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import click

from ..errors import (
    OutputError,
    OutputNameError,
    RemoteError,
    StorageFull,
    UsageError,
)
from ..model.record import Output, RunRecord
from ..store import project
from ..store.safefs import PARTIAL
from .context import current
from .placing import Placed, kind_of, place as place, validate_name as validate_name

if TYPE_CHECKING:
    from .. import store
    from .session import RunSession

LOG_NAME = "metrics"  # the output gittrack.log() writes
LOG_FILE = "metrics.csv"
MANIFEST = "outputs.json"  # in the run's staging folder: what save()/log() wrote so far
RESERVED = {"run.toml", ".gitignore"}
SKIPPED = (".tmp", PARTIAL)  # files in the output folder that are not outputs


# -- during a run ---------------------------------------------------------------------------


@dataclass
class _State:
    saved: dict[str, Placed] = field(default_factory=dict)
    log: MetricsLog | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _session() -> RunSession:
    session = current()
    if session is None:
        raise UsageError(
            "This gittrack call only works inside a tracked run; decorate the function with "
            "@gittrack.command() and run it."
        )
    return session


def _state(session: Any) -> _State:
    state = getattr(session, "_gittrack_data", None)
    if state is None:
        state = _State()
        session._gittrack_data = state
    return state


def output_dir() -> Path:
    """The current run's output folder (created on first use); files written there are kept."""
    return _session().output_dir


def save(name: str, obj: Any) -> Path:
    """Save `obj` as output `name` now (as a return value would be); returns its path."""
    session = _session()
    validate_name(name)
    if name == LOG_NAME and _state(session).log is not None:
        raise UsageError(f"Output name '{name}' is taken by gittrack.log(); choose another name.")
    placed = place(name, obj, session.output_dir, repo=session.repo)
    state = _state(session)
    with state.lock:
        state.saved[name] = placed
        _write_manifest(session, state)
    return session.output_dir / placed.path


def log(step: int | None = None, **values: Any) -> None:
    """Append one row (`step` plus `values`) to the run's `metrics.csv` output, flushed at once."""
    session = _session()
    state = _state(session)
    with state.lock:
        if state.log is None:
            state.log = MetricsLog(session.output_dir / LOG_FILE)
            _write_manifest(session, state)
        state.log.write(step, values)


def _write_manifest(session: Any, state: _State) -> None:
    data = {
        n: {"path": p.path, "kind": p.kind, "md5": p.md5, "size": p.size}
        for n, p in state.saved.items()
    }
    if state.log is not None:
        data[LOG_NAME] = {"path": LOG_FILE, "kind": "csv", "md5": "", "size": -1}
    tmp = session.folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, session.folder / MANIFEST)


class MetricsLog:
    """A CSV time series written row by row; new columns rewrite the header once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = []
        self.step = -1
        self._fh: Any = None

    def write(self, step: int | None, values: Mapping[str, Any]) -> None:
        self.step = self.step + 1 if step is None else int(step)
        for key in values:
            validate_column(key)
        new = [k for k in values if k not in self.columns]
        if new or self._fh is None:
            self._widen(self.columns + new)
        row = [self.step] + [_cell(values.get(c, "")) for c in self.columns]
        csv.writer(self._fh).writerow(row)
        self._fh.flush()

    def _widen(self, columns: list[str]) -> None:
        if self._fh is not None:
            self._fh.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["step", *columns])
            if self.path.exists() and self.columns:
                with open(self.path, newline="") as old:
                    rows = csv.reader(old)
                    next(rows, None)
                    for row in rows:
                        writer.writerow(row + [""] * (len(columns) - len(self.columns)))
        os.replace(tmp, self.path)
        self.columns = columns
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115 (kept open for the run)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def validate_column(key: str) -> None:
    if key == "step" or not key:
        raise UsageError(f"gittrack.log() cannot take a value named {key!r}; pass step=N instead.")


def _cell(value: Any) -> Any:
    if hasattr(value, "item") and not hasattr(value, "__len__"):
        return value.item()
    return value


# -- at the end of a run --------------------------------------------------------------------


def finalize(session: RunSession, files: dict[str, Path | bytes]) -> None:
    """Store the run's outputs (called by RunSession.finish before the commit).

    Fills `record.outputs`, adds one DVC pointer file per output to `files` and pushes to the
    DVC remote; a failure to push is reported once and leaves `pushed = false`.
    """
    record = session.record
    state = getattr(session, "_gittrack_data", None)
    wanted: dict[str, Any] = {}
    if state is not None:
        if state.log is not None:
            state.log.close()
            wanted[LOG_NAME] = Placed(LOG_FILE, "csv")
        wanted.update(state.saved)
    for name, value in session.pending_outputs.items():
        if name in wanted:
            record.outputs[name] = Output(
                path="",
                kind="",
                error=f"Output name '{name}' is already used by gittrack.save() or "
                "gittrack.log(); choose another name.",
            )
            continue
        wanted[name] = value
    for name, value in list(record.metrics.items()):
        path = _written_path(value, record)
        if path is not None and name not in wanted:
            del record.metrics[name]
            wanted[name] = path
    out_dir = project.outputs_root(session.repo) / session.id
    if not wanted and not out_dir.is_dir():
        return
    store_outputs(session.repo, record, out_dir, wanted, files)


def finalize_died(
    repo: store.Repo, record: RunRecord, folder: Path, files: dict[str, Path | bytes]
) -> None:
    """Store what a killed run wrote (saved outputs, its metrics.csv, its output folder)."""
    wanted: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        for name, info in json.loads((folder / MANIFEST).read_text()).items():
            md5 = info.get("md5", "") if name != LOG_NAME else ""
            wanted[name] = Placed(info["path"], info["kind"], md5, int(info.get("size", -1)))
    out_dir = project.outputs_root(repo) / record.id
    if wanted or out_dir.is_dir():
        store_outputs(repo, record, out_dir, wanted, files, quiet=True)
        keep_partial(record, out_dir)


def partial_outputs(out_dir: Path) -> dict[str, tuple[str, int]]:
    """{output name: (file, bytes)} for outputs a killed run was still writing (`*.partial`)."""
    found: dict[str, tuple[str, int]] = {}
    if not out_dir.is_dir():
        return found
    for entry in sorted(out_dir.iterdir()):
        if entry.name.startswith(".") or not entry.name.endswith(PARTIAL):
            continue
        final = Path(entry.name.removesuffix(PARTIAL))
        name = final.stem if entry.is_file() and final.suffix else final.name
        try:
            size = entry.stat().st_size if entry.is_file() else _folder_size(entry)
        except OSError:
            continue
        found.setdefault(name, (entry.name, size))
    return found


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def keep_partial(record: RunRecord, out_dir: Path) -> None:
    """Name the outputs the run was killed while writing: partial, never stored or pushed."""
    rel = out_dir.relative_to(out_dir.parents[2]).as_posix()  # .gittrack/outputs/<id>
    for name, (file, size) in partial_outputs(out_dir).items():
        stored = record.outputs.get(name)
        if stored is not None and stored.md5:
            continue  # a complete copy was stored after all
        record.outputs[name] = Output(
            path=file,
            size=size,
            kind="",
            partial=True,
            error=(
                f"the run was killed while storing it; the {size} bytes written so far are "
                f"kept in {rel}/{file}, and it is not a valid output"
            ),
        )


def _written_path(value: Any, record: RunRecord) -> Path | None:
    """A string metric naming a file or folder written during the run (then it is an output)."""
    if not isinstance(value, str) or not value or "\n" in value or len(value) > 4096:
        return None
    try:
        path = Path(value).expanduser()
        if not path.exists() or record.started is None:
            return None
        if path.stat().st_mtime + 1 < record.started.timestamp():
            return None
    except (OSError, ValueError):
        return None
    return path


def store_outputs(
    repo: store.Repo,
    record: RunRecord,
    out_dir: Path,
    wanted: Mapping[str, Any],
    files: dict[str, Path | bytes],
    *,
    quiet: bool = False,
) -> None:
    """Place, cache, point at and push every output of one run."""
    placed: dict[str, Placed] = {}
    for name, value in wanted.items():
        try:
            validate_name(name)
            placed[name] = (
                value if isinstance(value, Placed) else place(name, value, out_dir, repo=repo)
            )
        except OutputError as exc:
            record.outputs[name] = Output(path="", kind="", error=str(exc))
        except OSError as exc:
            _fail(record, name, exc)
        except Exception as exc:  # a value whose own writer failed (e.g. to_parquet)
            record.outputs[name] = Output(
                path="",
                kind="",
                error=f"Output '{name}' could not be written: {type(exc).__name__}: {exc}.",
            )
    _add_leftovers(out_dir, placed, record)
    _check_clashes(placed, record, files)
    if not placed:
        return
    from ..store import datastore

    cache = datastore.Store(repo)
    for name, item in placed.items():
        try:
            stored = cache.add(
                out_dir / item.path, link=True, md5=item.md5, size=item.size, within=out_dir
            )
        except OutputError as exc:  # e.g. a symlink to a file outside the repository
            record.outputs[name] = Output(
                path="", kind="", error=f"Output '{name}' was not stored: {exc}"
            )
            continue
        except (StorageFull, OSError) as exc:
            _fail(record, name, exc)
            continue
        record.outputs[name] = Output(
            path=item.path, md5=stored.md5, size=stored.size, kind=item.kind, nfiles=stored.nfiles
        )
        files[f"{name}.dvc"] = datastore.pointer_file(item.path, stored)
    ignored = sorted(o.path for o in record.outputs.values() if o.md5)
    if ignored:  # as `dvc add` does: a `git status` in a checkout stays clean after `dvc pull`
        files[".gitignore"] = "".join(f"/{p}\n" for p in ignored).encode()
    oids = {o.md5 for o in record.outputs.values() if o.md5}
    try:
        cache.push(oids)
    except RemoteError as exc:
        if not quiet:
            click.echo(
                f"Warning: run {record.short}'s outputs are safe in the local cache but not "
                f"pushed: {exc} 'gittrack push' sends them later.",
                err=True,
            )
        return
    cache.mark_pushed(cache.expand(oids))
    for output in record.outputs.values():
        if output.md5:
            output.pushed = True


def _fail(record: RunRecord, name: str, exc: BaseException) -> None:
    """An output that could not be written for lack of space fails the run, with the reason."""
    from ..store import datastore

    reason = getattr(exc, "strerror", None) or str(exc)
    full = isinstance(exc, StorageFull) or getattr(exc, "errno", None) in datastore.FULL_ERRNOS
    if full and not isinstance(exc, StorageFull):
        exc = StorageFull(f"output '{name}'", reason)
    message = str(exc) if full else f"Output '{name}' could not be stored ({reason})."
    record.outputs[name] = Output(path="", kind="", error=message)
    if full:
        record.status = "failed"
        record.exit_code = record.exit_code or 1
        if not record.error:
            record.error = {"type": type(exc).__name__, "message": message, "traceback": ""}


def _add_leftovers(out_dir: Path, placed: dict[str, Placed], record: RunRecord) -> None:
    """Files and folders left in the output folder that no output names are kept too."""
    if not out_dir.is_dir():
        return
    tops = {PurePosixPath(p.path).parts[0] for p in placed.values()}
    for entry in sorted(out_dir.iterdir()):
        if entry.name.startswith(".") or entry.name in tops or entry.name.endswith(SKIPPED):
            continue
        for name in (entry.stem if entry.is_file() else entry.name, entry.name):
            if name not in placed and name not in record.outputs:
                try:
                    validate_name(name)
                except OutputNameError:
                    continue
                placed[name] = Placed(entry.name, "dir" if entry.is_dir() else kind_of(entry))
                break


def _check_clashes(placed: dict[str, Placed], record: RunRecord, files: Mapping[str, Any]) -> None:
    """Drop outputs whose files would overwrite the run's own files or nest in another output."""
    taken = set(files) | RESERVED
    seen: list[tuple[str, ...]] = []
    for name in list(placed):
        parts = PurePosixPath(placed[name].path).parts
        problem = ""
        if parts[0] in taken or f"{name}.dvc" in taken:
            problem = f"its file '{placed[name].path}' clashes with the run's own files"
        elif any(parts[: len(s)] == s or s[: len(parts)] == parts for s in seen):
            problem = "it overlaps another output's files"
        if problem:
            del placed[name]
            record.outputs[name] = Output(
                path="", kind="", error=f"Output '{name}' was not stored: {problem}; rename it."
            )
            continue
        seen.append(parts)
