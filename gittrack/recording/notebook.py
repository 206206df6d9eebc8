"""`gittrack notebook NB.ipynb -p NAME VALUE`: a notebook executed with papermill as one run.

The notebook is the run's code; the params are injected by papermill after the cell tagged
`parameters`; it executes in the run folder (or `--cwd`), so figures it saves are kept as
outputs next to the executed notebook. Runs the kernel reads through `gittrack.Run` or
`gittrack.runs` are reported back through a file and recorded as inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import NotebookFailed, UsageError
from .command import TrackedCommand
from .context import RunOptions, current
from .invoke import invoke
from .session import Invocation, RunSession

DEFAULT_KERNEL = "python3"
OUTPUT_NAME = "notebook"


class NotebookCommand(TrackedCommand):
    """The tracked command a notebook run stands for: its params are papermill's."""

    def invocation(self, ctx: click.Context) -> Invocation | None:
        notebook: Path = ctx.params["notebook"]
        params: dict[str, Any] = ctx.params["values"]
        argv = [a for k, v in params.items() for a in ("-p", k, _text(v))]
        return Invocation(command=ctx.params["shown"], params=params, argv=argv, script=notebook)

    def record_inputs(self, session: RunSession, ctx: click.Context) -> None:
        return None  # the kernel reports what it reads while it runs


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _callback(
    notebook: Path, values: dict[str, Any], shown: str, kernel: str, cwd: str | None
) -> None:
    session = current()
    assert session is not None
    execute(session, notebook, values, kernel, cwd)


NOTEBOOK = NotebookCommand(
    "notebook",
    callback=_callback,
    params=[
        click.Option(["--notebook"], type=click.Path(path_type=Path)),
        click.Option(["--values"], default="{}", callback=lambda c, p, v: json.loads(v)),
        click.Option(["--shown"]),
        click.Option(["--kernel"], default=""),
        click.Option(["--cwd"], default=None),
    ],
    memoize=False,
)


def check_notebook(path: Path) -> dict[str, Any]:
    """The notebook's JSON, or a one-sentence error when it is no notebook."""
    if path.suffix != ".ipynb":
        raise UsageError(f"{path} is not a notebook (.ipynb); give the notebook's file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"Notebook {path} does not exist; check the path.") from exc
    except (OSError, ValueError) as exc:
        raise UsageError(f"Notebook {path} cannot be read as JSON ({exc}).") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise UsageError(f"Notebook {path} has no cells; is it a Jupyter notebook?")
    return data


def run_notebook(
    notebook: str | os.PathLike[str],
    params: Mapping[str, Any],
    options: RunOptions,
    *,
    kernel: str = "",
    cwd: str | None = None,
) -> RunOptions:
    """Execute `notebook` with `params` as one run; returns `options` with the record."""
    path = Path(notebook).absolute()
    check_notebook(path)
    options.script = path
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    args = ["--notebook", str(path), "--shown", shown, "--kernel", kernel]
    args += ["--values", json.dumps(dict(params))]  # JSON keeps the values' types
    if cwd:
        args += ["--cwd", cwd]
    return invoke(NOTEBOOK, args, options, "notebook")


def execute(
    session: RunSession, notebook: Path, params: dict[str, Any], kernel: str, cwd: str | None
) -> None:
    """Run the notebook with papermill in the run folder; keep it and what it wrote."""
    from .._extras import require

    require("gittrack notebook", "notebook", "papermill", "nbclient", "ipykernel")
    import papermill  # ~0.8 s to import: only when a notebook runs

    data = check_notebook(notebook)
    spec = (data.get("metadata") or {}).get("kernelspec") or {}
    spec = spec if isinstance(spec, dict) else {}
    kernel_name = kernel or spec.get("name") or DEFAULT_KERNEL
    info = (data.get("metadata") or {}).get("language_info") or {}
    language = spec.get("language") or (info.get("name") if isinstance(info, dict) else "")
    run_dir = session.output_dir
    executed = run_dir / notebook.name
    reads = session.folder / "consumed.jsonl"
    from ..library.consumers import FILE_VAR, read_consumed

    saved = {k: os.environ.get(k) for k in (FILE_VAR, "GITTRACK_REPO", "GITTRACK_NOTEBOOK")}
    os.environ[FILE_VAR] = str(reads)
    os.environ["GITTRACK_REPO"] = str(session.repo.root)
    os.environ["GITTRACK_NOTEBOOK"] = str(notebook)
    error: BaseException | None = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            parameters=params,
            kernel_name=kernel_name,
            language=language or "python",
            cwd=str(Path(cwd).absolute() if cwd else run_dir),
            progress_bar=False,
        )
    except papermill.PapermillExecutionError as exc:
        error = NotebookFailed(notebook.name, f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})")
    except Exception as exc:  # no such kernel, a kernel that died
        error = NotebookFailed(notebook.name, f"{type(exc).__name__}: {exc}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    for item in read_consumed(str(reads)):
        if item["run"] != session.id:
            session.add_input(item["run"], item["commit"], item["output"], item["md5"])
    if executed.is_file():
        session.pending_outputs[OUTPUT_NAME] = executed
    if error is not None:
        raise error


def parse_values(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs as typed values (int, float, bool, else string)."""
    from .exec_spec import NAME, typed_value

    values: dict[str, Any] = {}
    for name, value in pairs:
        if not NAME.match(name):
            raise UsageError(f"-p {name}: a param name is a Python identifier, e.g. -p temp 300.")
        values[name] = typed_value(value)
    return values
