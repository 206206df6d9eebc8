"""Commands about chaining runs: sweep, rerun and lineage."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import click

from .._ids import short
from . import Context, check_folder, cli, complete_run, pass_context, write_file


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Runs at the same time (default 1, or `jobs` in the project settings).",
)
@click.option(
    "--name",
    default="",
    help="Experiment name recorded with every run (default: script-date-time).",
)
@click.option(
    "--fail-fast", is_flag=True, help="Stop the sweep at the first run that does not complete."
)
@click.option(
    "--executor",
    default=None,
    help="Where runs execute: local (worker processes) or a registered one, e.g. dask "
    "(default local, or `executor` in the project settings).",
)
@click.option(
    "--force", is_flag=True, help="Record every run anew, even when an identical one exists."
)
@click.option("--allow-failed", is_flag=True, help="Accept failed or died runs as RunRef inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--scheduler",
    default=None,
    help="Dask: the scheduler to use, e.g. tcp://head:8786 (default: a local cluster).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=None,
    help="Dask: run a failed or lost task again up to N times.",
)
@click.option(
    "--exec",
    "is_exec",
    is_flag=True,
    help="Sweep a program: the arguments are those of 'gittrack exec', -p values are swept.",
)
@click.option("--cores", type=int, default=None, help="slurm/pbs/sge: cores per job.")
@click.option("--memory", default=None, help="slurm/pbs/sge: memory per job, e.g. 8GB.")
@click.option("--walltime", default=None, help="slurm/pbs/sge: time limit per job, e.g. 01:00:00.")
@click.option("--queue", default=None, help="slurm/pbs/sge: the queue or partition.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def sweep(
    obj: Context,
    jobs: int | None,
    name: str,
    fail_fast: bool,
    executor: str | None,
    force: bool,
    allow_failed: bool,
    as_json: bool,
    scheduler: str | None,
    retries: int | None,
    cores: int | None,
    memory: str | None,
    walltime: str | None,
    queue: str | None,
    is_exec: bool,
    script: str,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT over every combination of the given values, as one experiment.

    An option's value `a,b,c` is a list, `start:stop[:step]` a range (stop excluded, as in
    Python); the runs are the product of all lists. Failures do not stop the other runs
    unless --fail-fast. Runs identical to earlier completed ones are reused. With --exec the
    arguments are those of `gittrack exec` and each `-p NAME=a,b,c` is swept.

    \b
    Example:
      gittrack sweep sim.py --temp 100,200,300 --seed 1:4 -j 2 --name temp-scan
      gittrack sweep sim.py --temp 100:1000:50 --executor dask --scheduler tcp://head:8786
      gittrack sweep --exec -p temp=100,200 -j 2 -- lmp -in in.melt -var T {temp}
    """
    from ..errors import UsageError
    from ..execute.sweep import SweepOptions, exec_grid, sweep as run_sweep, sweep_exec
    from ..library.run import project_settings

    defaults = project_settings(obj.repo())  # fails early outside a repository
    executor = executor or defaults.executor or "local"
    jobs = jobs or defaults.jobs or 1
    cluster = {
        "scheduler": scheduler,
        "retries": retries,
        "cores": cores,
        "memory": memory,
        "walltime": walltime,
        "queue": queue,
    }
    executor_options = {k: v for k, v in cluster.items() if v is not None}
    if executor_options and executor in ("local", "inprocess"):
        flags = ", ".join("--" + k for k in executor_options)
        verb = "is" if len(executor_options) == 1 else "are"
        raise UsageError(
            f"{flags} {verb} only for --executor dask, slurm, pbs or sge; add one of those or "
            "drop it."
        )
    from ..execute.executors import Interrupted

    if is_exec:
        exec_argv = [script, *args]
        points, _ = exec_grid(exec_argv)
        bar = _progress_bar("exec", (), as_json or obj.verbosity < 0, total=len(points))
        runner: Any = functools.partial(sweep_exec, exec_argv)
    else:
        bar = _progress_bar(script, args, as_json or obj.verbosity < 0)
        runner = functools.partial(run_sweep, script, args)
    try:
        report = runner(
            SweepOptions(
                name=name,
                jobs=jobs,
                executor=executor,
                fail_fast=fail_fast,
                force=force,
                allow_failed=allow_failed,
                repo=obj.repo_path,
                on_result=(lambda r: bar.update(1)) if bar else None,
                executor_options=executor_options,
            )
        )
    except Interrupted as stop:  # Ctrl-C: one line per run, then exit 130
        if bar:
            bar.close()
        if stop.report is not None:
            _print_report(stop.report, as_json)
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    finally:
        if bar:
            bar.close()
    _print_report(report, as_json)
    if report.failed:
        sys.exit(1)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--name", default="", help="Experiment name of the runs and the job (default: script-date)."
)
@click.option("--cores", type=int, default=None, help="Cores per task (--cpus-per-task).")
@click.option("--memory", default=None, help="Memory per task, e.g. 4GB (--mem).")
@click.option("--walltime", default=None, help="Time limit per task, e.g. 01:00:00 (--time).")
@click.option("--queue", default=None, help="The partition (--partition).")
@click.option("--dry-run", is_flag=True, help="Print the job script; submit nothing.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_context
def submit(
    obj: Context,
    name: str,
    cores: int | None,
    memory: str | None,
    walltime: str | None,
    queue: str | None,
    dry_run: bool,
    script: str,
    args: tuple[str, ...],
) -> None:
    """Submit a sweep of SCRIPT as one SLURM array job: one array task per run.

    The grid is given as for `gittrack sweep`. Each array task runs `gittrack run --experiment
    NAME SCRIPT ARGS` in this folder, so the repository must be on a filesystem the nodes share.
    The job script is saved under .git/gittrack/jobs/, next to the tasks' SLURM logs.

    \b
    Example:
      gittrack submit sim.py --temp 1:3:0.5 --name scan --cores 1 --memory 1GB
      gittrack ls --where experiment=scan
    """
    from ..execute.batch import plan_array, submit_array

    job = plan_array(
        script,
        list(args),
        repo_state=obj.repo().state_dir,
        name=name,
        cores=cores,
        memory=memory,
        walltime=walltime,
        queue=queue,
    )
    if dry_run:
        click.echo(job.script, nl=False)
        return
    submit_array(job)
    click.echo(job.job_id)
    click.echo(
        f"Submitted array job {job.job_id}: {job.tasks} runs ({job.path}); follow them with "
        f"'squeue -j {job.job_id}' and 'gittrack ls'.",
        err=True,
    )


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        click.echo(format_sweep(report, color=sys.stdout.isatty()))


def _progress_bar(script: str, args: tuple[str, ...], quiet: bool, total: int | None = None) -> Any:
    from ..execute.grid import grid_points, parse_grid

    if total is None:
        total = len(grid_points(parse_grid(args)))
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="run", desc=Path(script).name, file=sys.stderr, disable=None, leave=False
    )


