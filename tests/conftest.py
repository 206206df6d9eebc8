"""Shared fixtures: real git repositories in tmp_path, isolated from the user's git config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from gittrack.cli import cli

pytest_plugins = ["slurm_cluster"]

# A suite started in the background (`make test &`, nohup) inherits SIGINT ignored, and so would
# every process a test starts: the Ctrl-C tests would then time out. A handler of our own is
# reset to the default in the processes we start, which then see Ctrl-C as a terminal gives it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SIM = """\
import click
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
@click.option("--steps", type=int, default=10)
@click.option("--label", default=None)
def main(temp, steps, label):
    print(f"simulating at {temp}")
    if temp < 0:
        raise ValueError("negative temperature")
    return {"energy": temp * 2.0, "steps_done": steps}


if __name__ == "__main__":
    main()
"""


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own HOME and a git configuration with no system or user settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Ada Tester")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "ada@example.org")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Ada Tester")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "ada@example.org")
    monkeypatch.delenv("GITTRACK_REPO", raising=False)
    # no detached `git gc --auto` racing the tests' looks into .git (test_housekeeping tests it)
    monkeypatch.setenv("GITTRACK_GC_LOOSE", "0")
    (home / ".gitconfig").write_text("[init]\n\tdefaultBranch = main\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def fsck_clean(repo: Path) -> None:
    """`git fsck` finds nothing wrong (dangling objects aside) in `repo`."""
    proc = subprocess.run(
        ["git", "fsck", "--no-dangling"], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stdout, proc.stdout + proc.stderr
    assert "missing" not in proc.stderr and "error" not in proc.stderr, proc.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit holding sim.py."""
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "sim.py").write_text(SIM)
    git(path, "add", "sim.py")
    git(path, "commit", "-qm", "add simulation")
    return path


@pytest.fixture
def tracked_repo(repo: Path) -> Path:
    """`repo` after `gittrack init`."""
    result = CliRunner().invoke(cli, ["-C", str(repo), "init"])
    assert result.exit_code == 0, result.output
    return repo


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch):
    """Invoke the gittrack CLI in-process in a repository; returns click's Result."""

    def invoke(repo: Path, *args: str, input: str | None = None):
        monkeypatch.chdir(repo)
        return CliRunner().invoke(
            cli, ["-C", str(repo), *args], input=input, catch_exceptions=False
        )

    return invoke


def write_script(repo: Path, name: str, body: str, commit: bool = True) -> Path:
    path = repo / name
    path.write_text(textwrap.dedent(body))
    if commit:
        git(repo, "add", name)
        git(repo, "commit", "-qm", f"add {name}")
    return path


def run_python(
    repo: Path, *args: str, check: bool = True, **kwargs
) -> subprocess.CompletedProcess[str]:
    """Run a Python process (a script or `-m gittrack.cli`) in `repo` as a user would."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **kwargs.pop("env", {})},
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def branch_log(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s", "gittrack/runs").splitlines()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs filesystems (a real ENOSPC); unmounted at the end."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True
        )
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def assert_fsck_clean_and_listed(repo: Path, runs: int) -> None:
    """`git fsck --strict` is clean and `gittrack ls` reads all `runs` runs (packs included)."""
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo, capture_output=True)
    assert fsck.returncode == 0, fsck.stderr
    rows = subprocess.run(
        [sys.executable, "-m", "gittrack", "ls", "--format", "csv", "--columns", "id"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert len(rows.stdout.splitlines()) == runs + 1  # the header and a line a run


def wait_for_housekeeping(repo: Path, timeout: float = 60.0) -> None:
    """Wait until no roll-up gittrack started in the background runs (it holds its lock until
    it ends): its `git gc` holds `gc.pid.lock` and rewrites packs meanwhile."""
    import fcntl
    import time

    lock = repo / ".git" / "gittrack" / "housekeeping.lock"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            return  # none was ever started
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError:
            time.sleep(0.1)
        finally:
            os.close(fd)
    raise AssertionError(f"housekeeping still running after {timeout} s")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """An empty bare repository, the collaborators' shared remote."""
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    return path


@pytest.fixture
def alice(tracked_repo: Path, remote: Path) -> Path:
    """The tracked repository, its main branch pushed to `remote` (origin)."""
    git(tracked_repo, "remote", "add", "origin", str(remote))
    git(tracked_repo, "push", "-q", "origin", "main")
    return tracked_repo
