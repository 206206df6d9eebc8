"""What a batch scheduler says about the job a run is part of: job id, array index, node, resources.

`facts()` only reads environment variables (SLURM_*, PBS_*, SGE's JOB_ID...), so it costs
microseconds on the recording path. `slurm_outcome()` asks SLURM how a job ended (state, reason and
slurmstepd's own error lines); it is called only when a died run of a SLURM job is committed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEDULERS = ("slurm", "pbs", "sge")
QUERY_TIMEOUT_S = 5.0

# env table key -> the variables holding it, first found wins
SLURM = {
    "job_id": ("SLURM_JOB_ID", "SLURM_JOBID"),
    "array_job_id": ("SLURM_ARRAY_JOB_ID",),
    "array_task_id": ("SLURM_ARRAY_TASK_ID",),
    "job_name": ("SLURM_JOB_NAME",),
    "partition": ("SLURM_JOB_PARTITION",),
    "node": ("SLURMD_NODENAME", "SLURM_NODELIST"),
    "cluster": ("SLURM_CLUSTER_NAME",),
    "cpus": ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"),
    "memory_mb": ("SLURM_MEM_PER_NODE",),
    "memory_per_cpu_mb": ("SLURM_MEM_PER_CPU",),
    "restart_count": ("SLURM_RESTART_COUNT",),
}
PBS = {
    "job_id": ("PBS_JOBID",),
    "array_task_id": ("PBS_ARRAY_INDEX", "PBS_ARRAYID"),
    "job_name": ("PBS_JOBNAME",),
    "queue": ("PBS_QUEUE",),
    "cpus": ("NCPUS", "PBS_NUM_PPN"),
}
SGE = {
    "job_id": ("JOB_ID",),
    "array_task_id": ("SGE_TASK_ID",),
    "job_name": ("JOB_NAME",),
    "queue": ("QUEUE",),
    "cpus": ("NSLOTS",),
}
INTEGERS = frozenset({"array_task_id", "cpus", "memory_mb", "memory_per_cpu_mb", "restart_count"})


def facts(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The scheduler's facts about this process's job, as `{"slurm": {...}}` (empty outside one)."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"):
        table = _pick(env, SLURM)
        if table.get("array_task_id") == "4294967294":  # NO_VAL: not an array task
            table.pop("array_task_id")
        return {"slurm": table}
    if env.get("PBS_JOBID"):
        return {"pbs": {**_pick(env, PBS), "node": env.get("HOSTNAME", "")}}
    if env.get("JOB_ID") and env.get("SGE_TASK_ID") is not None and env.get("SGE_ROOT"):
        table = _pick(env, SGE)
        if table.get("array_task_id") == "undefined":
            table.pop("array_task_id")
        return {"sge": table}
    return {}


def _pick(env: Mapping[str, str], names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, variables in names.items():
        value = next((env[v] for v in variables if env.get(v)), "")
        if not value:
            continue
        if key in INTEGERS:
            with contextlib.suppress(ValueError):
                table[key] = int(value)
                continue
        table[key] = value
    return table


def slurm_job(job_id: str) -> dict[str, str]:
    """`scontrol show job` of one job as fields (JobState, Reason, StdOut...); {} if unknown."""
    import shutil
    import subprocess

    scontrol = shutil.which("scontrol")
    if not scontrol or not job_id:
        return {}
    try:
        proc = subprocess.run(
            [scontrol, "-o", "show", "job", job_id],
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    line = proc.stdout.splitlines()[0] if proc.stdout else ""
    return dict(re.findall(r"(\w[\w:/.]*)=(\S*)", line))


def slurm_outcome(table: Mapping[str, Any]) -> str:
    """How SLURM says a run's job ended, e.g. "SLURM job 12 FAILED (JobLaunchFailure):
    slurmstepd: error: Exceeded job memory limit"; "" when SLURM no longer knows the job."""
    job_id = str(table.get("job_id") or "")
    fields = slurm_job(job_id)
    state = fields.get("JobState", "")
    if not state:
        return ""
    reason = fields.get("Reason", "")
    errors = _stepd_errors(fields.get("StdErr") or fields.get("StdOut") or "")
    if state in ("RUNNING", "COMPLETING"):  # asked while the job ends: its output says how
        for line in errors:
            if "CANCELLED" in line:
                state = "TIMEOUT" if "TIME LIMIT" in line else "CANCELLED"
                reason = "TimeLimit" if state == "TIMEOUT" else reason
    text = f"SLURM job {job_id} {state}" + (f" ({reason})" if reason and reason != "None" else "")
    return text + (": " + "; ".join(errors) if errors else "")


def _stepd_errors(path: str) -> list[str]:
    """slurmstepd's error lines in a job's output file (out of memory, cancelled, time limit)."""
    if not path:
        return []
    try:
        with Path(path).open("rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 65536))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("slurmstepd") and ("error" in line or "CANCELLED" in line):
            message = re.sub(r"^slurmstepd(-\S+)?: error: ", "", line).strip("* ")
            if message not in found:
                found.append(message)
    return found[-3:]
