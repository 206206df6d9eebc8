"""The layered package (issue 10): one JSON form of a record, reads that never write, the layers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import branch_log, write_script
from starlette.testclient import TestClient

import gittrack
from gittrack.ui import create_app

ROOT = Path(__file__).resolve().parent.parent

TYPED = """\
import pathlib
import click
import gittrack


@gittrack.command()
@click.option("--nothing", default=None)
@click.option("--flag", is_flag=True)
@click.option("--count", type=int, default=3)
@click.option("--ratio", type=float, default=0.25)
@click.option("--label", default="温度スキャン")
@click.option("--sizes", type=int, multiple=True, default=[1, 2])
@click.option("--where", type=click.Path(path_type=pathlib.Path), default="data/in.txt")
@click.option("--table", default=None, callback=lambda c, p, v: {"a": {"b": 1}, "c": [1, 2]})
@click.option("--upstream", type=gittrack.RunRef(), default=None)
def main(nothing, flag, count, ratio, label, sizes, where, table, upstream):
    return {"energy": 1.5}


if __name__ == "__main__":
    main()
"""


def _cli(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gittrack", *args], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_json_form_of_a_record_agrees(tracked_repo: Path) -> None:
    write_script(tracked_repo, "typed.py", TYPED)
    first = subprocess.run(
        [sys.executable, "typed.py"], cwd=tracked_repo, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    upstream = json.loads(_cli(tracked_repo, "ls", "--format", "json"))[0]["id"]
    second = subprocess.run(
        [sys.executable, "typed.py", "--flag", "--upstream", upstream[:6]],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 0, second.stderr
    rows = {r["id"]: r for r in json.loads(_cli(tracked_repo, "ls", "--format", "json"))}
    run_id = next(i for i in rows if i != upstream)
    listed = rows[run_id]
    shown = json.loads(_cli(tracked_repo, "show", run_id, "--json"))
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    api = client.get(f"/api/runs/{run_id}").json()
    python = gittrack.Run(run_id, tracked_repo)

    expected = {
        "nothing": None,
        "flag": True,
        "count": 3,
        "ratio": 0.25,
        "label": "温度スキャン",
        "sizes": [1, 2],
        "where": "data/in.txt",
        "table": {"a": {"b": 1}, "c": [1, 2]},
        "upstream": upstream,
    }
    for form in (listed, shown, api):
        assert form["params"] == expected
    assert python.params == expected
    assert python.to_json() == shown
    for key in sorted(set(shown) | set(listed) | set(api)):
        assert listed.get(key) == shown.get(key) == api.get(key), key


STAGED_SLEEP = """\
import click
import gittrack


@gittrack.command(memoize=False)
@click.option("--n", type=int, default=0)
def main(n):
    print("started", flush=True)
    import time

    time.sleep(60)


if __name__ == "__main__":
    main()
