"""The decorator and the life of one run: start, heartbeat, finish, record.

A run is staged under `.git/gittrack/running/<id>/` while it executes (partial record, logs and
a heartbeat), and becomes exactly one commit on the runs branch when it ends. A process killed
before that leaves only the staging folder, which readers report as `died`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import store
from .._ids import short
from .._jsontext import dumps
from ..errors import UsageError
from ..library.consumers import consuming
from ..model.record import Input, RunRecord, check_nesting, is_scalar, metric_value
from ..store import config, project, staging
from . import capture
from .codefiles import CodeFiles
from .context import _current, forced, new_run_id, now, repo_path, script_of, take_options

if TYPE_CHECKING:
    from .command import TrackedCommand


class Invocation:
    """How a run was invoked when it is not a click command line (exec, track, notebook)."""

    def __init__(
        self,
        command: str,
        params: dict[str, Any] | None = None,
        argv: list[str] | None = None,
        script: Path | None = None,
        sources: dict[str, str] | None = None,
    ) -> None:
        self.command = command
        self.params: dict[str, Any] = {} if params is None else params
        self.argv: list[str] = [] if argv is None else argv
        self.script = script
        self.sources: dict[str, str] = {} if sources is None else sources


class RunSession:
    """One run in progress: owns its staging folder, heartbeat and output capture."""

    def __init__(
        self, command: TrackedCommand, ctx: click.Context, invocation: Invocation | None = None
    ) -> None:
        options = take_options()
        self.options = options
        self.script = options.script or script_of(command)
        if invocation is not None:
            self.script = invocation.script
        self.repo = store.find_repo(repo_path(options, self.script))
        base = store.head(self.repo)  # no commits yet: fail before anything is written
        store.check_writable(self.repo)
        project.ensure_initialised(self.repo)
        self.id = new_run_id()
        parent = _current.get()
        if invocation is None:
            params, sources = capture.click_params(ctx)
            argv = list(getattr(ctx, "_gittrack_argv", None) or [])
            name = _command_name(command, self.script, self.repo)
        else:
            params, sources = dict(invocation.params), dict(invocation.sources)
            argv, name = list(invocation.argv), invocation.command
            sources = sources or dict.fromkeys(params, "commandline")
        check_nesting("Param", params)  # before anything is written
        started = now()
        self.record: RunRecord = RunRecord(
            id=self.id,
            command=name,
            name=options.name,
            argv=argv,
            started=started,
            params=params,
            param_sources=sources,
            tags=list(options.tags),
            note=options.note,
            experiment=options.experiment or (parent.record.experiment if parent else ""),
            parent=options.parent or (parent.id if parent else ""),
            rerun_of=options.rerun_of,
            env=capture.environment(),
        )
        self.code_files = CodeFiles(
            self.repo, base, self.script, command.code, main_is_code=options.script is None
        )
        from . import runref  # memoisation

        command.record_inputs(self, ctx)
        fresh = forced(options) or not command.memoize or not config.settings(self.repo).memoize
        self.reused = None if fresh else runref.find_reusable(self)
        if self.reused is not None:  # an identical completed run: nothing staged or recorded
            if self.record.experiment and self.record.experiment != self.reused.experiment:
                from .membership import join

                join(self.repo, self.reused.id, self.record.experiment)
            return
        if options.name:
            _warn_if_named(self.repo, options.name)
        self.record.code = self.code_files.code(self.id, self.script)
        self.folder = staging.folder(self.repo) / self.id
        self.repo.make_dir(self.folder.parent)
        self.folder.mkdir()
        self.repo.share(self.folder)  # another member may commit it when this process dies
        self._heartbeat_stop = threading.Event()
        self._write_heartbeat()
        self._stage()
        self._packages: dict[str, str] = {}
        self._env_thread: threading.Thread | None = None
        cached = capture.cached_packages(self.repo.state_dir / "cache")
        if cached is not None:  # the usual case: no thread to start and join
            self._packages = {"packages.txt": cached, "digest": capture.packages_digest(cached)}
        else:  # scanning the installed packages takes ~100 ms: while the simulation runs
            self._env_thread = threading.Thread(target=self._collect_packages, daemon=True)
            self._env_thread.start()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)
        self._heartbeat.start()
        self.capture = capture.OutputCapture(self.folder)
        self._t0 = time.perf_counter()
        self.extra_files: dict[str, Path | bytes] = {}
        self._token = _current.set(self)
        self._consuming = consuming(self._consumed)
        if options.on_start is not None:
            options.on_start(self.id)
        if metadata := command.metadata:
            try:
                self.log_metadata(**metadata())
            except Exception as exc:  # the run has started: record it as failed, then raise
                report(self.finish("failed", exc=exc, exit_code=1))
                raise

    # -- during the run -----------------------------------------------------------------

    def log_metadata(self, **values: Any) -> None:
        check_nesting("Metadata", values)
        for key, value in values.items():
            if key in capture.RESERVED_ENV:
                raise UsageError(
                    f"Metadata key '{key}' is reserved by gittrack; choose another name."
                )
            self.record.env[key] = value

    def add_input(self, run_id: str, commit: str, output: str = "", md5: str = "") -> None:
        """Record an upstream run (and which of its outputs) as consumed by this run."""
        for existing in self.record.inputs:
            if (existing.run, existing.output) == (run_id, output):
                return
            if existing.run == run_id and not existing.output and output:
                existing.output, existing.md5 = output, md5
                return
        self.record.inputs.append(Input(run=run_id, commit=commit, output=output, md5=md5))

    def _consumed(self, run_id: str, commit: str, output: str, md5: str) -> None:
        """A run's output read through the library during this run: one of its inputs."""
        if run_id != self.id:
            self.add_input(run_id, commit, output, md5)

    @property
    def output_dir(self) -> Path:
        """The run's output folder in the working tree (git-ignored), created on first use."""
        folder = project.outputs_root(self.repo) / self.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- ending -------------------------------------------------------------------------

    def finish(
        self, status: str, result: Any = None, exc: BaseException | None = None, exit_code: int = 0
    ) -> RunRecord:
        """Record the run as one commit; returns the final record."""
        _current.reset(self._token)
        self._consuming.var.reset(self._consuming)
        record = self.record
        record.logs = self.capture.stop()
        try:
            self.code_files.collect()  # modules the command imported while it ran
            record.code = self.code_files.code(self.id, self.script)
        except Exception as problem:  # the run is recorded with the code known at its start
            record.code.incomplete = (  # on record, and such a run is never reused
                "the modules it imported as it ran are missing "
                f"({type(problem).__name__}: {problem})"
            )
        if record.code.incomplete:
            click.echo(
                f"Warning: the code of run {short(self.id)} may be incomplete: "
                f"{record.code.incomplete}; it is recorded so and never reused.",
                err=True,
            )
        if line := self.code_files.omitted_line(self.id):
            click.echo(line, err=True)
        record.finished = now()
        record.duration_s = round(time.perf_counter() - self._t0, 3)
        record.status = status
        record.exit_code = exit_code
        if exc is not None and status == "failed":
            from .tracebacks import user_traceback

            record.error = {"type": type(exc).__name__, "message": str(exc)}
            if not record.exec:  # an exec run's frames are gittrack's own: its message says all
                record.error["traceback"] = user_traceback(exc)
        if status == "interrupted" and isinstance(job := record.env.get("slurm"), dict):
            from .scheduler import slurm_outcome

            if reason := slurm_outcome(job):  # scancel, a time limit: what SLURM says
                record.error = {"type": "Interrupted", "message": reason}
        if result is not None and status == "completed":
            self._take_result(result)
        if self._env_thread is not None:
            self._env_thread.join(timeout=30)
        if "packages.txt" in self._packages:
            record.env["packages"] = self._packages["digest"]
        files: dict[str, Path | bytes] = {
            "stdout.log": self.folder / "stdout.log",
            "stderr.log": self.folder / "stderr.log",
        }
        if "packages.txt" in self._packages:
            files["packages.txt"] = self._packages["packages.txt"].encode()
        files.update(self.extra_files)
        if self._may_have_outputs():
            from . import outputs

            outputs.finalize(self, files)
        files["run.toml"] = self._stage()  # what a crash from here on leaves: the same bytes
        store.write_run(self.repo, record, files)
        if record.status == "completed" and record.memo:
            from ..index import memo

            memo.remember(
                self.repo,
                record.memo,
                record.id,
                record.started.isoformat() if record.started else "",
            )
        self._heartbeat_stop.set()
        staging.remove(self.folder)
        if staging.any_staged(self.repo):  # the next writer commits runs whose process is gone
            from .died import record_died

            record_died(self.repo)
        return record

    def _may_have_outputs(self) -> bool:
        """Whether outputs.py must look at this run (it is not imported for plain metrics)."""
        return bool(
            self.pending_outputs
            or hasattr(self, "_gittrack_data")  # gittrack.save / gittrack.log were used
            or any(isinstance(v, str) for v in self.record.metrics.values())  # maybe a path
            or (project.outputs_root(self.repo) / self.id).is_dir()
        )

    def _take_result(self, result: Any) -> None:
        if not isinstance(result, Mapping):
            result = {"result": result}
        for key, value in result.items():
            if value is None:
                continue
            if is_scalar(value):
                self.record.metrics[str(key)] = metric_value(value)
            else:
                self.pending_outputs[str(key)] = value

    @property
    def pending_outputs(self) -> dict[str, Any]:
        if not hasattr(self, "_pending_outputs"):
            self._pending_outputs: dict[str, Any] = {}
        return self._pending_outputs

    # -- staging and heartbeat ----------------------------------------------------------

    def _stage(self) -> bytes:
        """Write the record as it stands into the staging folder; returns the bytes written."""
        text = self.record.to_toml().encode()
        tmp = self.folder / "run.toml.tmp"
        tmp.write_bytes(text)
        os.replace(tmp, self.folder / "run.toml")
        return text

    def _write_heartbeat(self) -> None:
        info = {"pid": os.getpid(), "host": staging.hostname(), "time": time.time()}
        tmp = self.folder / "heartbeat.tmp"
        tmp.write_text(dumps(info))
        os.replace(tmp, self.folder / "heartbeat")

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(staging.HEARTBEAT_S):
            try:
                self._write_heartbeat()
            except OSError:
                return

    def _collect_packages(self) -> None:
        try:
            listing = capture.packages_listing(self.repo.state_dir / "cache", self.repo.share)
            self._packages = {"packages.txt": listing, "digest": capture.packages_digest(listing)}
        except Exception:  # the environment listing is best effort, never fails a run
            self._packages = {}


