"""Hostile conditions around the store: `git gc` during runs, full disks, odd queries and URLs.

Also impossible sweeps, missing output folders, `ui --port 0`, pull-conflict hints and
group-shared repositories. Only the public API (`gittrack`, `gittrack.cli`, `gittrack.ui`)
is imported; the runs branch is read and written with plain git plumbing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import resource
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner
from conftest import git, run_python, write_script

from gittrack.cli import cli
from gittrack.model.record import run_folder

RUNS = "refs/heads/gittrack/runs"

ARRAY_SIM = """
import click, numpy as np, gittrack

@gittrack.command()
@click.option("--seed", type=int, default=1)
def main(seed):
    return {"arr": np.arange(1000) * seed, "energy": float(seed)}

if __name__ == "__main__":
    main()
"""


# -- helpers: the runs branch by plain git plumbing -------------------------------------------


def folder(run_id: str) -> str:
    return f"{run_folder(run_id)}"


def run_files(repo: Path, run_id: str) -> dict[str, bytes]:
    """Every file of a run's folder on the runs branch, by name."""
    listing = git(repo, "ls-tree", "-r", "--name-only", f"gittrack/runs:{folder(run_id)}")
    return {
        name: subprocess.run(
            ["git", "show", f"gittrack/runs:{folder(run_id)}/{name}"],
            cwd=repo,
            check=True,
            capture_output=True,
        ).stdout
        for name in listing.splitlines()
    }


def read_record(repo: Path, run_id: str) -> dict[str, Any]:
    return tomllib.loads(run_files(repo, run_id)["run.toml"].decode())


