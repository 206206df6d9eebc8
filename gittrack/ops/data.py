"""Repository-wide data operations behind the CLI: push, status, verify, checkout, rm and gc.

Each function finds what it needs in the lookup table (records on the runs branch) and leaves
DVC to `datastore.py`. What is on the remote is asked of the remote (a listing of its object
folders), never believed: `pushed` in run.toml only says whether the push succeeded when the
run ended, and `.git/gittrack/pushed/` (a ledger per remote URL) answers only while the remote
cannot be reached.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import store
from .._ids import short
from ..errors import OutputError, RemoteError
from ..index.db import Index
from ..library.run import Run, resolve_id
from ..model.record import Output
from ..store import project, staging
from ..store.datastore import remote_url as remote_url, set_remote as set_remote

PROGRESS_MIN_BYTES = 64 << 20


@dataclass
class OutputRef:
    """One stored output of one run."""

    run: str
    name: str
    output: Output


def iter_outputs(repo: store.Repo) -> Iterator[OutputRef]:
    """Every stored output of every run on the runs branch."""
    for row in Index(repo).select():
        record = row.get("record") or {}
        for name, data in (record.get("outputs") or {}).items():
            if data.get("md5") and not data.get("error") and not data.get("partial"):
                known = {k: v for k, v in data.items() if k in Output.__dataclass_fields__}
                yield OutputRef(row["id"], name, Output(**known))


def _store(repo: store.Repo) -> Any:
    from ..store import datastore

    return datastore.Store(repo)


# -- push and status ------------------------------------------------------------------------


@dataclass
class PushReport:
    copied: int = 0  # objects copied to the remote now
    bytes: int = 0
    already: int = 0  # outputs found on the remote already
    missing: list[OutputRef] = field(default_factory=list)  # neither local nor on the remote
    url: str = ""


def push_outputs(repo: store.Repo, progress: bool = False) -> PushReport:
    """Push every output the DVC remote lacks, as its own listing says (no git remote needed);
    a progress bar on stderr if `progress` and the outputs to send are big."""
    cache = _store(repo)
    report = PushReport(url=cache.url)
    wanted = _outputs_by_md5(repo)
    if not wanted:
        return report
    cache.remote()  # fails early, with the fix, when the remote is unreachable
    there = cache.complete_on_remote(wanted)
    todo = {m: refs for m, refs in wanted.items() if m not in there}
    report.already = sum(len(refs) for m, refs in wanted.items() if m not in todo)
    local = {m for m in todo if cache.in_cache(m)}
    big = sum(todo[m][0].output.size for m in local) >= PROGRESS_MIN_BYTES
    copied = cache.push(local, progress=progress and big)
    report.copied = len(copied)
    report.bytes = sum(todo[m][0].output.size for m in local if cache.expand([m]) & copied)
    report.already += sum(len(todo[m]) for m in local if not cache.expand([m]) & copied)
    report.missing = [ref for m in set(todo) - local for ref in todo[m]]
    cache.mark_pushed(cache.expand(set(wanted) - (set(todo) - local)))
    return report


def _outputs_by_md5(repo: store.Repo) -> dict[str, list[OutputRef]]:
    found: dict[str, list[OutputRef]] = {}
    for ref in iter_outputs(repo):
        found.setdefault(ref.output.md5, []).append(ref)
    return found


def unpushed(cache: Any, repo: store.Repo) -> tuple[dict[str, list[OutputRef]], str]:
    """Outputs the remote lacks (a folder's files included), checked there; and why it could
    not be checked (then this clone's ledger of what it pushed answers instead)."""
    wanted = _outputs_by_md5(repo)
    if not wanted:
        return {}, ""
    try:
        there = cache.complete_on_remote(wanted)
    except RemoteError as exc:
        known = cache.known_pushed()
        return {m: refs for m, refs in wanted.items() if m not in known}, str(exc)
    return {m: refs for m, refs in wanted.items() if m not in there}, ""


@dataclass
class Status:
    unpushed: list[OutputRef] = field(default_factory=list)
    remote_problem: str = ""
    running: list[tuple[str, str, str]] = field(default_factory=list)  # (id, command, state)
    url: str = ""


def status(repo: store.Repo) -> Status:
    """Outputs not on the remote (its listing says), and runs still running or whose process died"""
    cache = _store(repo)
    result = Status(url=cache.url)
    todo, result.remote_problem = unpushed(cache, repo)
    result.unpushed = [ref for refs in todo.values() for ref in refs]
    for record, state in staging.stale_runs(repo):
        result.running.append((record.id, record.command_line, state))
    return result


# -- verify and checkout --------------------------------------------------------------------


@dataclass
class Problem:
    run: str
    name: str
    message: str


def verify(
    repo: store.Repo, refs: Sequence[str] = (), *, remote: bool = False
) -> tuple[int, list[Problem]]:
    """Re-hash the cached data of outputs (of `refs`, else of every run); (checked, problems).

    Sizes and hashes are compared with the record; with `remote`, the remote's copies too.
    """
    cache = _store(repo)
    wanted = {resolve_id(repo, r) for r in refs}
    checked, problems = 0, []
    if remote:
        cache.remote()  # fails early, with the fix, when the remote is unreachable
    for ref in iter_outputs(repo):
        if wanted and ref.run not in wanted:
            continue
        checked += 1
        if remote:
            there = cache.check_remote(ref.output.md5, _file_size(ref.output))
            if there:
                problems.append(Problem(ref.run, ref.name, f"on the remote: {there}"))
        message = cache.check(ref.output.md5, _file_size(ref.output))
        if message == "missing from the cache":
            try:
                there = bool(cache.on_remote([ref.output.md5]))
                message += (
                    f" (the remote has it: 'gittrack checkout {short(ref.run)}' fetches it)"
                    if there
                    else " and from the remote: it is lost unless another clone has it"
                )
            except RemoteError:
                message += " (the remote cannot be reached to check)"
        elif message.startswith("corrupted") and not ref.output.md5.endswith(".dir"):
            message += _drop_corrupted(cache, ref, project.outputs_root(repo) / ref.run)
        if message:
            problems.append(Problem(ref.run, ref.name, message))
    for problem in _partial(repo):
        if not wanted or problem.run in wanted:
            checked += 1
            problems.append(problem)
    if wanted and not checked:
        for run_id in wanted:
            Run(run_id, repo).record  # noqa: B018 (raises when the record is unreadable)
    return checked, problems


def _partial(repo: store.Repo) -> Iterator[Problem]:
    """Outputs a run was killed while storing: recorded as partial, or in a died staged run."""
    from ..recording.outputs import partial_outputs

    for row in Index(repo).select():
        for name, data in ((row.get("record") or {}).get("outputs") or {}).items():
            if data.get("partial"):
                yield Problem(row["id"], name, f"partial: {data.get('error', '')}")
    for record, state in staging.stale_runs(repo):
        if state != "died":
            continue
        for name, (file, size) in partial_outputs(project.outputs_root(repo) / record.id).items():
            yield Problem(
                record.id,
                name,
                f"partial: the run was killed while storing it ({size} bytes kept in {file}); "
                "'gittrack doctor' records the run as died",
            )


def _file_size(output: Output) -> int:
    """The recorded size to compare with a stored object (-1 for folders: sizes are per file)."""
    return -1 if output.md5.endswith(".dir") else output.size


def _drop_corrupted(cache: Any, ref: OutputRef, out_dir: Path) -> str:
    """Remove a corrupted cache object when the remote has a good copy; the fix, as text.

    The run's output folder holds a hard link to that same damaged file when gittrack linked
    it there; that link goes too, so that a checkout restores it (a copy of the user's stays).
    """
    md5, run_id = ref.output.md5, ref.run
    try:
        there = bool(cache.on_remote([md5]))
    except RemoteError:
        return "; the remote cannot be reached to fetch a good copy"
    if not there:
        return "; the remote has no copy either, so it was left in place"
    path = cache.cache_path(md5)
    with contextlib.suppress(OSError):
        linked = out_dir / ref.output.path
        if linked.is_file() and not linked.is_symlink() and os.path.samefile(linked, path):
            linked.unlink()
    with contextlib.suppress(OSError):
        path.chmod(0o644)
        path.unlink()
    return (
        f"; it was removed from the cache and 'gittrack checkout {short(run_id)}' fetches "
        "the remote's copy"
    )


def checkout(
    repo: store.Repo,
    ref: str,
    names: Sequence[str] = (),
    to: str | os.PathLike[str] | None = None,
    progress: bool = False,
    force: bool = False,
) -> list[Path]:
    """Materialise a run's outputs (all, or `names`) in its output folder or under `to`.

    Files and folders already there are kept unless they hold the same data, or `force`
    replaces them; nothing is written outside the target folder.
    """
    run = Run(ref, repo)
    stored = {n: o for n, o in run.outputs.items() if o.md5 and not o.error and not o.partial}
    for name in names:
        if name not in run.outputs:
            raise OutputError(
                f"Run {run.short} has no output '{name}' (its outputs: "
                f"{', '.join(sorted(run.outputs)) or 'none'})."
            )
        if name not in stored:
            raise OutputError(
                f"Output '{name}' of run {run.short} was not stored: "
                f"{run.outputs[name].error or 'no data'}"
            )
    chosen = {n: stored[n] for n in (names or sorted(stored))}
    within = Path(to).absolute() if to else project.outputs_root(repo)
    root = within if to else within / run.id
    cache = _store(repo)
    missing = [o for o in chosen.values() if not cache.in_cache(o.md5)]
    if missing:
        big = sum(o.size for o in missing) >= PROGRESS_MIN_BYTES
        cache.fetch([o.md5 for o in missing], progress=progress and big)
    total = sum(o.size for o in chosen.values())
    paths = []
    with _progress_bar(total, progress and total >= PROGRESS_MIN_BYTES) as update:
        for name, output in chosen.items():
            dest = root / output.path
            cache.materialise(
                output.md5,
                dest,
                link=to is None,
                progress=update,
                force=force,
                within=within,
                what=f"output '{name}' of run {run.short}",
            )
            paths.append(dest)
    return paths


@contextlib.contextmanager
def _progress_bar(total: int, show: bool) -> Iterator[Callable[[int], None] | None]:
    if not show:
        yield None
        return
    from tqdm import tqdm

    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="checkout", leave=False
    ) as bar:
        yield bar.update


# -- rm and gc ------------------------------------------------------------------------------


def dependents(repo: store.Repo, run_ids: Iterable[str]) -> dict[str, list[str]]:
    """{run id: ids of other runs on the branch whose [[inputs]] name it}."""
    ids = set(run_ids)
    found: dict[str, list[str]] = {}
    for row in Index(repo).select():
        if row["id"] in ids:
            continue
        for item in (row.get("record") or {}).get("inputs") or []:
            if item.get("run") in ids:
                found.setdefault(item["run"], []).append(row["id"])
    return found


def remove(repo: store.Repo, refs: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Commit the removal of runs; returns (removed ids, {removed id: dependent run ids})."""
    ids = list(dict.fromkeys(resolve_id(repo, r) for r in refs))
    users = dependents(repo, ids)
    shown = ", ".join(short(i) for i in ids[:5]) + (
        f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    )
    store.remove_runs(repo, ids, f"gittrack: remove run{'s' * (len(ids) > 1)} {shown}")
    return ids, users


@dataclass
class GcReport:
    objects: int = 0
    bytes: int = 0  # disk space actually freed locally (shared hardlinks counted once)
    folders: int = 0  # output folders of removed runs deleted from the working tree
    remote_objects: int = 0
    remote_bytes: int = 0
    temp_files: int = 0  # left in the cache or the remote by copies cut short (killed runs)


def gc(repo: store.Repo, remote: bool = False) -> GcReport:
    """Delete cache (and with `remote`, remote) objects no run on the branch references.

    Temp files that copies cut short left in the cache or a local-folder remote go too.
    """
    cache = _store(repo)
    used = {ref.output.md5 for ref in iter_outputs(repo)}
    live = staging.stale_runs(repo)
    running = [r.started.timestamp() for r, state in live if state == "running" and r.started]
    keep_newer = min(running) - 60 if running else None
    report = GcReport()
    on_branch = set(store.list_run_ids(repo))
    staged = {r.id for r, _ in live}
    doomed: list[Path] = cache.unused_in_cache(used, keep_newer)
    report.objects = len(doomed)
    folders = project.outputs_root(repo)
    if folders.is_dir():
        for entry in folders.iterdir():
            if (
                entry.is_dir()
                and entry.name not in on_branch
                and entry.name not in staged
                and (keep_newer is None or entry.stat().st_mtime < keep_newer)
            ):
                doomed.extend(p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
                report.folders += 1
                doomed.append(entry)
    temps = cache.stale_temps(remote=True)
    report.temp_files = len(temps)
    doomed.extend(temps)
    report.bytes = _delete(doomed)
    if remote:
        report.remote_objects, report.remote_bytes = cache.gc_remote(used)
    return report


def _delete(paths: list[Path]) -> int:
    """Delete files (then folders); bytes freed, counting a file's size when its last link goes."""
    groups: dict[tuple[int, int], list[Path]] = {}
    folders = []
    for path in paths:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if path.is_dir() and not path.is_symlink():
            folders.append(path)
            continue
        groups.setdefault((st.st_dev, st.st_ino), []).append(path)
    freed = 0
    for group in groups.values():
        st = group[0].lstat()
        if st.st_nlink <= len(group):
            freed += st.st_size
        for path in group:
            with contextlib.suppress(FileNotFoundError):
                if not os.access(path.parent, os.W_OK):
                    os.chmod(path.parent, 0o755)
                path.unlink()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return freed
