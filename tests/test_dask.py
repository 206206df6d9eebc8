"""Sweeps on a real Dask scheduler and workers started as separate processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git, write_script

from gittrack import store as gitstore
from gittrack.errors import UsageError
from gittrack.execute.dask_executor import jobqueue_cluster, run_tasks
from gittrack.execute.executors import Task
from gittrack.model.record import RunRecord, run_folder

ROOT = Path(__file__).resolve().parents[1]

SLOW = """\
import os, time
from pathlib import Path
import click
import gittrack


@gittrack.command()
@click.option("--i", type=int)
@click.option("--marker-dir", default="")
@click.option("--sleep", type=float, default=0.0)
def main(i, marker_dir, sleep):
    if marker_dir:
        Path(marker_dir, f"{i}-{os.getpid()}").touch()
    time.sleep(sleep)
    print(f"task {i} done")
    return {"i2": i * i}
"""


class DaskProcesses:
    """`dask scheduler` and `dask worker` processes, as an operator would start them."""

    def __init__(self, tmp: Path, workers: int = 2) -> None:
        self.tmp = tmp
        self.file = tmp / "scheduler.json"
        home = tmp / "worker-home"
        home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TMPDIR": str(tmp),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "DASK_DISTRIBUTED__WORKER__DAEMON": "False",
        }
        bindir = Path(sys.executable).parent
        self.scheduler = subprocess.Popen(
            [
                str(bindir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.file),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self.file.exists():
            assert time.monotonic() < deadline, "dask scheduler did not start"
            time.sleep(0.1)
        self.workers = [
            subprocess.Popen(
                [
                    str(bindir / "dask"),
                    "worker",
                    "--scheduler-file",
                    str(self.file),
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"w{n}",
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for n in range(workers)
        ]
        from distributed import Client

        self.client = Client(scheduler_file=str(self.file), timeout="60s")
        self.client.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        self.client.close()
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.close()


def records(repo: Path) -> list[RunRecord]:
    store = gitstore.find_repo(repo)
    return [
        RunRecord.from_toml(gitstore.read_record_bytes(store, i), i)
        for i in gitstore.list_run_ids(store)
    ]


@pytest.mark.slow
def test_a_sweep_through_a_scheduler_without_shared_filesystem(
    tracked_repo: Path, dask_cluster
) -> None:
    store = gitstore.find_repo(tracked_repo)
    head = git(tracked_repo, "rev-parse", "HEAD")
    tasks = [Task("sim.py", ["--temp", str(t)], experiment="grid") for t in (1, 2, 3, -1)]
    outcomes = run_tasks(store, tasks, client=dask_cluster.client, progress=False)
    assert [o.status for o in outcomes] == ["completed", "completed", "completed", "failed"]
    found = {r.id: r for r in records(tracked_repo)}
    assert set(found) == {o.run_id for o in outcomes}
    by_temp = {r.params["temp"]: r for r in found.values()}
    assert by_temp[2.0].metrics == {"energy": 4.0, "steps_done": 10}
    assert by_temp[2.0].code.commit == head and by_temp[2.0].code.branch == "main"
    assert by_temp[2.0].experiment == "grid"
    assert (
        by_temp[-1.0].status == "failed"
        and "negative temperature" in by_temp[-1.0].error["traceback"]
    )
    log = git(
        tracked_repo,
        "show",
        f"gittrack/runs:{run_folder(by_temp[3.0].id)}/stdout.log",
    )
    assert log == "simulating at 3.0"
    assert git(tracked_repo, "for-each-ref", f"refs/gittrack/code/{head}") != ""
    assert not git(tracked_repo, "for-each-ref", "refs/gittrack/bundle/")
    assert git(tracked_repo, "status", "--porcelain") == ""


HELPED = """\
import click
import gittrack
import helpers  # untracked: code of the run, shipped to the workers


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    return {"energy": helpers.double(temp)}


if __name__ == "__main__":
    main()