def commit_files(repo: Path, files: dict[str, bytes], message: str) -> str:
    """Commit `files` (path on the branch -> content) on top of gittrack/runs; the new commit."""
    index = repo / ".git" / f"craft-{secrets.token_hex(4)}.index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}

    def plumb(*args: str, data: bytes | None = None) -> str:
        return (
            subprocess.run(
                ["git", *args], cwd=repo, env=env, input=data, check=True, capture_output=True
            )
            .stdout.decode()
            .strip()
        )

    old = plumb("rev-parse", RUNS)
    plumb("read-tree", old)
    for path, content in files.items():
        blob = plumb("hash-object", "-w", "--stdin", data=content)
        plumb("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = plumb("write-tree")
    new = plumb("commit-tree", tree, "-p", old, "-m", message)
    plumb("update-ref", RUNS, new, old)
    index.unlink()
    return new


def invoke(repo: Path, *args: str) -> Any:
    """The CLI in-process, exceptions caught as a user would see them (stdout and stderr mixed)."""
    return CliRunner().invoke(cli, ["-C", str(repo), *args])


def ls_ids(repo: Path) -> list[str]:
    result = invoke(repo, "ls", "--json")
    assert result.exit_code == 0, result.output
    return [row["id"] for row in json.loads(result.stdout)]


def record_array_runs(repo: Path, *seeds: int) -> list[str]:
    write_script(repo, "arrays.py", ARRAY_SIM)
    for seed in seeds:
        run_python(repo, "arrays.py", "--seed", str(seed))
    return ls_ids(repo)[::-1]


def assert_one_sentence(output: str) -> None:
    """What the user sees for a fault: one `Error: ...` line, no traceback, nothing unexpected."""
    assert "Traceback" not in output, output
    assert "unexpected" not in output.lower(), output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output


def ui_client(repo: Path) -> Any:
    from starlette.testclient import TestClient

    from gittrack.ui import create_app

    return TestClient(
        create_app(repo, port=8765),
        base_url="http://127.0.0.1:8765",
        raise_server_exceptions=False,
    )


# -- 2. `git gc --prune=now` while runs record; a branch pointing at a missing commit ---------


def fsck_clean(repo: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--full"], cwd=repo, capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert not re.search(r"^(missing|broken|error|fatal|bad)", report, re.M | re.I), report


@pytest.mark.slow
def test_gc_prune_now_while_runs_record_loses_nothing(tracked_repo: Path) -> None:
    script = write_script(tracked_repo, "arrays.py", ARRAY_SIM)
    stop = threading.Event()

    def gc_loop() -> None:
        while not stop.is_set():
            subprocess.run(
                ["git", "gc", "--prune=now", "--quiet"], cwd=tracked_repo, capture_output=True
            )

    loop = threading.Thread(target=gc_loop)
    loop.start()
    failures = []
    try:
        for pair in range(10):
            # uncommitted edits: every pair of runs snapshots its own code commit
            script.write_text(ARRAY_SIM + f"\n# edit {pair}\n")
            procs = [
                subprocess.Popen(
                    [sys.executable, "arrays.py", "--seed", str(2 * pair + k)],
                    cwd=tracked_repo,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for k in range(2)
            ]
            for proc in procs:
                _, err = proc.communicate(timeout=300)
                if proc.returncode != 0:
                    failures.append(err.strip().splitlines()[-1:])
    finally:
        stop.set()
        loop.join()
    assert failures == []
    listing = invoke(tracked_repo, "ls", "--json")
    assert listing.exit_code == 0, listing.output
    rows = json.loads(listing.stdout)
    assert sorted(r["params"]["seed"] for r in rows if r["status"] == "completed") == list(
        range(20)
    )
    fsck_clean(tracked_repo)
    for row in rows:
        commit = row["code"]["commit"]
        exists = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=tracked_repo)
        assert exists.returncode == 0, f"code commit {commit} of run {row['id'][:8]} is gone"


def test_doctor_repairs_a_branch_pointing_at_a_missing_commit(tracked_repo: Path) -> None:
    runs = record_array_runs(tracked_repo, 1, 2)
    # what a `git gc --prune=now` racing a run left behind: the branch names a missing commit
    ref_file = tracked_repo / ".git" / "refs" / "heads" / "gittrack" / "runs"
    ref_file.parent.mkdir(parents=True, exist_ok=True)
    ref_file.write_text("1234567890abcdef1234567890abcdef12345678\n")
    doctor = invoke(tracked_repo, "doctor")
    assert doctor.exit_code == 0, doctor.output
    assert "gittrack/runs" in doctor.output and "Traceback" not in doctor.output
    assert sorted(ls_ids(tracked_repo)) == sorted(runs)
    fsck_clean(tracked_repo)
    again = invoke(tracked_repo, "doctor")
    assert again.exit_code == 0, again.output
    run_python(tracked_repo, "arrays.py", "--seed", "3")
    assert len(ls_ids(tracked_repo)) == 3


def test_doctor_on_a_healthy_branch_does_not_wait_for_writers(tracked_repo: Path) -> None:
    """Checking every object takes seconds on a long history: it must not hold back runs."""
    record_array_runs(tracked_repo, 1, 2)
    lock = tracked_repo / ".git" / "gittrack" / "branch.flock"
    assert lock.exists()
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer holding the runs branch (it waits 60 s)
        doctor = subprocess.run(
            [sys.executable, "-m", "gittrack", "doctor"],
            cwd=tracked_repo,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.close(fd)
    assert doctor.returncode == 0, doctor.stderr
    assert doctor.stdout.strip() == "Nothing to repair.", doctor.stdout


# -- 3. push state verified against the remote ------------------------------------------------


def remote_dir(repo: Path) -> Path:
    shown = invoke(repo, "remote", "show")
    assert shown.exit_code == 0, shown.output
    return Path(shown.output.strip())


def remote_object(repo: Path, md5: str) -> Path:
    return remote_dir(repo) / "files" / "md5" / md5[:2] / md5[2:]


# -- 7. near-full disks -----------------------------------------------------------------------

BIGGER_SIM = ARRAY_SIM.replace("np.arange(1000)", "np.arange(100_000)")  # an 800 KB output


def assert_disk_fault(proc: subprocess.CompletedProcess[str], label: str = "") -> None:
    """A full disk: a non-zero exit and one sentence that says so, no traceback."""
    shown = f"{label}\n{proc.stderr}"
    assert proc.returncode != 0, shown
    assert "Traceback" not in proc.stderr, shown
    assert "unexpected" not in proc.stderr.lower(), shown
    said = proc.stderr.lower()
    assert "space" in said or "too large" in said, shown


def limited_run(repo: Path, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, *args], cwd=repo, capture_output=True, text=True, preexec_fn=apply
    )


@pytest.mark.parametrize("limit_kb", [1, 4, 64, 512])
def test_a_file_size_limit_is_one_sentence_and_a_failed_exit(
    tracked_repo: Path, limit_kb: int
) -> None:
    write_script(tracked_repo, "bigger.py", BIGGER_SIM)
    assert_disk_fault(limited_run(tracked_repo, limit_kb * 1024, "bigger.py", "--seed", "1"))
    fsck_clean(tracked_repo)
    run_python(tracked_repo, "bigger.py", "--seed", "2")  # without the limit all is well again
    listing = invoke(tracked_repo, "ls", "--json")
    assert listing.exit_code == 0, listing.output
    assert 2 in [r["params"]["seed"] for r in json.loads(listing.stdout)]


def fill(disk: Path, leave_kb: int) -> Path:
    """Fill `disk` up to `leave_kb` KB of free space; returns the filler file."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    for block in (1 << 16, 1 << 10):
        with contextlib.suppress(OSError):  # until the disk is full
            while True:
                os.write(fd, b"x" * block)
    os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave_kb * 1024))
    return filler


def test_a_repo_on_a_nearly_full_disk_fails_in_one_sentence(small_disk) -> None:
    repo = small_disk("8m") / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    write_script(repo, "bigger.py", BIGGER_SIM)
    assert invoke(repo, "init").exit_code == 0
    run_python(repo, "bigger.py", "--seed", "0")
    for seed, free_kb in enumerate([8, 16, 32, 48], start=1):
        filler = fill(repo.parent, free_kb)
        proc = run_python(repo, "bigger.py", "--seed", str(seed), check=False)
        assert_disk_fault(proc, f"{free_kb} KB free")
        fsck_clean(repo)
        listing = invoke(repo, "ls")
        assert "unexpected" not in listing.output.lower(), (free_kb, listing.output)
        assert "Traceback" not in listing.output
        filler.unlink()
    listing = invoke(repo, "ls", "--json")
    assert listing.exit_code == 0, listing.output
    assert 0 in [r["params"]["seed"] for r in json.loads(listing.stdout)]
    fsck_clean(repo)


def test_a_full_dvc_remote_is_one_sentence_and_leaves_no_temp_files(
    tracked_repo: Path, small_disk
) -> None:
    remote = small_disk("64k")
    assert invoke(tracked_repo, "remote", "set", str(remote)).exit_code == 0
    write_script(tracked_repo, "bigger.py", BIGGER_SIM)
    ran = run_python(tracked_repo, "bigger.py", "--seed", "1")  # recorded; the push is deferred
    assert "Traceback" not in ran.stderr, ran.stderr
    push = run_python(tracked_repo, "-m", "gittrack", "push", check=False)
    assert_disk_fault(push)
    assert len([line for line in push.stderr.splitlines() if line.startswith("Error:")]) == 1
    assert [p.name for p in remote.rglob("*") if p.is_file()] == []
    rows = json.loads(invoke(tracked_repo, "ls", "--json").stdout)
    assert any(r["params"]["seed"] == 1 for r in rows)  # the run itself was recorded


# -- 8. queries and URLs that overflow or nest too deep ---------------------------------------

BAD_QUERIES = {
    "an invalid date": "started = '2024-13-45'",
    "a 5000-digit number": "params.seed = " + "9" * 5000,
    "500 nested parentheses": "(" * 500 + "params.seed = 1" + ")" * 500,
    "2000 nots": "not " * 2000 + "params.seed = 1",
}
MANY_ORS = " or ".join(f"params.seed = {i}" for i in range(3000))
# as many as fit in a URL: httpx (like most servers) refuses URLs over 64 KiB
URL_ORS = " or ".join(f"params.seed = {i}" for i in range(2000))


def assert_query_error(result: Any, why: str) -> None:
    assert result.exit_code == 2, (why, result.output[:500])
    assert result.output.startswith("Error: Invalid query at position"), (why, result.output[:500])
    assert_one_sentence(result.output)


def test_hostile_queries_are_positioned_usage_errors(tracked_repo: Path) -> None:
    runs = record_array_runs(tracked_repo, 1, 2)
    for why, query in BAD_QUERIES.items():
        assert_query_error(invoke(tracked_repo, "ls", "--where", query), why)
    ors = invoke(tracked_repo, "ls", "--json", "--where", MANY_ORS)
    if ors.exit_code == 0:  # a long flat query may also simply work
        assert sorted(r["id"] for r in json.loads(ors.stdout)) == sorted(runs)
    else:
        assert_query_error(ors, "3000 ors")


def test_overflowing_numbers_in_urls_are_400_not_500(tracked_repo: Path) -> None:
    from urllib.parse import quote

    (run_id,) = record_array_runs(tracked_repo, 1)
    client = ui_client(tracked_repo)
    huge, digits = str(10**30), "9" * 5000
    for url in [
        f"/?offset={huge}",
        f"/api/runs?limit={huge}",
        f"/api/runs?offset={huge}",
        f"/runs/{run_id}/lineage?depth={digits}",
    ]:
        assert client.get(url).status_code == 400, url
    for url in [f"/?limit={huge}", f"/runs/{run_id}/lineage?depth={huge}"]:
        assert client.get(url).status_code in (200, 400), url  # held: clamped, or refused
    plain = client.get("/?where=" + quote("params.seed ="))  # an ordinary syntax error
    for why, query in [*BAD_QUERIES.items(), ("many ors", URL_ORS)]:
        api = client.get("/api/runs?where=" + quote(query))
        assert api.status_code in ((200, 400) if why == "many ors" else (400,)), why
        page = client.get("/?where=" + quote(query))
        assert page.status_code in (plain.status_code, 400), why
        if why != "many ors":
            assert "Invalid query at position" in page.text, why


# -- 9. other unexpected errors ---------------------------------------------------------------


def test_an_impossible_sweep_is_refused_before_anything_is_allocated(tracked_repo: Path) -> None:
    write_script(tracked_repo, "arrays.py", ARRAY_SIM)
    before = git(tracked_repo, "rev-parse", "gittrack/runs")

    def small_memory() -> None:  # the unfixed code would take all of the machine's memory
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gittrack", "sweep", "arrays.py", "--seed", "1:1000000000"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
        preexec_fn=small_memory,
        timeout=120,
    )
    assert time.monotonic() - start < 15
    assert proc.returncode == 2, proc.stderr
    assert "MemoryError" not in proc.stderr
    assert_one_sentence(proc.stderr)
    assert git(tracked_repo, "rev-parse", "gittrack/runs") == before


def test_writing_into_a_missing_folder_is_one_sentence(tracked_repo: Path) -> None:
    (run_id,) = record_array_runs(tracked_repo, 1)
    for args in (
        ["lineage", run_id[:8], "-o", "/nonexistent/dir/x.svg"],
        ["report", "-o", "/nonexistent/dir/r.html"],
    ):
        result = invoke(tracked_repo, *args)
        assert result.exit_code != 0, args
        assert_one_sentence(result.output)
        assert "/nonexistent/dir" in result.output, result.output


def test_ui_on_port_0_prints_the_real_port_and_answers(tracked_repo: Path) -> None:
    import select

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "ui", "--port", "0"],
        cwd=tracked_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        found = None
        while found is None and len(lines) < 5:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, f"the UI printed no address: {lines}"
            lines.append(proc.stdout.readline())
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1])
        assert found, lines
        port = int(found.group(1))
        assert port != 0, lines
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert answer.status_code == 200, answer.text[:300]
    finally:
        proc.kill()
        proc.wait()


def test_the_pull_conflict_hint_is_a_git_command_that_works(
    tracked_repo: Path, tmp_path: Path
) -> None:
    import shlex

    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    alice = tracked_repo
    git(alice, "remote", "add", "origin", str(remote))
    git(alice, "push", "-q", "origin", "main")
    (run_id,) = record_array_runs(alice, 1)
    assert invoke(alice, "push").exit_code == 0
    bob = tmp_path / "bob"
    git(tmp_path, "clone", "-q", str(remote), str(bob))
    assert invoke(bob, "pull").exit_code == 0
    for repo, who in ((alice, "alice"), (bob, "bob")):
        record = read_record(repo, run_id)
        record["note"] = f"{who}'s reading"
        commit_files(
            repo,
            {f"{folder(run_id)}/run.toml": tomli_w.dumps(record).encode()},
            f"gittrack: note on run {run_id[:8]}",
        )
    assert invoke(alice, "push").exit_code == 0
    pulled = invoke(bob, "pull")
    assert pulled.exit_code == 1, pulled.output
    assert f"{run_id[:8]} differ" in pulled.output, pulled.output
    hinted = re.findall(r"'(git .+?)'(?=[,.;)]|\s|$)", pulled.output)  # quoted as 'git ...'
    assert hinted, pulled.output
    for command in hinted:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            pytest.fail(f"the hint {command!r} is not a command one can paste: {exc}")
        proc = subprocess.run(argv, cwd=bob, capture_output=True, text=True)
        assert proc.returncode == 0, (command, proc.stderr)
        assert "reading" in proc.stdout, (command, proc.stdout)  # it shows the two notes


# -- 10. shared repositories ------------------------------------------------------------------


def test_a_group_shared_repo_stays_group_writable(tmp_path: Path) -> None:
    repo = tmp_path / "shared"
    repo.mkdir()
    git(repo, "init", "-q", "--shared=group")
    write_script(repo, "arrays.py", ARRAY_SIM)

    def usual_umask() -> None:
        os.umask(0o022)

    for args in (["-m", "gittrack", "init"], ["arrays.py", "--seed", "1"]):
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=repo,
            capture_output=True,
            text=True,
            preexec_fn=usual_umask,
        )
        assert proc.returncode == 0, proc.stderr
    (repo / "arrays.py").write_text(ARRAY_SIM + "\n# dirty: a code snapshot\n")
    proc = subprocess.run(
        [sys.executable, "arrays.py", "--seed", "2"],
        cwd=repo,
        capture_output=True,
        text=True,
        preexec_fn=usual_umask,
    )
    assert proc.returncode == 0, proc.stderr
    assert invoke(repo, "ls").exit_code == 0
    dot_git = repo / ".git"
    closed = []
    for top in (dot_git / "objects", dot_git / "gittrack"):
        assert top.is_dir()
        for path in [top, *top.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.is_symlink():
                continue
            if path.is_dir():
                ok = mode & 0o070 == 0o070
            elif top.name == "objects":
                ok = mode & 0o040 == 0o040  # objects are read-only, but readable by the group
            else:
                ok = mode & 0o060 == 0o060
            if not ok:
                closed.append(f"{oct(mode)} {path.relative_to(dot_git)}")
    assert closed == [], "not group-writable:\n" + "\n".join(closed)