def report(record: RunRecord) -> None:
    for name, output in record.outputs.items():
        if output.error.startswith(f"Output '{name}' was not stored: "):
            click.echo(f"Warning: {output.error}", err=True)
        elif output.error:
            click.echo(f"Warning: output '{name}' was not stored: {output.error}", err=True)
    level = verbosity()
    if level < 0:  # gittrack -q
        return
    line = record.command_line
    name = f" '{record.name}'" if record.name else ""
    click.echo(
        f"run {record.short}{name} recorded ({record.status} in {record.duration_s:.1f} s): {line}",
        err=True,
    )
    if level > 0:
        click.echo(f"  see it: gittrack show {record.short}", err=True)


def verbosity() -> int:
    """-1 after `gittrack -q`, 1 or more after `-v` (GITTRACK_VERBOSITY), else 0."""
    try:
        return int(os.environ.get("GITTRACK_VERBOSITY", "0"))
    except ValueError:
        return 0


def _warn_if_named(repo: store.Repo, name: str) -> None:
    """One stderr line when earlier runs carry `name`: it will mean this run, the newest."""
    from ..index.db import Index

    earlier = Index(repo).ids_named(name)
    if earlier:
        shown = ", ".join(short(i) for i in earlier[:3])
        runs = f"{len(earlier)} run{'s' * (len(earlier) > 1)} ({shown}"
        runs += ", ...)" if len(earlier) > 3 else ")"
        click.echo(
            f"gittrack: name {name!r} already used by {runs}; {name!r} now means this run, "
            f"the newest (ls --where \"name = '{name}'\" lists them all).",
            err=True,
        )


def _command_name(command: click.Command, script: Path | None, repo: store.Repo) -> str:
    if script is None:
        return command.name or "command"
    try:
        rel = script.resolve().relative_to(repo.root.resolve()).as_posix()
    except ValueError:
        rel = script.name
    callback = command.callback
    func = getattr(callback, "__name__", "")
    if func and func != "main":
        return f"{rel}:{func}"
    return rel
