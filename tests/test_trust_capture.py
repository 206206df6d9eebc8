"""Records you can trust: nothing a run prints is lost, statuses are true (issue 11, 4, 6, 7).

- The stdout and stderr of child processes are stored, in sweeps and on a terminal.
- A died run has no `exit_code` (or the signal: -9 / 137), `finished` is its last heartbeat.
- A run recorded `failed` makes the process exit non-zero.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_python, write_script
from trust_support import gittrack, ls, show

from gittrack.model.record import run_folder

# -- helpers ------------------------------------------------------------------------------------


def branch_file(repo: Path, run_id: str, name: str) -> str:
    """A file of the run's folder on the runs branch (e.g. its stdout.log)."""
    return git(repo, "show", f"gittrack/runs:{run_folder(run_id)}/{name}")


# -- 4. nothing a run prints is lost ---------------------------------------------------------------

CHILD = """\
import subprocess
import sys

import click
import gittrack

CHILD = (
    "import sys; print('child-out tty=' + str(sys.stdout.isatty())); "
    "print('child-err', file=sys.stderr)"
)


@gittrack.command()
@click.option("--i", type=int, default=0)
def main(i):
    print(f"parent-out {i}", flush=True)
    subprocess.run([sys.executable, "-c", CHILD], check=True)
    print(f"parent-done {i}", flush=True)
    return {"i": i}


if __name__ == "__main__":
    main()
"""


def assert_child_output_kept(repo: Path, rows: list[dict]) -> None:
    """Each run's logs hold its own lines and those of the child process it started."""
    for row in rows:
        i = row["params"]["i"]
        stdout = branch_file(repo, row["id"], "stdout.log").splitlines()
        assert sorted(stdout) == ["child-out tty=False", f"parent-done {i}", f"parent-out {i}"]
        assert "child-err" in branch_file(repo, row["id"], "stderr.log").splitlines()


@pytest.mark.parametrize(
    "how",
    [
        ["-j", "1"],
        ["-j", "2"],
        pytest.param(["--executor", "dask", "-j", "2"], marks=pytest.mark.slow, id="dask"),
    ],
    ids=lambda how: " ".join(how),
)
def test_a_sweep_keeps_the_output_of_child_processes(
    tracked_repo: Path, run_cli, how: list[str]
) -> None:
    write_script(tracked_repo, "engine.py", CHILD)
    gittrack(tracked_repo, "sweep", "engine.py", "--i", "1,2", *how)
    rows = ls(run_cli, tracked_repo)
    assert sorted(r["params"]["i"] for r in rows) == [1, 2]
    assert_child_output_kept(tracked_repo, rows)


DRIVER = """\
import gittrack

experiment = gittrack.Experiment("scan")
experiment.run("engine.py", i=1)
experiment.sweep("engine.py", i=[2, 3], jobs=2)
"""


def test_an_experiment_keeps_the_output_of_child_processes(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "engine.py", CHILD)
    write_script(tracked_repo, "driver.py", DRIVER)
    run_python(tracked_repo, "driver.py")
    rows = ls(run_cli, tracked_repo)
    assert sorted(r["params"]["i"] for r in rows) == [1, 2, 3]
    assert_child_output_kept(tracked_repo, rows)


