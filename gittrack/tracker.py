"""The decorator and the life of one run: start, heartbeat, finish, record.

A run is staged under `.git/gittrack/running/<id>/` while it executes (partial record, logs and
a heartbeat), and becomes exactly one commit on the runs branch when it ends. A process killed
before that leaves only the staging folder, which readers report as `died`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from . import capture, gitstore, project
from .errors import GittrackError, UsageError
from .record import Input, RunRecord, is_scalar, metric_value

HEARTBEAT_S = 10.0
STALE_S = 6 * HEARTBEAT_S  # a heartbeat older than this means the process is gone

_current: contextvars.ContextVar[RunSession | None] = contextvars.ContextVar(
    "gittrack_run", default=None
)


@dataclass
class RunOptions:
    """What `gittrack run` (or an Experiment) adds to the next run it starts."""

    name: str = ""
    tags: list[str] = field(default_factory=list)
    note: str = ""
    experiment: str = ""
    rerun_of: str = ""
    repo: str | None = None
    force: bool = False
    script: Path | None = None
    allow_failed: bool = False  # RunRef accepts failed/died runs (gittrack run --allow-failed)
    parent: str = ""  # the launching run when it is in another process (an experiment driver)


_pending: contextvars.ContextVar[RunOptions | None] = contextvars.ContextVar(
    "gittrack_pending", default=None
)


def new_run_id() -> str:
    """32 random hex characters: short ids of a sweep's runs do not collide."""
    return os.urandom(16).hex()


def now() -> dt.datetime:
    """The current UTC time to the millisecond (what TOML datetimes keep)."""
    stamp = dt.datetime.now(dt.UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def current() -> RunSession | None:
    """The run being recorded in this context, if any."""
    return _current.get()


class RunSession:
    """One run in progress: owns its staging folder, heartbeat and output capture."""

    def __init__(self, command: TrackedCommand, ctx: click.Context) -> None:
        options = _pending.get() or RunOptions()
        _pending.set(None)
        self.options = options
        self.script = options.script or _script_of(command)
        self.repo = gitstore.find_repo(
            options.repo
            or os.environ.get("GITTRACK_REPO")
            or (self.script.parent if self.script else None)
        )
        gitstore.head_state(self.repo)  # no commits yet: fail before anything is written
        gitstore.check_writable(self.repo)
        project.ensure_initialised(self.repo)
        self.id = new_run_id()
        parent = _current.get()
        params, sources = capture.click_params(ctx)
        argv = list(getattr(ctx, "_gittrack_argv", None) or [])
        started = now()
        self.record: RunRecord = RunRecord(
            id=self.id,
            command=_command_name(command, self.script, self.repo),
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
        self.record.code = gitstore.snapshot_code(self.repo, self.script, self.id)
        # the committer identity costs a git process: fetch it while the simulation runs
        threading.Thread(target=gitstore.Identity.get, args=(self.repo,), daemon=True).start()
        from . import runref  # inputs from RunRef and file arguments, and memoisation

        runref.record_inputs(self, ctx)
        forced = _forced(options) or not command.memoize
        self.reused = None if forced else runref.find_reusable(self)
        if self.reused is not None:
            return  # an identical completed run exists: nothing is staged or recorded
        self.folder = self.repo.state_dir / "running" / self.id
        self.folder.mkdir(parents=True)
        self._heartbeat_stop = threading.Event()
        self._write_heartbeat()
        self._stage()
        self._packages: dict[str, str] = {}
        self._env_thread = threading.Thread(target=self._collect_packages, daemon=True)
        self._env_thread.start()
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)
        self._heartbeat.start()
        self.capture = capture.OutputCapture(self.folder)
        self._t0 = time.perf_counter()
        self.extra_files: dict[str, Path | bytes] = {}
        self._token = _current.set(self)
        if metadata := command.metadata:
            try:
                self.log_metadata(**metadata())
            except Exception as exc:  # the run has started: record it as failed, then raise
                _report(self.finish("failed", exc=exc, exit_code=1))
                raise

    # -- during the run -----------------------------------------------------------------

    def log_metadata(self, **values: Any) -> None:
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

    @property
    def output_dir(self) -> Path:
        """The run's output folder in the working tree (git-ignored), created on first use."""
        folder = project.outputs_root(self.repo) / self.id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- ending -------------------------------------------------------------------------

    def finish(self, status: str, result: Any = None, exc: BaseException | None = None, exit_code: int = 0) -> RunRecord:  # fmt: skip
        """Record the run as one commit; returns the final record."""
        _current.reset(self._token)
        record = self.record
        record.logs = self.capture.stop()
        record.finished = now()
        record.duration_s = round(time.perf_counter() - self._t0, 3)
        record.status = status
        record.exit_code = exit_code
        if exc is not None and status == "failed":
            record.error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(__import__("traceback").format_exception(exc)),
            }
        if result is not None and status == "completed":
            self._take_result(result)
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
        self._stage()
        gitstore.write_run(self.repo, record, files)
        if record.status == "completed" and record.memo:
            from . import memo

            memo.remember(
                self.repo,
                record.memo,
                record.id,
                record.started.isoformat() if record.started else "",
            )
        self._heartbeat_stop.set()
        shutil.rmtree(self.folder, ignore_errors=True)
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

    def _stage(self) -> None:
        tmp = self.folder / "run.toml.tmp"
        tmp.write_text(self.record.to_toml())
        os.replace(tmp, self.folder / "run.toml")

    def _write_heartbeat(self) -> None:
        info = {"pid": os.getpid(), "host": capture.hostname(), "time": time.time()}
        tmp = self.folder / "heartbeat.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.folder / "heartbeat")

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(HEARTBEAT_S):
            try:
                self._write_heartbeat()
            except OSError:
                return

    def _collect_packages(self) -> None:
        try:
            listing = capture.packages_listing(self.repo.state_dir / "cache")
            self._packages = {"packages.txt": listing, "digest": capture.packages_digest(listing)}
        except Exception:  # the environment listing is best effort, never fails a run
            self._packages = {}