def format_sweep(report: Any, color: bool = False) -> str:
    """The summary table of a sweep: one row per run, then the counts."""
    from .table import STATUS_COLOURS, headers_for, text  # the listing: loaded when shown

    metric_keys = sorted({k for r in report.results for k in r.metrics})
    titles = headers_for(
        [f"params.{k}" for k in report.varying] + [f"metrics.{k}" for k in metric_keys]
    )
    headers = ["id", "status", *titles]
    rows = []
    for r in report.results:
        status = "reused" if r.reused else r.status
        row = [short(r.run_id) or "-", status]
        row += [str(r.task.params.get(k, "")) for k in report.varying]
        row += [text(r.metrics.get(k), k) for k in metric_keys]
        rows.append(row)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [v.ljust(w) for v, w in zip(row, widths, strict=True)]
        if color:
            cells[1] = click.style(cells[1], fg=STATUS_COLOURS.get(row[1], "blue"))
        lines.append("  ".join(cells).rstrip())
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.counts.items()))
    lines.append(f"experiment {report.name}: {len(report.results)} runs ({counts})")
    for r in report.failed:
        if r.status not in ("interrupted", "cancelled"):  # Ctrl-C: the table says it all
            lines.append(f"  {short(r.run_id) or '-'} {r.status}: {r.error}")
    if report.stopped:
        lines.append("Stopped early (--fail-fast).")
    return "\n".join(lines)


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_context
def rerun(obj: Context, run_ref: str, as_json: bool) -> None:
    """Run RUN again with its exact code, params and inputs, and compare.

    The code commit RUN executed is checked out in a temporary git worktree (your files are not
    touched); RunRef inputs get the runs they had; the new run records `rerun_of` and joins no
    experiment. Each output is reported "identical bytes", "identical values" (arrays and
    tables equal by value, e.g. when only a date in the file differs) or "differs" with where
    (the bytes that differ, or the largest difference of floats); each metric with its change.

    \b
    Example:
      gittrack rerun 3f2a
      gittrack rerun fss --json
    """
    from ..execute.rerun import rerun as do_rerun

    report = do_rerun(obj.repo(), run_ref)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        click.echo(f"rerun {short(report.rerun)} of {short(report.original)}: {report.status}")
        for name, verdict in report.outputs.items():
            click.echo(f"  output {name}: {verdict}")
        for name, m in report.metrics.items():
            change = "identical" if m["same"] else "differs"
            delta = (
                f" ({m['before']} -> {m['after']}, delta {m['delta']:+.6g})"
                if "delta" in m and not m["same"]
                else ""
            )
            if not m["same"] and "delta" not in m:
                delta = f" ({m['before']!r} -> {m['after']!r})"
            click.echo(f"  metric {name}: {change}{delta}")
        click.echo("identical" if report.identical else "differs")
    if report.status != "completed":
        sys.exit(1)


