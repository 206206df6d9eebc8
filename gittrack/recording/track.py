"""`gittrack.track(...)`: a run recorded from any Python code, a notebook cell or a plain script.

The block is one run of the same RunSession as a click command's: params given as a mapping,
outputs saved with `run.save`, metrics with `run.log`, and every run read inside the block
(`gittrack.runs(...)`, `gittrack.Run(...).params`, `.load()`) recorded as an input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._ids import short
from ..errors import UsageError
from .command import TrackedCommand
from .context import RunOptions, pending, reset_pending
from .session import Invocation, RunSession, report

if TYPE_CHECKING:
    from ..model.record import RunRecord


class _Untracked(TrackedCommand):
    """The click command a `track` block stands for: no click parameters, never reused."""

    def record_inputs(self, session: RunSession, ctx: click.Context) -> None:
        return None


class TrackedRun:
    """The run of a `track` block: save outputs, log metrics, read its id and final record."""

    def __init__(self, session: RunSession) -> None:
        self._session = session
        self.id = session.id
        self.record: RunRecord | None = None  # the final record, once the block has ended

    @property
    def short(self) -> str:
        return short(self.id)

    @property
    def output_dir(self) -> Path:
        """The run's output folder; files written there are kept as outputs."""
        return self._session.output_dir

    def save(self, name: str, obj: Any) -> Path:
        """Save `obj` as output `name` (arrays, tables, figures' files, paths...)."""
        from .outputs import save

        return save(name, _figure_file(name, obj, self.output_dir))

    def log(self, **metrics: Any) -> None:
        """Record metrics (numbers, strings, bools); a name logged again keeps the last value."""
        from ..model.record import is_scalar, metric_value

        for key, value in metrics.items():
            if not is_scalar(value):
                raise UsageError(
                    f"Metric '{key}' is not a number, string or bool; save it with "
                    "run.save() instead."
                )
            self._session.record.metrics[key] = metric_value(value)

    def log_metadata(self, **values: Any) -> None:
        """Extra key/values stored in the run's `[env]` (e.g. a dataset's version)."""
        self._session.log_metadata(**values)

    def __repr__(self) -> str:
        return f"<TrackedRun {self.short}>"


def _figure_file(name: str, obj: Any, out_dir: Path) -> Any:
    """A matplotlib figure becomes a PNG in the output folder; anything else as it is."""
    savefig = getattr(obj, "savefig", None)
    if callable(savefig) and type(obj).__module__.startswith("matplotlib"):
        path = out_dir / f"{name}.png"
        savefig(path)
        return path
    return obj


def code_file() -> Path | None:
    """The notebook or script running this code, where it can be told."""
    for var in ("GITTRACK_NOTEBOOK", "JPY_SESSION_NAME"):
        value = os.environ.get(var, "")
        if value and Path(value).is_file():
            return Path(value).absolute()
    main = sys.modules.get("__main__")
    for attr in ("__vsc_ipynb_file__", "__file__"):
        found = getattr(main, attr, None)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found).absolute()
    return None


@contextmanager
def track(
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    code: str | os.PathLike[str] | None = None,
    repo: str | os.PathLike[str] | None = None,
    tags: tuple[str, ...] | list[str] = (),
    note: str = "",
    experiment: str = "",
) -> Iterator[TrackedRun]:
    """Record the `with` block as one run named `name` (its command), with `params`.

    The code of the run is `code`, else the notebook or script running it. Runs read inside
    the block become its inputs. An exception in the block records the run as failed and is
    raised again.

    Example:
        with gittrack.track("fit-tc", params={"window": 0.2}) as run:
            run.log(tc=2.27)
    """
    if not isinstance(name, str) or not name.strip():
        raise UsageError("gittrack.track() needs a name, e.g. gittrack.track('fit-tc').")
    from .. import store
    from ..library.consumers import counting_reads

    # the repository is the one named, else the one around the working directory (as for git),
    # never one found from where the interpreter's main module happens to live
    where = store.find_repo(
        os.fspath(repo) if repo is not None else os.environ.get("GITTRACK_REPO") or None
    )
    script = Path(code).absolute() if code is not None else code_file()
    if (
        script is not None
        and code is None
        and not script.resolve().is_relative_to(where.root.resolve())
    ):
        script = None  # e.g. a test runner's main module: not the code of this run
    options = RunOptions(
        tags=list(tags),
        note=note,
        experiment=experiment,
        repo=str(where.root),
        script=script,
    )
    command = _Untracked(name, memoize=False)
    ctx = click.Context(command, info_name=name)
    invocation = Invocation(command=name, params=dict(params or {}), script=script)
    token = pending(options)
    try:
        session = RunSession(command, ctx, invocation)
    finally:
        reset_pending(token)
    handle = TrackedRun(session)
    reads = counting_reads(True)
    try:
        yield handle
    except (KeyboardInterrupt, click.Abort):
        handle.record = session.finish("interrupted", exit_code=130)
        report(handle.record)
        raise
    except BaseException as exc:
        handle.record = session.finish("failed", exc=exc, exit_code=1)
        report(handle.record)
        raise
    finally:
        reads.var.reset(reads)
    handle.record = session.finish("completed")
    report(handle.record)