"""


def _stage_died_runs(repo: Path, count: int) -> list[str]:
    """Start `count` runs and SIGKILL each once it is staged; returns their ids."""
    write_script(repo, "slow.py", STAGED_SLEEP)
    procs = [
        subprocess.Popen(
            [sys.executable, "slow.py", "--n", str(n)], cwd=repo, stdout=subprocess.PIPE, text=True
        )
        for n in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        proc.kill()
        proc.wait()
    running = repo / ".git" / "gittrack" / "running"
    return sorted(p.name for p in running.iterdir())


def test_concurrent_listings_never_write_and_died_runs_are_committed_once(
    tracked_repo: Path,
) -> None:
    died = _stage_died_runs(tracked_repo, 10)
    assert len(died) == 10
    before = branch_log(tracked_repo)

    def listing(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gittrack", "ls", "--format", "json"],
            cwd=tracked_repo,
            capture_output=True,
            text=True,
        )

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(listing, range(4)))
    for result in results:
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        assert sorted(r["id"] for r in rows if r["status"] == "died") == died
    assert branch_log(tracked_repo) == before  # reads never write

    def doctor(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gittrack", "doctor", "--json"],
            cwd=tracked_repo,
            capture_output=True,
            text=True,
        )

    with ThreadPoolExecutor(4) as pool:
        doctors = list(pool.map(doctor, range(4)))
    assert all(d.returncode == 0 for d in doctors), [d.stderr for d in doctors]
    committed = [i for d in doctors for i in json.loads(d.stdout)["died"]]
    assert sorted(committed) == died  # each died run committed exactly once
    log = subprocess.run(
        ["git", "log", "--format=%B", "gittrack/runs"],
        cwd=tracked_repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for run_id in died:
        assert log.count(f"Run-Id: {run_id}") == 1
    rows = json.loads(_cli(tracked_repo, "ls", "--format", "json"))
    assert sorted(r["id"] for r in rows if r["status"] == "died") == died


def test_the_next_run_commits_died_runs(tracked_repo: Path) -> None:
    died = _stage_died_runs(tracked_repo, 2)
    time.sleep(0.1)
    run = subprocess.run([sys.executable, "sim.py"], cwd=tracked_repo, capture_output=True)
    assert run.returncode == 0
    log = "\n".join(branch_log(tracked_repo))
    assert log.count("slow.py") == 2
    assert not (tracked_repo / ".git" / "gittrack" / "running").exists() or not list(
        (tracked_repo / ".git" / "gittrack" / "running").iterdir()
    )
    assert len(died) == 2


def test_the_layer_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml: the layers point one way."""
    linter = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([linter], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


# -- small terminal habits (issue 16, findings 9 and 12) ---------------------------------------


def test_terminal_habits(tracked_repo: Path, run_cli, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "sim.py", "--label", "温度スキャン"], cwd=tracked_repo, capture_output=True
    )
    assert run.returncode == 0
    short = run_cli(tracked_repo, "show", "57")
    assert short.exit_code == 2
    assert "give at least 4 characters" in short.output
    jpg = run_cli(tracked_repo, "lineage", "latest", "-o", str(tmp_path / "x.jpg"))
    assert jpg.exit_code == 2 and "Cannot write a lineage graph as .jpg" in jpg.output
    assert not (tmp_path / "x.jpg").exists()


def test_a_fresh_clone_points_to_pull(tracked_repo: Path, tmp_path: Path) -> None:
    assert subprocess.run([sys.executable, "sim.py"], cwd=tracked_repo).returncode == 0
    bare = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=tracked_repo, check=True)
    assert _cli(tracked_repo, "push") is not None
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    subprocess.run(["git", "fetch", "-q", "origin", "gittrack/runs"], cwd=clone, check=True)
    subprocess.run(
        [
            "git",
            "fetch",
            "-q",
            "origin",
            "+refs/heads/gittrack/runs:refs/remotes/origin/gittrack/runs",
        ],
        cwd=clone,
        check=True,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gittrack", "ls"], cwd=clone, capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "'gittrack pull origin' brings them" in proc.stderr


def test_commands_load_their_module_when_used(tracked_repo: Path) -> None:
    """`gittrack ls` imports only its own command module; the lazy table names every command."""
    code = (
        "import importlib, sys\n"
        "from gittrack.cli import COMMANDS, cli\n"
        "cli(['ls'], standalone_mode=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith('gittrack.cli.') and m.count('.') == 2"
        " and m.split('.')[2] in set(COMMANDS.values())))\n"
        "for module in set(COMMANDS.values()):\n"
        "    importlib.import_module('gittrack.cli.' + module)\n"
        "print(sorted(cli.commands) == sorted(COMMANDS), sorted(set(cli.commands) ^ set(COMMANDS)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tracked_repo, capture_output=True, text=True, check=True
    )
    loaded, complete = out.stdout.strip().splitlines()[-2:]
    assert loaded == "['gittrack.cli.query']"
    assert complete == "True []"
    help_text = subprocess.run(
        [sys.executable, "-m", "gittrack", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(f"  {name} " in help_text for name in ("run", "ls", "lineage", "ui", "exec", "push"))