"""


def test_workers_without_shared_filesystem_record_code_files_as_of_head(
    tracked_repo: Path, dask_cluster
) -> None:
    write_script(tracked_repo, "helped.py", HELPED)
    head = git(tracked_repo, "rev-parse", "HEAD")
    (tracked_repo / "helpers.py").write_text("def double(t):\n    return 2 * t\n")
    (tracked_repo / "data.bin").write_bytes(os.urandom(4096))  # untracked data: never shipped
    store = gitstore.find_repo(tracked_repo)
    [outcome] = run_tasks(store, [Task("helped.py", ["--temp", "2"])], client=dask_cluster.client)
    assert outcome.status == "completed", outcome.error
    [record] = records(tracked_repo)
    files = record.code.files
    assert set(files) == {"helped.py", "helpers.py"}
    assert files["helpers.py"].dirty and not files["helped.py"].dirty
    assert files["helpers.py"].blob == git(tracked_repo, "hash-object", "helpers.py")
    assert record.code.dirty and record.code.head == head
    shipped = git(tracked_repo, "ls-tree", "-r", "--name-only", record.code.commit).split()
    assert "helpers.py" in shipped and "data.bin" not in shipped


@pytest.mark.slow
def test_retries_and_shared_filesystem(tracked_repo: Path, dask_cluster) -> None:
    store = gitstore.find_repo(tracked_repo)
    outcomes = run_tasks(
        store,
        [Task("sim.py", ["--temp", "-5"]), Task("sim.py", ["--temp", "5"])],
        client=dask_cluster.client,
        shared_fs=True,
        retries=2,
        progress=False,
    )
    assert [(o.status, o.attempts, len(o.runs)) for o in outcomes] == [
        ("failed", 3, 3),
        ("completed", 1, 1),
    ]
    statuses = sorted(r.status for r in records(tracked_repo))
    assert statuses == ["completed", "failed", "failed", "failed"]
    assert len(git(tracked_repo, "log", "--format=%H", "gittrack/runs").splitlines()) == 5


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_leaves_a_died_run(tracked_repo: Path, tmp_path: Path) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster = DaskProcesses(tmp_path)
    try:
        store = gitstore.find_repo(tracked_repo)
        tasks = [
            Task("slow.py", ["--i", str(i), "--marker-dir", str(markers), "--sleep", "3"])
            for i in range(4)
        ]
        import threading

        result: dict[str, object] = {}
        sweep = threading.Thread(
            target=lambda: result.update(
                out=run_tasks(store, tasks, client=cluster.client, progress=False)
            )
        )
        sweep.start()
        deadline = time.monotonic() + 60
        while len(list(markers.iterdir())) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # the worker has announced its run
        cluster.workers[0].send_signal(signal.SIGKILL)
        sweep.join(timeout=120)
        assert not sweep.is_alive(), "the sweep hangs after a worker died"
    finally:
        cluster.close()
    outcomes = result["out"]
    assert [o.status for o in outcomes] == ["completed"] * 4  # the lost task ran again elsewhere
    found = records(tracked_repo)
    assert sorted(r.status for r in found).count("completed") == 4
    died = [r for r in found if r.status == "died"]
    assert len(died) == 1
    assert died[0].params["sleep"] == 3.0 and died[0].error["type"] == "WorkerLost"
    assert {r.id for r in found} == {run for o in outcomes for run in o.runs}


def test_slurm_job_script_from_flags_and_gittrack_yaml(tmp_path: Path) -> None:
    (tmp_path / "gittrack.yaml").write_text(
        "cluster:\n  slurm:\n    queue: long\n    account: physics\n    job_extra_directives: ['--gres=gpu:1']\n"
    )
    cluster = jobqueue_cluster(
        "slurm",
        cores=4,
        memory="8GB",
        walltime="01:00:00",
        repo_root=tmp_path,
        scheduler_options={"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for expected in (
        "#SBATCH -p long",
        "#SBATCH -A physics",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G",
        "#SBATCH -t 01:00:00",
        "#SBATCH --gres=gpu:1",
    ):
        assert expected in lines
    assert "tcp://127.0.0.1:" in lines[-1]


def test_cluster_configuration_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(
        UsageError, match=r"Unknown cluster kind 'lsf'; use one of slurm, pbs, sge\."
    ):
        jobqueue_cluster("lsf")
    (tmp_path / "gittrack.yaml").write_text("cluster:\n  slurm: [1, 2]\n")
    with pytest.raises(UsageError, match=r"'cluster.slurm' must be a mapping"):
        jobqueue_cluster("slurm", repo_root=tmp_path)
    with pytest.raises(UsageError) as missing:
        jobqueue_cluster("slurm", cores=1)
    assert str(missing.value) == (
        "Cannot configure the slurm cluster: You must specify how much cores and memory per job "
        "you want to use (give --cores and --memory, or set them under cluster.slurm in "
        "gittrack.yaml)."
    )


DRIVER = """
import sys
from distributed import Client
from gittrack import store as gitstore
from gittrack.execute.dask_executor import run_tasks
from gittrack.execute.executors import Task