def start_on_a_terminal(
    repo: Path, *args: str, **popen: Any
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python ARGS` with a new pseudo-terminal as its stdin, stdout and stderr; returns
    the process and the terminal's controller side."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=repo,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        **popen,
    )
    os.close(terminal)
    return proc, controller


def run_on_a_terminal(repo: Path, *args: str) -> tuple[int, str]:
    """Run `python ARGS` with a pseudo-terminal as its stdin, stdout and stderr."""
    proc, controller = start_on_a_terminal(repo, *args, close_fds=True, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(controller, 1 << 16)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(controller)
    return proc.wait(timeout=30), seen.decode(errors="replace").replace("\r\n", "\n")


@pytest.mark.parametrize(
    "command", [["engine.py"], ["-m", "gittrack", "run", "engine.py"]], ids=["python", "run"]
)
def test_child_output_is_kept_on_a_terminal(
    tracked_repo: Path, run_cli, command: list[str]
) -> None:
    write_script(tracked_repo, "engine.py", CHILD)
    code, seen = run_on_a_terminal(tracked_repo, *command, "--i", "7")
    assert code == 0, seen
    # the terminal still shows everything, and the child still sees a terminal (colours, bars)
    assert "child-out tty=True\n" in seen and "child-err" in seen, seen
    assert seen.index("parent-out 7") < seen.index("child-out")
    run_id = show(run_cli, tracked_repo)["id"]
    stdout = branch_file(tracked_repo, run_id, "stdout.log")
    assert "child-out tty=True" in stdout, f"stdout.log:\n{stdout}"
    assert "parent-out 7" in stdout and "parent-done 7" in stdout
    assert "child-err" in branch_file(tracked_repo, run_id, "stderr.log") + stdout


TAIL = """\
import ctypes
import subprocess
import sys

import click
import gittrack


@gittrack.command()
def main():
    subprocess.run([sys.executable, "-c", "print('c' * 300000); print('child-end')"], check=True)
    ctypes.CDLL(None).printf(b"from-c-stdio\\n")  # buffered by libc, not by Python
    sys.stdout.write("p" * 300000 + "\\nparent-end\\n")


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("where", ["pipe", "terminal"])
def test_the_tail_of_a_large_output_is_kept(tracked_repo: Path, run_cli, where: str) -> None:
    write_script(tracked_repo, "tail.py", TAIL)
    if where == "pipe":
        seen = run_python(tracked_repo, "tail.py").stdout
    else:
        code, seen = run_on_a_terminal(tracked_repo, "tail.py")
        assert code == 0, seen[-2000:]
    stdout = branch_file(tracked_repo, show(run_cli, tracked_repo)["id"], "stdout.log")
    for text in (seen, stdout):
        lines = text.splitlines()
        assert "child-end" in lines and "parent-end" in lines and "from-c-stdio" in lines
        assert text.count("c") >= 300000 and text.count("p") >= 300000


SLEEPY_CHILD = """\
import subprocess
import sys

import click
import gittrack


@gittrack.command()
def main():
    code = "import time; print('child up', flush=True); time.sleep(60)"
    subprocess.run([sys.executable, "-c", code])


if __name__ == "__main__":
    main()
"""


def test_ctrl_c_on_a_terminal_interrupts_the_run_and_exits_130(tracked_repo: Path, run_cli) -> None:
    """The pseudo-terminal in between does not change what Ctrl-C does."""
    write_script(tracked_repo, "sleepy.py", SLEEPY_CHILD)

    def controlling_terminal() -> None:
        import fcntl
        import termios

        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc, controller = start_on_a_terminal(
        tracked_repo, "sleepy.py", preexec_fn=controlling_terminal
    )
    seen = b""
    deadline = time.monotonic() + 30
    while b"child up" not in seen and time.monotonic() < deadline:
        if select.select([controller], [], [], 1)[0]:
            seen += os.read(controller, 1 << 16)
    os.write(controller, b"\x03")  # Ctrl-C typed on the terminal
    code = proc.wait(timeout=30)
    os.close(controller)
    data = show(run_cli, tracked_repo)
    assert data["status"] == "interrupted" and data["exit_code"] == 130 == code
    assert "child up" in branch_file(tracked_repo, data["id"], "stdout.log")


# -- 6. a died run's status is true -------------------------------------------------------------

SLEEPER = """\
import time

import click
import gittrack


@gittrack.command()
@click.option("--seconds", type=float, default=60.0)
def main(seconds):
    print("started", flush=True)
    time.sleep(seconds)


if __name__ == "__main__":
    main()
"""


def kill_mid_run(repo: Path, after_s: float) -> float:
    """Start sleeper.py, SIGKILL it `after_s` seconds after it printed; returns the kill time."""
    proc = subprocess.Popen(
        [sys.executable, "sleeper.py"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(after_s)
    killed = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    return killed


def parse_time(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def check_died(run_cli, repo: Path, killed: float) -> dict:
    time.sleep(2)  # the record must say when the run stopped, not when ls noticed
    (row,) = ls(run_cli, repo)
    assert row["status"] == "died"
    data = show(run_cli, repo, row["id"])
    assert data["status"] == "died"
    assert data.get("exit_code") in (None, -9, 137), data.get("exit_code")
    assert parse_time(data["finished"]) <= killed + 0.5, (data["finished"], killed)
    assert parse_time(data["finished"]) >= parse_time(data["started"])
    assert data["duration_s"] > 0
    assert data["duration_s"] == pytest.approx(
        parse_time(data["finished"]) - parse_time(data["started"]), abs=0.01
    )
    return data


def test_a_killed_run_has_no_exit_code_and_ends_at_its_heartbeat(
    tracked_repo: Path, run_cli
) -> None:
    write_script(tracked_repo, "sleeper.py", SLEEPER)
    killed = kill_mid_run(tracked_repo, 1.0)
    check_died(run_cli, tracked_repo, killed)


LOGGER = """\
import time

import click
import gittrack


@gittrack.command()
def main():
    print("started", flush=True)
    for step in range(3):
        time.sleep(0.5)
        gittrack.log(step=step, energy=-step)  # metrics.csv in the output folder, written now
    time.sleep(60)


if __name__ == "__main__":
    main()
"""


def test_a_killed_run_lasted_at_least_until_its_last_logged_value(
    tracked_repo: Path, run_cli
) -> None:
    """Between heartbeats (10 s apart), what the run wrote last says when it was alive."""
    write_script(tracked_repo, "sleeper.py", LOGGER)
    killed = kill_mid_run(tracked_repo, 2.5)
    data = check_died(run_cli, tracked_repo, killed)
    assert data["duration_s"] >= 1.4, data["duration_s"]


@pytest.mark.slow
def test_a_run_killed_after_a_heartbeat_lasted_until_it(tracked_repo: Path, run_cli) -> None:
    """The heartbeat beats every 10 s: a run killed after 11 s lasted at least 10 s."""
    write_script(tracked_repo, "sleeper.py", SLEEPER)
    killed = kill_mid_run(tracked_repo, 11.0)
    data = check_died(run_cli, tracked_repo, killed)
    assert data["duration_s"] >= 9.5


# -- 7. the exit status agrees with the record -----------------------------------------------------

BIG_OUTPUT = """\
import click
import gittrack
import numpy as np


@gittrack.command()
def main():
    print("computed")
    return {"field": np.ones(1 << 20)}  # 8 MiB


if __name__ == "__main__":
    main()
"""


def small_disk() -> None:
    """In the child: no file may grow past 1 MiB; writing more fails (EFBIG) as on a full disk."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def on_a_small_disk(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in `repo`, where no file may grow past 1 MiB."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        preexec_fn=small_disk,
        timeout=120,
    )


def test_a_run_failing_to_store_its_output_exits_non_zero(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "bigout.py", BIG_OUTPUT)
    proc = on_a_small_disk(tracked_repo, "bigout.py")
    data = show(run_cli, tracked_repo)
    assert data["command"] == "bigout.py" and data["status"] == "failed", data["status"]
    assert proc.returncode != 0, f"exit 0 for a failed run:\n{proc.stderr}"
    assert data["exit_code"] == proc.returncode


def test_gittrack_run_of_a_run_failing_to_store_its_output_exits_non_zero(
    tracked_repo: Path, run_cli
) -> None:
    write_script(tracked_repo, "bigout.py", BIG_OUTPUT)
    proc = on_a_small_disk(tracked_repo, "-m", "gittrack", "run", "bigout.py")
    data = show(run_cli, tracked_repo)
    assert data["status"] == "failed"
    assert proc.returncode == data["exit_code"] == 1, proc.stderr


LOUD = """\
import subprocess
import sys

import click
import gittrack


@gittrack.command()
def main():
    code = "for i in range(20000): print(f'line {i} ' + 'z' * 60)"
    subprocess.run([sys.executable, "-c", code], check=True)
    print("parent-end")


if __name__ == "__main__":
    main()
"""


def test_a_run_whose_logs_do_not_fit_on_the_disk_still_ends(tracked_repo: Path, run_cli) -> None:
    """1.4 MB of output, files limited to 256 KiB: all of it shown, what fits kept, no hang."""
    import resource

    def tiny_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 18, 1 << 18))

    write_script(tracked_repo, "loud.py", LOUD)
    assert ls(run_cli, tracked_repo) == []  # the lookup table exists before the disk is full
    proc = subprocess.run(
        [sys.executable, "loud.py"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
        preexec_fn=tiny_disk,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["line 19999 " + "z" * 60, "parent-end"]
    data = show(run_cli, tracked_repo)
    assert data["status"] == "completed" and data["logs"]["stdout_truncated"] > 1_000_000
    assert branch_file(tracked_repo, data["id"], "stdout.log").startswith("line 0 ")


def test_a_sweep_records_the_signal_that_killed_a_worker(tracked_repo: Path, run_cli) -> None:
    """The sweep saw its worker die of SIGKILL: the died run says so (-9)."""
    write_script(tracked_repo, "sleeper.py", SLEEPER)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "sweep", "sleeper.py", "--seconds", "60", "-j", "1"],
        cwd=tracked_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = tracked_repo / ".git" / "gittrack" / "running"
    deadline = time.monotonic() + 60
    while not list(running.glob("*/stdout.log")) or not any(
        p.read_text() for p in running.glob("*/stdout.log")
    ):
        assert time.monotonic() < deadline and sweep.poll() is None, "the run never started"
        time.sleep(0.1)
    (beat,) = running.glob("*/heartbeat")
    killed = time.time()
    os.kill(json.loads(beat.read_text())["pid"], signal.SIGKILL)
    out, _ = sweep.communicate(timeout=60)
    assert sweep.returncode == 1, out
    data = check_died(run_cli, tracked_repo, killed)
    assert data["exit_code"] == -9
    assert not list(running.iterdir()), "the sweep commits the died run"
