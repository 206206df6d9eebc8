"""Batch schedulers from the submitting side: is one there, and array jobs for a sweep.

`check_scheduler` answers within a few seconds whether `sbatch` (or `qsub`) exists and, for
SLURM, whether its controller answers, so that a sweep on a machine without a scheduler says so
in one sentence instead of waiting for workers that never come. `array_script` and
`submit_array` turn a sweep's grid into one SLURM array job whose tasks each record one run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import SchedulerUnavailable, UsageError

SUBMIT = {"slurm": ("sbatch", "SLURM"), "pbs": ("qsub", "PBS"), "sge": ("qsub", "SGE")}
PING_TIMEOUT_S = 4.0


def check_scheduler(kind: str) -> None:
    """Raise SchedulerUnavailable unless `kind`'s submit command exists (and SLURM answers)."""
    if kind not in SUBMIT:
        return
    tool, name = SUBMIT[kind]
    if shutil.which(tool) is None:
        raise SchedulerUnavailable(
            f"{tool} not found: {name} is not installed on this machine; "
            "use --executor local or dask."
        )
    if kind != "slurm":
        return
    scontrol = shutil.which("scontrol") or "scontrol"
    try:
        proc = subprocess.run(
            [scontrol, "ping"], capture_output=True, text=True, timeout=PING_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise SchedulerUnavailable(
            f"SLURM's controller did not answer within {PING_TIMEOUT_S:.0f} s; check it with "
            "'scontrol ping' (or use --executor local or dask)."
        ) from None
    except OSError as exc:
        raise SchedulerUnavailable(
            f"scontrol cannot run ({exc}); check the SLURM installation (or use --executor "
            "local or dask)."
        ) from None
    if proc.returncode != 0 or " is UP" not in proc.stdout:
        said = _first_line(proc.stderr) or _first_line(proc.stdout) or f"exit {proc.returncode}"
        raise SchedulerUnavailable(
            f"SLURM does not answer ({said}); check that slurmctld runs with 'scontrol ping' "
            "(or use --executor local or dask)."
        )


def try_submit(script: str, what: str = "the worker job") -> None:
    """`sbatch --test-only`: refuse a job script SLURM would refuse, before submitting anything."""
    proc = subprocess.run(
        ["sbatch", "--test-only"],
        input=script,
        capture_output=True,
        text=True,
        timeout=PING_TIMEOUT_S * 2,
    )
    if proc.returncode != 0:
        said = re.sub(r"^sbatch: error: ", "", _first_line(proc.stderr, last=True))
        raise UsageError(
            f"SLURM refuses {what}: {said.rstrip('.')}; check --queue, --cores, --memory and "
            "--walltime (or cluster.slurm in gittrack.yaml)."
        )


def _first_line(text: str, last: bool = False) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if last else lines[0]


# -- array jobs -----------------------------------------------------------------------------


@dataclass
class ArrayJob:
    """A sweep as one SLURM array job: the script's text, where it is saved, its job id."""

    script: str
    path: Path
    tasks: int
    job_id: str = ""


def array_script(
    *,
    cwd: Path,
    script: str,
    points: list[list[str]],
    experiment: str,
    logs: Path,
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    queue: str | None = None,
    extra: list[str] | None = None,
    python: str | None = None,
) -> str:
    """The text of an array job script whose task i runs grid point i as one recorded run."""
    directives = [
        f"--job-name={experiment}",
        f"--array=0-{len(points) - 1}",
        f"--output={logs / '%A_%a.out'}",
        f"--chdir={cwd}",
    ]
    if cores:
        directives.append(f"--cpus-per-task={cores}")
    if memory:
        directives.append(f"--mem={_slurm_memory(memory)}")
    if walltime:
        directives.append(f"--time={walltime}")
    if queue:
        directives.append(f"--partition={queue}")
    directives += list(extra or [])
    cases = "\n".join(f"  {i}) ARGS=({shlex.join(argv)}) ;;" for i, argv in enumerate(points))
    command = [
        python or sys.executable,
        "-m",
        "gittrack",
        "run",
        "--experiment",
        experiment,
        script,
    ]
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), ""]
    lines += [
        f"# gittrack sweep {experiment}: {len(points)} runs, one per array task",
        'case "$SLURM_ARRAY_TASK_ID" in',
        cases,
        '  *) echo "no grid point for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
        "esac",
        f'exec {shlex.join(command)} "${{ARGS[@]}}"',
        "",
    ]
    return "\n".join(lines)


def _slurm_memory(memory: str) -> str:
    """8GB -> 8G, 500MB -> 500M (sbatch's units); other spellings pass through."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT])i?B?\s*", memory, re.IGNORECASE)
    return f"{match.group(1)}{match.group(2).upper()}" if match else memory


def submit_array(job: ArrayJob) -> ArrayJob:
    """Save the job script and submit it with sbatch; returns the job with its id."""
    check_scheduler("slurm")
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_text(job.script)
    try_submit(job.script, "the array job")
    proc = subprocess.run(
        ["sbatch", "--parsable", str(job.path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    if proc.returncode != 0:
        said = re.sub(r"^sbatch: error: ", "", _first_line(proc.stderr, last=True))
        raise UsageError(f"sbatch refused the array job: {said.rstrip('.')}; see {job.path}.")
    job.job_id = proc.stdout.strip().split(";")[0]
    return job


def plan_array(
    script: str,
    args: list[str],
    *,
    repo_state: Path,
    name: str = "",
    cores: int | None = None,
    memory: str | None = None,
    walltime: str | None = None,
    queue: str | None = None,
) -> ArrayJob:
    """The array job of a sweep (`gittrack submit`): its grid checked, its script written out."""
    from .grid import grid_points, parse_grid
    from .sweep import check_arguments, default_name

    path, _, function = script.partition(":") if not Path(script).exists() else (script, "", "")
    script_path = Path(path).resolve()
    if not script_path.is_file():
        raise UsageError(f"Script {path} does not exist; check the path.")
    points = [argv for argv, _ in grid_points(parse_grid(args))]
    check_arguments(script_path, function or None, points)
    name = name or default_name(script)
    if not re.fullmatch(r"[\w.+-]+", name):
        raise UsageError(f"Experiment name '{name}' for a job: use letters, digits, . _ + - only.")
    folder = repo_state / "jobs"
    target = f"{script_path}:{function}" if function else str(script_path)
    text = array_script(
        cwd=Path.cwd(),
        script=target,
        points=points,
        experiment=name,
        logs=folder,
        cores=cores,
        memory=memory,
        walltime=walltime,
        queue=queue,
    )
    return ArrayJob(text, folder / f"{name}.sbatch", len(points))