client = Client(scheduler_file=sys.argv[1])
tasks = [
    Task("slow.py", ["--i", str(i), "--marker-dir", sys.argv[2], "--sleep", "60"])
    for i in range(6)
]
try:
    run_tasks(gitstore.find_repo("."), tasks, client=client, progress=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_cancels_pending_tasks_and_records_running_ones(
    tracked_repo: Path, tmp_path: Path, dask_cluster
) -> None:
    write_script(tracked_repo, "slow.py", SLOW)
    markers = tmp_path / "markers"
    markers.mkdir()
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(dask_cluster.file), str(markers)],
        cwd=tracked_repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(list(markers.iterdir())) < 2:
        assert time.monotonic() < deadline and driver.poll() is None, (
            driver.stderr.read() if driver.poll() is not None else ""
        )
        time.sleep(0.05)
    time.sleep(0.5)
    t0 = time.monotonic()
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=60)
    assert time.monotonic() - t0 < 30  # the 60 s runs were stopped, not waited for
    assert driver.returncode == 130, err
    assert out == "interrupted\n"
    found = records(tracked_repo)
    assert sorted(r.status for r in found) == ["interrupted", "interrupted"]
    assert len(list(markers.iterdir())) == 2  # the queued tasks never started
    assert {r.params["i"] for r in found} == {int(m.name.split("-")[0]) for m in markers.iterdir()}


@pytest.mark.slow
def test_a_local_cluster_on_a_shared_filesystem(tracked_repo: Path) -> None:
    store = gitstore.find_repo(tracked_repo)
    outcomes = run_tasks(
        store, [Task("sim.py", ["--temp", str(t)]) for t in (7, 8)], workers=2, progress=False
    )
    assert [o.status for o in outcomes] == ["completed", "completed"]
    assert sorted(r.params["temp"] for r in records(tracked_repo)) == [7.0, 8.0]


@pytest.mark.slow
def test_gittrack_sweep_with_executor_dask_and_a_scheduler(
    run_cli, tracked_repo: Path, dask_cluster
) -> None:
    address = dask_cluster.client.scheduler.address
    result = run_cli(
        tracked_repo,
        "sweep",
        "sim.py",
        "--temp",
        "1,2,3",
        "--executor",
        "dask",
        "--scheduler",
        address,
        "--name",
        "on-dask",
        "--json",
    )
    assert result.exit_code == 0, result.output
    found = records(tracked_repo)
    assert sorted(r.params["temp"] for r in found) == [1.0, 2.0, 3.0]
    assert {r.status for r in found} == {"completed"} and {r.experiment for r in found} == {
        "on-dask"
    }
    assert '"energy": 4.0' in result.output


@pytest.mark.slow
def test_gittrack_sweep_on_a_local_dask_cluster_reuses_identical_runs(
    run_cli, tracked_repo: Path
) -> None:
    first = run_cli(
        tracked_repo, "sweep", "sim.py", "--temp", "4,5", "--executor", "dask", "-j", "2"
    )
    assert first.exit_code == 0, first.output
    again = run_cli(
        tracked_repo, "sweep", "sim.py", "--temp", "4,5", "--executor", "dask", "-j", "2", "--json"
    )
    assert again.exit_code == 0, again.output
    assert again.output.count('"reused": true') == 2
    assert len(records(tracked_repo)) == 2


def test_cluster_flags_need_a_dask_executor(run_cli, tracked_repo: Path) -> None:
    result = run_cli(
        tracked_repo, "sweep", "sim.py", "--temp", "1,2", "--scheduler", "tcp://127.0.0.1:1"
    )
    assert result.exit_code == 2
    assert (
        result.output
        == "Error: --scheduler is only for --executor dask, slurm, pbs or sge; add one of those or drop it.\n"
    )


ANALYSE = """\
import click
import gittrack


@gittrack.command()
@click.option("--sim", type=gittrack.RunRef())
def main(sim):
    return {"double": sim.metrics["energy"] * 2}
"""


@pytest.mark.slow
def test_an_analysis_of_an_earlier_run_on_a_worker_without_shared_filesystem(
    run_cli, tracked_repo: Path, dask_cluster
) -> None:
    assert run_cli(tracked_repo, "run", "--name", "base", "sim.py", "--temp", "3").exit_code == 0
    write_script(tracked_repo, "analyse.py", ANALYSE)
    store = gitstore.find_repo(tracked_repo)
    (outcome,) = run_tasks(
        store,
        [Task("analyse.py", ["--sim", "base"])],
        client=dask_cluster.client,
        progress=False,
    )
    assert outcome.status == "completed", outcome.error
    found = {r.id: r for r in records(tracked_repo)}
    analysis = found[outcome.run_id]
    assert analysis.metrics == {"double": 12.0}
    (edge,) = analysis.inputs
    base = next(r for r in found.values() if r.name == "base")
    assert edge.run == base.id
    assert edge.commit == git(
        tracked_repo,
        "log",
        "-1",
        "--format=%H",
        "gittrack/runs",
        "--",
        f"{run_folder(base.id)}",
    )