class TrackedCommand(click.Command):
    """A click command whose every invocation is recorded as one run."""

    def __init__(self, *args: Any, metadata: Callable[[], Mapping[str, Any]] | None = None, memoize: bool = True, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.metadata = metadata
        self.memoize = memoize

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:  # fmt: skip
        argv = list(args)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx._gittrack_argv = argv  # type: ignore[attr-defined]
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            session = RunSession(self, ctx)
        except GittrackError as exc:  # before the simulation starts: one clear sentence
            raise click.ClickException(str(exc)) from exc
        if session.reused is not None:
            ctx.meta["gittrack.record"] = session.reused
            ctx.meta["gittrack.reused"] = True
            click.echo(f"run {session.reused.short} reused (same code, params and inputs; --force records anew)", err=True)  # fmt: skip
            return None
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            result = super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort) as exc:
            record = session.finish("interrupted", exit_code=130)
            _report(record)
            raise exc
        except click.exceptions.Exit as exc:
            status = "completed" if exc.exit_code == 0 else "failed"
            record = session.finish(status, exc=exc, exit_code=exc.exit_code)
            _report(record)
            raise
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            record = session.finish("completed" if code == 0 else "failed", exc=exc, exit_code=code)
            _report(record)
            raise
        except BaseException as exc:
            record = session.finish("failed", exc=exc, exit_code=1)
            _report(record)
            ctx.meta["gittrack.record"] = record
            raise
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
        record = session.finish("completed", result=result)
        _report(record)
        ctx.meta["gittrack.record"] = record
        return result


def _forced(options: RunOptions) -> bool:
    return options.force or os.environ.get("GITTRACK_FORCE", "") not in ("", "0")


def next_options() -> RunOptions | None:
    """The options the next run started in this context will pick up, if any were set."""
    return _pending.get()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _report(record: RunRecord) -> None:
    for name, output in record.outputs.items():
        if output.error:
            click.echo(f"Warning: output '{name}' was not stored: {output.error}", err=True)
    line = record.command_line
    name = f" '{record.name}'" if record.name else ""
    click.echo(
        f"run {record.short}{name} recorded ({record.status} in {record.duration_s:.1f} s): {line}",
        err=True,
    )


