"""A real one-node SLURM cluster on localhost for the tests (pytest plugin, fixture `slurm`).

Everything lives under a temporary folder: the munge key, munged's socket, `slurm.conf`, the
state and spool directories, pid files and logs. `munged`, `slurmctld -D` and `slurmd -D` run as
children of the test session and are stopped at its end. Each pytest-xdist worker gets its own
cluster (free ports, its own node and cluster name), so `-n 2` runs two clusters side by side.

Tests pass `slurm.env` to subprocesses (it holds `SLURM_CONF`), or use the `slurm_env` fixture to
have it in `os.environ` for in-process code (dask-jobqueue calls `sbatch` itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
# states after which a job never changes again (squeue/scontrol long names)
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
STARTUP_TIMEOUT = 60.0
SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


class SlurmError(RuntimeError):
    """A SLURM command failed or a job did not finish in time."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _hardware() -> tuple[int, int]:
    """CPUs and RealMemory (MB) of this machine, as slurmd sees them."""
    out = subprocess.run(
        [_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, check=True
    ).stdout
    cpus = int(re.search(r"\bCPUs=(\d+)", out).group(1))  # type: ignore[union-attr]
    memory = int(re.search(r"\bRealMemory=(\d+)", out).group(1))  # type: ignore[union-attr]
    return cpus, memory


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"--- {path.name}: (missing)"
    return f"--- {path.name} (last {lines} lines)\n" + "\n".join(text[-lines:])


class SlurmCluster:
    """A running one-node cluster; `env` is the environment its clients need."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name  # cluster name, also the node and partition name
        self.node = name
        self.partition = "debug"
        self.conf = root / "etc" / "slurm.conf"
        self.munge_socket = root / "munge" / "munge.socket"
        self.jobs_dir = root / "jobs"  # default working directory of submitted jobs
        self.logs = {
            "munged": root / "log" / "munged.stdout",  # in the foreground it logs to stderr
            "slurmctld": root / "log" / "slurmctld.log",
            "slurmd": root / "log" / "slurmd.log",
        }
        self.cpus, self.memory = _hardware()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- environment and commands ------------------------------------------------------------

    @property
    def extra_env(self) -> dict[str, str]:
        """The variables to add to an environment so that SLURM commands use this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    @property
    def env(self) -> dict[str, str]:
        """The current `os.environ` (as the test sees it now) plus `SLURM_CONF`, minus any
        SLURM_* variables inherited from an outer job."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        return {**base, **self.extra_env}

    def run(
        self,
        *cmd: str,
        check: bool = True,
        cwd: Path | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster (`env`: variables to add)."""
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, env={**self.env, **(env or {})}, cwd=cwd,
            input=input, timeout=60,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise SlurmError(
                f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout}"
            )
        return proc

    def sbatch(
        self,
        script: str | Path | None,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Submit a job and return its id.

        `script` is a path to a job script, the text of one (sent on stdin), or None when the
        arguments carry `--wrap`. The job runs in `cwd` (default: `jobs_dir`), where SLURM
        writes `slurm-<id>.out`, with the test's environment (sbatch exports it) plus `env`.
        """
        cwd = cwd or self.jobs_dir
        cmd = ["sbatch", "--parsable", *args]
        text = None
        if isinstance(script, Path):
            cmd.append(str(script))
        elif script is not None:
            text = script
        out = self.run(*cmd, cwd=cwd, input=text, env=env).stdout.strip()
        return out.split(";")[0]  # "<id>" or "<id>;<cluster>"

    def jobs(self, job_id: str) -> dict[str, dict[str, str]]:
        """`scontrol show job` of a job (all tasks of an array): {JobId or id_task: fields}."""
        proc = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:
                return {}
            raise SlurmError(f"scontrol show job {job_id}: {proc.stderr.strip()}")
        result: dict[str, dict[str, str]] = {}
        for line in proc.stdout.splitlines():
            fields = dict(re.findall(r"(\w[\w:/.]*)=(\S*)", line))
            if not fields:
                continue
            key = fields["JobId"]
            if fields.get("ArrayTaskId"):
                key = f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"
            result[key] = fields
        return result

    def job(self, job_id: str) -> dict[str, str]:
        """The `scontrol show job` fields of one job (JobState, Reason, NodeList, ExitCode...)."""
        jobs = self.jobs(job_id)
        if len(jobs) != 1:
            raise SlurmError(f"job {job_id}: expected one job, scontrol shows {sorted(jobs)}")
        return next(iter(jobs.values()))

    def state(self, job_id: str) -> str:
        """The state of a job; for an array, the states of its tasks joined by commas."""
        jobs = self.jobs(job_id)
        if not jobs:
            raise SlurmError(f"job {job_id} is unknown to scontrol")
        return ",".join(sorted({fields["JobState"] for fields in jobs.values()}))

    def wait(self, job_id: str, timeout: float = 60.0) -> str:
        """Wait until the job (every task of an array) is finished; return `state(job_id)`."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.jobs(job_id)
            states = {fields["JobState"] for fields in jobs.values()}
            if jobs and states <= FINAL_STATES:
                return ",".join(sorted(states))
            if time.monotonic() > deadline:
                raise SlurmError(
                    f"job {job_id} not finished after {timeout:.0f} s: {sorted(states)}\n"
                    + self.diagnostics()
                )
            time.sleep(0.2)

    def wait_state(self, job_id: str, state: str, timeout: float = 30.0) -> None:
        """Wait until the job is in `state` (e.g. RUNNING)."""
        deadline = time.monotonic() + timeout
        while (now := self.state(job_id)) != state:
            if now in FINAL_STATES or time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} is {now}, waited for {state}")
            time.sleep(0.1)

    def squeue(self) -> list[dict[str, str]]:
        """The jobs in the queue: id, state (long name), name, nodes, reason."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%j|%N|%r").stdout
        keys = ("id", "state", "name", "nodes", "reason")
        return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]

    def scancel(self, job_id: str, *args: str) -> None:
        self.run("scancel", *args, job_id)

    def diagnostics(self) -> str:
        """The tails of the daemons' logs, for error messages."""
        return "\n".join(_tail(path) for path in self.logs.values())

    # -- start and stop --------------------------------------------------------------------

    def write_config(self) -> None:
        for sub in ("etc", "munge", "log", "run", "state", f"spool/{self.node}", "jobs"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.root / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        user = _user_name()
        host = socket.gethostname().split(".")[0]
        mem_per_cpu = max(1, self.memory // self.cpus)
        run = self.root / "run"
        self.conf.write_text(
            f"""\
# one-node test cluster, written by tests/slurm_cluster.py
ClusterName={self.name}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool" / "%n"}
SlurmctldPidFile={run / "slurmctld.pid"}
SlurmdPidFile={run / "slurmd-%n.pid"}
SlurmctldLogFile={self.logs["slurmctld"]}
SlurmdLogFile={self.logs["slurmd"]}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={mem_per_cpu}
# memory limits are enforced by sampling the job's processes every second
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MaxJobCount=100000
MaxArraySize=10001
MinJobAge=3600
KillWait=5
SlurmdTimeout=60
InactiveLimit=0
SchedulerType=sched/backfill
# schedule a job as soon as it is submitted (the default waits up to 3 s to batch them)
SchedulerParameters=batch_sched_delay=0
PlugStackConfig=/dev/null
NodeName={self.node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} \
RealMemory={self.memory} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _start(self, name: str, *cmd: str) -> None:
        out = open(self.root / "log" / f"{name}.stdout", "wb")  # noqa: SIM115
        self._procs[name] = subprocess.Popen(
            [_which(cmd[0]) or cmd[0], *cmd[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.root,
            start_new_session=True,
        )
        out.close()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmError(
                    f"{name} exited {proc.returncode} while the test cluster started\n"
                    + _tail(self.root / "log" / f"{name}.stdout")
                    + "\n"
                    + self.diagnostics()
                )

    def start(self) -> None:
        self.write_config()
        munge = self.root / "munge"
        self._start(
            "munged", "munged", "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={self.root / 'etc' / 'munge.key'}",
            f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
        )  # fmt: skip
        self._wait(lambda: self.munge_socket.exists(), "munged to open its socket")
        self._start("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._wait(
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
            "slurmctld to answer scontrol ping",
        )
        self._start("slurmd", "slurmd", "-D", "-N", self.node, "-f", str(self.conf))
        self._wait(self._node_idle, f"node {self.node} to be idle in sinfo")

    def _node_idle(self) -> bool:
        proc = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
        return proc.stdout.strip() == "idle"

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmError(
                    f"the test SLURM cluster did not start: waited {STARTUP_TIMEOUT:.0f} s for "
                    f"{what}\n" + self.diagnostics()
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Cancel every job, stop the daemons (terminate, then kill) and any leftover job."""
        if "slurmd" in self._procs and self._procs["slurmd"].poll() is None:
            with contextlib.suppress(SlurmError, subprocess.TimeoutExpired):
                self.run("scancel", "--full", "--quiet", "--user", str(os.getuid()))
                deadline = time.monotonic() + 15
                while self.squeue() and time.monotonic() < deadline:
                    time.sleep(0.2)
        for name in reversed(DAEMONS):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Kill processes that still carry this cluster's SLURM_CONF (slurmstepd, job steps):
        slurmstepd leaves slurmd's process group, so stopping slurmd does not end them."""
        marker = f"SLURM_CONF={self.conf}".encode()
        me = os.getpid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(os.getuid())


def _which(tool: str) -> str | None:
    """The path of a SLURM or munge program; the daemons are in /usr/sbin, often not on PATH."""
    return shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))


def _missing() -> list[str]:
    return [tool for tool in (*DAEMONS, *CLIENTS) if _which(tool) is None]


@pytest.fixture(scope="session")
def slurm(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster for this pytest worker (see the module docstring)."""
    worker_id = getattr(request.config, "workerinput", {}).get("workerid", "main")
    missing = _missing()
    if missing:
        pytest.skip(
            "SLURM TESTS SKIPPED: " + ", ".join(missing) + " not found. Install Debian's "
            "slurm-wlm and munge (`make test` does it: apt-get install slurm-wlm munge)."
        )
    worker = re.sub(r"\W", "", worker_id).lower() or "main"
    # a short path: munged's socket path must fit in a sockaddr_un (108 bytes)
    root = Path(tempfile.mkdtemp(prefix=f"slurm-{worker}-"))
    # the process id too: daemons a crashed earlier session left behind must not clash
    cluster = SlurmCluster(root, f"gt{worker}p{os.getpid()}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def slurm_env(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """`slurm`, with its SLURM_CONF also in `os.environ` for this test (for in-process code)."""
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    for key, value in slurm.extra_env.items():
        monkeypatch.setenv(key, value)
    return slurm