@pytest.fixture
def runner(tracked_repo: Path, dask_cluster):
    """A DaskRunner on the real cluster, as a sweep on it makes it, without submitting tasks."""
    from gittrack.execute.dask_executor import DaskRunner
    from gittrack.model.record import Code

    made = DaskRunner(gitstore.find_repo(tracked_repo), dask_cluster.client, progress=False)
    made.code = Code()
    return made


def collect(runner, answer: dict, i: int):
    """The Result of attempt `bad-i` whose worker answered `answer` (through a real future)."""
    from gittrack.execute.executors import Result

    future = runner.client.submit(lambda a: a, answer, pure=False)
    future.result(timeout=60)
    outcome = Result(Task(script="sim.py", args=["--temp", str(i)]), attempts=1)
    assert runner._collect(future, outcome, f"bad-{i}") == outcome.status
    return outcome


def test_a_run_folder_a_worker_sends_back_unusable_costs_only_its_run(
    tracked_repo: Path, runner
) -> None:
    """A worker's answer is input from elsewhere: a path for a file name, a missing or foreign
    run.toml, a run id that is none, or no folder at all is that attempt recorded as died,
    with the reason; nothing of it is written to the branch."""
    good = RunRecord(id="a" * 32, command="sim.py", status="completed")
    toml = good.to_toml().encode()
    other = RunRecord(id="b" * 32, command="sim.py").to_toml().encode()
    answers = {
        "a path for a file name": ("a" * 32, {"run.toml": toml, "../../../evil": b"x"}),
        "no run.toml": ("a" * 32, {"stdout.log": b"hello\n"}),
        "another run's run.toml": ("a" * 32, {"run.toml": other}),
        "text for bytes": ("a" * 32, {"run.toml": toml.decode()}),
        "a run id that is none": ("../../x", {"run.toml": toml}),
        "no folder at all": ("a" * 32, ["run.toml"]),
    }
    before = git(tracked_repo, "rev-parse", "gittrack/runs")
    for i, (what, (run_id, files)) in enumerate(answers.items()):
        outcome = collect(runner, {"run": run_id, "status": "completed", "files": files}, i)
        assert outcome.status == "died" and "unusable run folder" in outcome.error, what
        assert len(outcome.runs) == 1, what  # the attempt, recorded as died with its reason
    paths = git(tracked_repo, "ls-tree", "-r", "--name-only", "gittrack/runs").splitlines()
    assert not [p for p in paths if "evil" in p or p.startswith("runs/aa/aa/")]
    died = [r for r in records(tracked_repo) if r.status == "died"]
    assert len(died) == len(answers)
    assert all("unusable run folder" in r.error["message"] for r in died)
    assert len(git(tracked_repo, "rev-list", f"{before}..gittrack/runs").split()) == len(answers)


def test_a_worker_s_announcement_that_cannot_be_read_costs_only_its_attempt(
    tracked_repo: Path, runner
) -> None:
    """The runs a worker announces as started are input from elsewhere too: one that is not a
    message, names no run id or carries no readable record is that attempt recorded as died
    when it is lost, the sweep going on."""
    toml = RunRecord(id="c" * 32, command="sim.py").to_toml()
    announcements = {
        "not a message": ["bad-0", "c" * 32],
        "a run id that is none": {"key": "bad-1", "run": "../../x", "record": toml},
        "no readable record": {"key": "bad-2", "run": "d" * 32, "record": "schema = ["},
        "a number for a record": {"key": "bad-3", "run": "e" * 32, "record": 7},
    }
    for i, (what, message) in enumerate(announcements.items()):
        runner._on_event((0.0, message))
        outcome = collect(runner, {"run": "", "status": "died"}, i)
        assert outcome.status == "died", what
        assert len(outcome.runs) == 1, what
    died = [r for r in records(tracked_repo) if r.status == "died"]
    assert len(died) == len(announcements)
    assert not {"c" * 32, "d" * 32, "e" * 32} & {r.id for r in died}