def command(name: str | None = None, *, metadata: Callable[[], Mapping[str, Any]] | None = None, memoize: bool = True, **attrs: Any) -> Callable[[Callable[..., Any]], TrackedCommand]:  # fmt: skip
    """Decorate a function as a click command whose every run is recorded.

    `metadata` is called at the start of each run and its mapping is stored in `[env]`
    (e.g. a simulation engine's version). `memoize=False` records every run anew even when an
    identical completed run exists (for stochastic commands without a seed parameter). All
    other arguments go to `click.command`.
    """
    return click.command(name, cls=TrackedCommand, metadata=metadata, memoize=memoize, **attrs)


def log_metadata(**values: Any) -> None:
    """Store extra key/values in the current run's `[env]` (e.g. a dataset's commit hash)."""
    session = _current.get()
    if session is None:
        raise UsageError("gittrack.log_metadata() was called outside a tracked run.")
    session.log_metadata(**values)


def _script_of(command: click.Command) -> Path | None:
    callback = command.callback
    while callback is not None and hasattr(callback, "__wrapped__"):
        callback = callback.__wrapped__
    code = getattr(callback, "__code__", None)
    if code is None:
        return None
    path = Path(code.co_filename)
    return path if path.exists() else None


def _command_name(command: click.Command, script: Path | None, repo: gitstore.Repo) -> str:
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


def pending(options: RunOptions) -> contextvars.Token[RunOptions | None]:
    """Set the options the next run started in this context picks up."""
    return _pending.set(options)


def stale_runs(repo: gitstore.Repo) -> list[tuple[RunRecord, str]]:
    """Runs staged locally: (record, "running" or "died"), judged by pid and heartbeat."""
    folder = repo.state_dir / "running"
    if not folder.is_dir():
        return []
    host = capture.hostname()
    found = []
    for entry in sorted(folder.iterdir()):
        try:
            record = RunRecord.from_toml((entry / "run.toml").read_bytes(), entry.name)
            beat = json.loads((entry / "heartbeat").read_text())
        except (OSError, ValueError):
            continue
        alive = time.time() - float(beat.get("time", 0)) < STALE_S
        if beat.get("host") == host:
            alive = _pid_alive(int(beat.get("pid", -1)))
        found.append((record, "running" if alive else "died"))
    return found


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def record_died(repo: gitstore.Repo) -> list[str]:
    """Commit runs whose process is gone as `died`, keeping the logs they wrote."""
    recorded = []
    host = capture.hostname()
    for record, state in stale_runs(repo):
        if state != "died":
            continue
        folder = repo.state_dir / "running" / record.id
        try:
            beat = json.loads((folder / "heartbeat").read_text())
        except (OSError, ValueError):
            continue
        if beat.get("host") != host and time.time() - float(beat.get("time", 0)) < 10 * STALE_S:
            continue  # another host's run: shown as died, committed only when long silent
        if gitstore.read_record_bytes(repo, record.id) is None:
            record.status = "died"
            record.finished = record.finished or now()
            files: dict[str, Path | bytes] = {
                n: folder / n for n in ("stdout.log", "stderr.log") if (folder / n).exists()
            }
            record.logs = {n.removesuffix(".log"): n for n in files}
            from . import outputs

            outputs.finalize_died(repo, record, folder, files)
            gitstore.write_run(repo, record, files)
            recorded.append(record.id)
        shutil.rmtree(folder, ignore_errors=True)
    return recorded


def run_script(script: Path, args: list[str], function: str | None = None, options: RunOptions | None = None) -> RunRecord | None:  # fmt: skip
    """Load `script`, find its tracked command and invoke it in-process with `args`."""
    from .loader import find_command

    opts = options or RunOptions()
    gitstore.find_repo(opts.repo or os.environ.get("GITTRACK_REPO") or script.resolve().parent)
    cmd = find_command(script, function)
    opts.script = script
    token = pending(opts)
    try:
        ctx_holder: dict[str, Any] = {}
        original_invoke = cmd.invoke

        def invoke(ctx: click.Context) -> Any:
            ctx_holder["ctx"] = ctx
            return original_invoke(ctx)

        cmd.invoke = invoke  # type: ignore[method-assign]
        try:
            cmd.main(args, prog_name=script.name, standalone_mode=False)
        finally:
            del cmd.invoke
        ctx = ctx_holder.get("ctx")
        return ctx.meta.get("gittrack.record") if ctx else None
    finally:
        _pending.reset(token)
