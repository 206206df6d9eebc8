"""The decorator: a click command whose every invocation is recorded as one run."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from .._process import freeze_startup
from ..errors import GittrackError, NotebookFailed, ProgramFailed, UsageError, storage_fault
from ..model.record import RunRecord
from .context import current
from .session import Invocation, RunSession, report, verbosity


class TrackedCommand(click.Command):
    """A click command whose every invocation is recorded as one run."""

    def __init__(
        self,
        *args: Any,
        metadata: Callable[[], Mapping[str, Any]] | None = None,
        memoize: bool = True,
        code: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.metadata = metadata
        self.memoize = memoize
        self.code = [code] if isinstance(code, str) else list(code)
        self._interrupted = False

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """As click's, but a run recorded as interrupted exits 130, as its record says, not 1."""
        self._interrupted = False
        if kwargs.get("standalone_mode", True):  # the process ends with this command
            freeze_startup()
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exc:
            if self._interrupted and exc.code == 1:  # click's "Aborted!"
                raise SystemExit(130) from exc
            raise

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        argv = list(args)
        ctx = super().make_context(info_name, args, parent, **extra)
        ctx._gittrack_argv = argv  # type: ignore[attr-defined]
        return ctx

    def invocation(self, ctx: click.Context) -> Invocation | None:
        """What to record as the run's command, params and argv; None: the click command line."""
        return None

    def record_inputs(self, session: RunSession, ctx: click.Context) -> None:
        """Record the run's inputs (RunRef values, files that are outputs) and its memo key."""
        from . import runref

        runref.record_inputs(session, ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            session = RunSession(self, ctx, self.invocation(ctx))
        except GittrackError as exc:  # before the simulation starts: one clear sentence
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            raise _storage_failure(exc) from exc
        outcome = session.options  # whoever set the options reads the record back from them
        if session.reused is not None:
            outcome.record, outcome.reused = session.reused, True
            if verbosity() >= 0:
                # `gittrack run` has --force; a script run directly has only the variable
                anew = "--force" if outcome.script is not None else "GITTRACK_FORCE=1"
                click.echo(
                    f"run {session.reused.short} reused "
                    f"(same code, params and inputs; {anew} records anew)",
                    err=True,
                )
            return None
        previous = signal.getsignal(signal.SIGTERM)
        main_thread = threading.current_thread() is threading.main_thread()
        if main_thread:
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            result = super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):
            outcome.record = _finish(session, "interrupted", exit_code=130)
            report(outcome.record)
            self._interrupted = True
            raise
        except click.exceptions.Exit as exc:
            status = "completed" if exc.exit_code == 0 else "failed"
            outcome.record = _finish(session, status, exc=exc, exit_code=exc.exit_code)
            report(outcome.record)
            if exc.exit_code == 0:
                _exit_if_failed(outcome.record)
            raise
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            status = "completed" if code == 0 else "failed"
            outcome.record = _finish(session, status, exc=exc, exit_code=code)
            report(outcome.record)
            if code == 0:
                _exit_if_failed(outcome.record)
            raise
        except BaseException as exc:
            code = exc.exit_code if isinstance(exc, ProgramFailed | NotebookFailed) else 1
            code = code if isinstance(code, int) and code else 1
            outcome.record = _finish(session, "failed", exc=exc, exit_code=code)
            report(outcome.record)
            if isinstance(exc, UsageError):  # gittrack misused in the body: one sentence
                raise click.ClickException(str(exc)) from exc
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
        outcome.record = _finish(session, "completed", result=result)
        report(outcome.record)
        _exit_if_failed(outcome.record)
        return result


def _exit_if_failed(record: RunRecord) -> None:
    """Exit non-zero for a run recorded as failed (e.g. its outputs did not fit on the disk)."""
    if record.status == "failed":
        raise click.exceptions.Exit(record.exit_code or 1)


def _storage_failure(exc: Exception) -> Exception:
    """A disk that filled up (or a file size limit) as one sentence; anything else unchanged."""
    full = storage_fault(exc, "the run")
    return exc if full is None else click.ClickException(str(full))


def _finish(session: RunSession, status: str, **kwargs: Any) -> Any:
    """session.finish(), with a full disk while recording reported in one sentence."""
    try:
        return session.finish(status, **kwargs)
    except Exception as exc:
        failure = _storage_failure(exc)
        if failure is exc:
            raise
        raise failure from exc


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def command(
    name: str | None = None,
    *,
    metadata: Callable[[], Mapping[str, Any]] | None = None,
    memoize: bool = True,
    code: Sequence[str] = (),
    **attrs: Any,
) -> Callable[[Callable[..., Any]], TrackedCommand]:
    """Decorate a function as a click command whose every run is recorded.

    `metadata` is called at the start of each run and its mapping is stored in `[env]`
    (e.g. a simulation engine's version). `memoize=False` records every run anew even when an
    identical completed run exists (for stochastic commands without a seed parameter). `code`
    names more files the command executes, as glob patterns relative to the repository root
    (e.g. `code=["model/*.yaml"]`): they are part of its code identity (docs/concepts.md). All
    other arguments go to `click.command`.
    """
    return click.command(
        name, cls=TrackedCommand, metadata=metadata, memoize=memoize, code=code, **attrs
    )


def log_metadata(**values: Any) -> None:
    """Store extra key/values in the current run's `[env]` (e.g. a dataset's commit hash)."""
    session = current()
    if session is None:
        raise UsageError("gittrack.log_metadata() was called outside a tracked run.")
    session.log_metadata(**values)
