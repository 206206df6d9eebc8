"""Tracked runs end to end: what a user does in the foundation issue, checked on git and disk."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from conftest import branch_log, git, run_python, write_script

from gittrack.model.record import run_folder


def run_toml(repo: Path, run_id: str) -> dict:
    return tomllib.loads(git(repo, "show", f"gittrack/runs:{run_folder(run_id)}/run.toml"))


def latest_id(repo: Path, run_cli) -> str:
    result = run_cli(repo, "show", "latest", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["id"]


def test_init_creates_branch_and_keeps_status_clean(repo: Path, run_cli) -> None:
    before = git(repo, "rev-parse", "HEAD")
    result = run_cli(repo, "init")
    assert result.exit_code == 0
    assert "Initialised gittrack" in result.output
    assert branch_log(repo) == ["gittrack: initialise runs branch"]
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "HEAD") == before
    assert "/.gittrack/" in (repo / ".git" / "info" / "exclude").read_text()
    again = run_cli(repo, "init")
    assert again.exit_code == 0 and "already initialised" in again.output
    assert len(branch_log(repo)) == 1


def test_gittrack_run_records_one_commit(tracked_repo: Path, run_cli) -> None:
    result = run_cli(tracked_repo, "run", "sim.py", "--temp", "300")
    assert result.exit_code == 0, result.output
    assert "simulating at 300.0" in result.output
    log = branch_log(tracked_repo)
    assert len(log) == 2
    assert log[0].startswith("run ") and log[0].endswith(": sim.py --temp 300")
    short = log[0].split()[1].rstrip(":")
    assert f"run {short} recorded (completed in" in result.output
    run_id = latest_id(tracked_repo, run_cli)
    assert run_id.startswith(short) and len(run_id) == 32
    data = run_toml(tracked_repo, run_id)
    assert data["schema"] == 2
    assert data["status"] == "completed"
    assert data["argv"] == ["--temp", "300"]
    assert data["params"] == {"temp": 300.0, "steps": 10}  # label=None is omitted...
    assert data["param_sources"] == {"temp": "commandline", "steps": "default", "label": "default"}
    assert isinstance(data["params"]["steps"], int)
    assert data["metrics"] == {"energy": 600.0, "steps_done": 10}
    assert data["code"]["commit"] == git(tracked_repo, "rev-parse", "HEAD")
    assert data["code"]["dirty"] is False
    assert data["code"]["script"] == "sim.py"
    assert data["env"]["python"].count(".") == 2
    assert data["duration_s"] >= 0 and data["finished"] >= data["started"]
    stdout = git(tracked_repo, "show", f"gittrack/runs:{run_folder(run_id)}/stdout.log")
    assert stdout == "simulating at 300.0"
    assert git(tracked_repo, "status", "--porcelain") == ""


def test_python_script_is_tracked_and_initialises(repo: Path) -> None:
    proc = run_python(repo, "sim.py", "--temp", "2", "--label", "x")
    assert "simulating at 2.0" in proc.stdout
    assert "recorded (completed" in proc.stderr
    log = branch_log(repo)
    assert log[-1] == "gittrack: initialise runs branch"
    assert log[0].endswith("sim.py --temp 2 --label x")
    assert git(repo, "status", "--porcelain") == ""


def test_ls_and_show(tracked_repo: Path, run_cli) -> None:
    for temp in ("1", "2"):
        run_cli(tracked_repo, "run", "sim.py", "--temp", temp)
    run_cli(
        tracked_repo,
        "run",
        "--name",
        "hot",
        "--tag",
        "ref",
        "--note",
        "baseline",
        "sim.py",
        "--temp",
        "9",
    )
    table = run_cli(tracked_repo, "ls").output.splitlines()
    assert table[0].split()[:3] == ["id", "name", "status"] and "duration_s" in table[0]
    assert table[1].split()[1:3] == ["hot", "completed"]
    assert table[-1] == "3 of 3 runs"
    rows = json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)
    assert [r["params"]["temp"] for r in rows] == [9.0, 2.0, 1.0]
    assert rows[0]["tags"] == ["ref"] and rows[0]["note"] == "baseline"
    limited = json.loads(run_cli(tracked_repo, "ls", "--json", "--limit", "1").output)
    assert len(limited) == 1
    csv = run_cli(tracked_repo, "ls", "--format", "csv").output.splitlines()
    assert csv[0].startswith("id,name,status,started,duration_s,params.temp")
    by_name = run_cli(tracked_repo, "show", "hot")
    assert by_name.exit_code == 0
    assert "name:        hot" in by_name.output and "temp:        9.0" in by_name.output
    shown = json.loads(run_cli(tracked_repo, "show", rows[1]["id"][:4], "--json").output)
    assert shown["id"] == rows[1]["id"]
    assert shown["commit"] == git(tracked_repo, "rev-parse", "gittrack/runs~1")


def test_dirty_tree_is_snapshotted_without_touching_user_state(tracked_repo: Path, run_cli) -> None:
    (tracked_repo / "sim.py").write_text((tracked_repo / "sim.py").read_text() + "\n# tweak\n")
    (tracked_repo / "helper.py").write_text("X = 1\n")
    git(tracked_repo, "add", "helper.py")  # staged, to prove the index is left as it was
    (tracked_repo / "notes.txt").write_text("untracked\n")  # no code of the run: not snapshotted
    index_before = (tracked_repo / ".git" / "index").read_bytes()
    status_before = git(tracked_repo, "status", "--porcelain")
    head = git(tracked_repo, "rev-parse", "HEAD")
    assert run_cli(tracked_repo, "run", "sim.py").exit_code == 0
    data = run_toml(tracked_repo, latest_id(tracked_repo, run_cli))
    code = data["code"]
    assert code["dirty"] is True and code["head"] == head and code["commit"] != head
    assert git(tracked_repo, "rev-parse", f"{code['commit']}^") == head
    files = git(tracked_repo, "ls-tree", "-r", "--name-only", code["commit"]).splitlines()
    assert sorted(files) == ["helper.py", "sim.py"]  # tracked changes, staged or not
    assert "# tweak" in git(tracked_repo, "show", f"{code['commit']}:sim.py")
    assert git(tracked_repo, "status", "--porcelain") == status_before
    assert (tracked_repo / ".git" / "index").read_bytes() == index_before
    assert git(tracked_repo, "rev-parse", "HEAD") == head


def test_code_commits_survive_gc_and_branch_deletion(tracked_repo: Path, run_cli) -> None:
    git(tracked_repo, "checkout", "-qb", "experiment")
    write_script(tracked_repo, "extra.py", "Y = 2\n")
    (tracked_repo / "sim.py").write_text((tracked_repo / "sim.py").read_text() + "\n# dirty\n")
    assert run_cli(tracked_repo, "run", "sim.py").exit_code == 0
    code = run_toml(tracked_repo, latest_id(tracked_repo, run_cli))["code"]
    git(tracked_repo, "checkout", "-q", "--", "sim.py")
    git(tracked_repo, "checkout", "-q", "main")
    git(tracked_repo, "branch", "-D", "experiment")
    git(tracked_repo, "reflog", "expire", "--expire=now", "--all")
    git(tracked_repo, "gc", "-q", "--prune=now")
    assert git(tracked_repo, "cat-file", "-t", code["commit"]) == "commit"
    assert git(tracked_repo, "cat-file", "-t", code["head"]) == "commit"
    assert f"refs/gittrack/code/{code['commit']}" in git(
        tracked_repo, "for-each-ref", "refs/gittrack"
    )
    git(tracked_repo, "fsck", "--strict")


def test_detached_head_and_shallow_clone(tracked_repo: Path, tmp_path: Path, run_cli) -> None:
    git(tracked_repo, "checkout", "-q", "--detach")
    assert run_cli(tracked_repo, "run", "sim.py").exit_code == 0
    code = run_toml(tracked_repo, latest_id(tracked_repo, run_cli))["code"]
    assert code["detached"] is True and code["branch"] == ""
    git(tracked_repo, "checkout", "-q", "main")
    write_script(tracked_repo, "more.py", "Z = 3\n")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{tracked_repo}", str(shallow))
    proc = run_python(shallow, "sim.py", "--temp", "4")
    assert "recorded (completed" in proc.stderr
    data = json.loads(run_python(shallow, "-m", "gittrack", "show", "latest", "--json").stdout)
    assert data["code"]["shallow"] is True
    assert data["params"]["temp"] == 4.0


def test_unicode_and_long_values_round_trip(tracked_repo: Path, run_cli) -> None:
    label = "Ünïcödé ✓ 温度 " + "x" * 5000 + ' "quoted" \\ back\nline'
    assert run_cli(tracked_repo, "run", "sim.py", "--label", label).exit_code == 0
    data = run_toml(tracked_repo, latest_id(tracked_repo, run_cli))
    assert data["params"]["label"] == label
    shown = json.loads(run_cli(tracked_repo, "show", "latest", "--json").output)
    assert shown["params"]["label"] == label


def test_metadata_tags_and_command_from_python(tracked_repo: Path) -> None:
    write_script(
        tracked_repo,
        "engine.py",
        """
        import click, gittrack

        @gittrack.command(metadata=lambda: {"engine": "lammps 2Aug2023"})
        @click.option("--n", type=int, default=3)
        def run_engine(n):
            gittrack.log_metadata(dataset="abc123")
            return {"total": n * 2}

        if __name__ == "__main__":
            run_engine.main(["--n", "5"], standalone_mode=False)
        """,
    )
    run_python(tracked_repo, "engine.py")
    data = json.loads(run_python(tracked_repo, "-m", "gittrack", "show", "latest", "--json").stdout)
    assert data["env"]["engine"] == "lammps 2Aug2023"
    assert data["env"]["dataset"] == "abc123"
    assert data["metrics"] == {"total": 10}
    assert data["command"] == "engine.py:run_engine"


def test_logs_are_bounded_with_a_truncation_marker(
    tracked_repo: Path, run_cli, monkeypatch
) -> None:
    from gittrack.recording import capture

    monkeypatch.setattr(capture, "LOG_LIMIT", 64)
    write_script(
        tracked_repo,
        "chatty.py",
        """
        import sys, click, gittrack

        @gittrack.command()
        def main():
            for i in range(100):
                print(f"line {i:03d}")
            print("warning!", file=sys.stderr)
    """,
    )
    result = run_cli(tracked_repo, "run", "chatty.py")
    assert result.exit_code == 0
    assert "line 099" in result.output  # the terminal still sees everything
    run_id = latest_id(tracked_repo, run_cli)
    stdout = git(tracked_repo, "show", f"gittrack/runs:{run_folder(run_id)}/stdout.log")
    assert stdout.startswith("line 000\nline 001\n")
    assert stdout.endswith(
        "[gittrack: output truncated: 836 more bytes were not kept (limit 64 bytes)]"
    )
    assert git(tracked_repo, "show", f"gittrack/runs:{run_folder(run_id)}/stderr.log") == "warning!"
    assert run_toml(tracked_repo, run_id)["logs"] == {
        "stdout": "stdout.log",
        "stderr": "stderr.log",
        "stdout_truncated": 836,
    }


def test_failing_metadata_is_a_failed_run(tracked_repo: Path) -> None:
    write_script(
        tracked_repo,
        "meta.py",
        """
        import click, gittrack

        @gittrack.command(metadata=lambda: {"python": "mine"})
        def main():
            print("never runs")

        if __name__ == "__main__":
            main()
        """,
    )
    proc = run_python(tracked_repo, "meta.py", check=False)
    assert proc.returncode == 1
    assert "never runs" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: Metadata key 'python' is reserved by gittrack; choose another name."
    )
    data = json.loads(run_python(tracked_repo, "-m", "gittrack", "show", "latest", "--json").stdout)
    assert data["status"] == "failed" and data["error"]["type"] == "UsageError"
    assert not list((tracked_repo / ".git" / "gittrack" / "running").iterdir())


def test_output_of_child_processes_is_captured_in_batch_jobs(tracked_repo: Path) -> None:
    """With output going to a file or pipe (a batch job), the engine's own output is kept."""
    write_script(
        tracked_repo,
        "engine.py",
        """
        import subprocess, sys, click, gittrack

        @gittrack.command()
        def main():
            print("python says hello")
            subprocess.run(["sh", "-c", "echo engine step 1; echo engine warning >&2"], check=True)
            print("python says bye")

        if __name__ == "__main__":
            main()
        """,
    )
    proc = run_python(tracked_repo, "engine.py")
    assert proc.stdout.splitlines() == ["python says hello", "engine step 1", "python says bye"]
    assert "engine warning" in proc.stderr and "recorded (completed" in proc.stderr
    data = json.loads(run_python(tracked_repo, "-m", "gittrack", "show", "latest", "--json").stdout)
    folder = f"gittrack/runs:{run_folder(data['id'])}"
    assert git(tracked_repo, "show", f"{folder}/stdout.log").splitlines() == [
        "python says hello",
        "engine step 1",
        "python says bye",
    ]
    assert git(tracked_repo, "show", f"{folder}/stderr.log") == "engine warning"