@cli.command()
@click.argument("run_ref", metavar="RUN", shell_complete=complete_run)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the graph to this file (format from its suffix).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["svg", "png", "pdf", "dot"]),
    default=None,
    help="Output format (default: from -o, else dot).",
)
@click.option(
    "--downstream", is_flag=True, help="Show what used RUN instead of where it came from."
)
@click.option("--depth", type=click.IntRange(min=0), default=None, help="Follow at most N steps.")
@click.option(
    "--collapse/--no-collapse",
    default=None,
    help="Fold each experiment into one node with its swept ranges (default: fold past 20 runs).",
)
@click.option("--code", is_flag=True, help="Show the code commit of each run.")
@click.option("--json", "as_json", is_flag=True, help="Print the graph as JSON nodes and edges.")
@pass_context
def lineage(
    obj: Context,
    run_ref: str,
    output: str | None,
    fmt: str | None,
    downstream: bool,
    depth: int | None,
    collapse: bool | None,
    code: bool,
    as_json: bool,
) -> None:
    """Draw where RUN's results came from (or, with --downstream, what used them).

    Runs are boxes coloured by status with their varying params; outputs sit on the edges;
    experiments are clusters. Without Graphviz installed only --format dot works.

    \b
    Example:
      gittrack lineage 7d0b -o flow.svg
      gittrack lineage 3f2a --downstream --depth 2 --format dot
    """
    from ..errors import UsageError
    from ..library import lineage as lin

    if output:
        check_folder(output)
    graph = lin.build(
        obj.repo(), run_ref, downstream=downstream, depth=depth, collapse=collapse, code=code
    )
    if as_json:
        click.echo(json.dumps(graph.to_json(), indent=2))
        return
    if fmt is None:
        suffix = Path(output).suffix.lstrip(".").lower() if output else ""
        if output and suffix and suffix not in lin.FORMATS:
            raise UsageError(
                f"Cannot write a lineage graph as .{suffix}; name the file .svg, .png, .pdf or "
                ".dot, or give --format."
            )
        fmt = suffix if suffix in lin.FORMATS else ("svg" if output else "dot")
    data = lin.render(graph, fmt)
    if output:
        write_file(output, data)
        runs, edges = graph.run_count, len(graph.edges)
        click.echo(
            f"Wrote {output} ({runs} run{'s' * (runs != 1)}, {edges} edge{'s' * (edges != 1)}).",
            err=True,
        )
    elif fmt in ("dot", "svg"):
        click.echo(data.decode(), nl=False)
    else:
        sys.stdout.buffer.write(data)
