"""Sweeps, Experiment, memoisation and rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import branch_log, git, run_python, write_script

from gittrack.errors import UsageError
from gittrack.execute.experiment import Experiment, RunFailed
from gittrack.execute.grid import expand, grid_points, parse_grid


def ls(run_cli, repo: Path) -> list[dict]:
    return json.loads(run_cli(repo, "ls", "--format", "json").output)


def test_sweep_runs_the_grid_as_one_experiment(tracked_repo: Path, run_cli) -> None:
    result = run_cli(
        tracked_repo,
        "sweep",
        "sim.py",
        "--temp",
        "100,200",
        "--steps",
        "1:4",
        "-j",
        "2",
        "--name",
        "temp-scan",
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "status", "temp", "steps", "energy", "steps_done"]
    assert lines[-1] == "experiment temp-scan: 6 runs (6 completed)"
    rows = ls(run_cli, tracked_repo)
    assert len(rows) == 6
    assert {r["experiment"] for r in rows} == {"temp-scan"}
    assert sorted((r["params"]["temp"], r["params"]["steps"]) for r in rows) == [
        (100.0, 1),
        (100.0, 2),
        (100.0, 3),
        (200.0, 1),
        (200.0, 2),
        (200.0, 3),
    ]
    again = run_cli(
        tracked_repo, "sweep", "sim.py", "--temp", "100,200", "--steps", "1:4", "--json"
    )
    assert json.loads(again.output)["counts"] == {"reused": 6}
    assert len(branch_log(tracked_repo)) == 7  # init + 6 runs


def test_failures_do_not_stop_the_sweep_unless_fail_fast(tracked_repo: Path, run_cli) -> None:
    result = run_cli(tracked_repo, "sweep", "sim.py", "--temp", "-1,1,2", "--name", "mixed")
    assert result.exit_code == 1
    assert "experiment mixed: 3 runs (2 completed, 1 failed)" in result.output
    assert "failed: ValueError: negative temperature" in result.output
    result = run_cli(
        tracked_repo, "sweep", "sim.py", "--temp", "-2,5,6,7", "--fail-fast", "--name", "ff"
    )
    assert result.exit_code == 1
    assert "Stopped early (--fail-fast)." in result.output
    assert len([r for r in ls(run_cli, tracked_repo) if r["experiment"] == "ff"]) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1:x", "Sweep values '1:x' do not parse: a range needs numbers for start, stop and step"),
        ("5:1", "Sweep values '5:1' do not parse: the range is empty"),
        ("1:5:0", "Sweep values '1:5:0' do not parse: the step is 0"),
        ("1,,2", "Sweep values '1,,2' do not parse: a list has an empty value"),
    ],
)
def test_bad_sweep_spec(tracked_repo: Path, run_cli, spec: str, message: str) -> None:
    result = run_cli(tracked_repo, "sweep", "sim.py", "--temp", spec)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith(f"Error: {message}; give a list a,b,c")
    assert len(branch_log(tracked_repo)) == 1


def test_grid_parsing() -> None:
    assert expand("1:4") == ["1", "2", "3"]
    assert expand("0:1:0.25") == ["0.0", "0.25", "0.5", "0.75"]
    assert expand("a,b\\,c") == ["a", "b,c"]
    axes = parse_grid(["--temp", "1,2", "--verbose", "--seed=0:2", "input.csv"])
    points = grid_points(axes)
    assert points[0] == (
        ["--temp", "1", "--verbose", "--seed", "0", "input.csv"],
        {"temp": "1", "seed": "0"},
    )
    assert len(points) == 4


def test_experiment_run_and_raising_command(
    tracked_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tracked_repo)
    exp = Experiment("fine-scan")
    runs = [exp.run("sim.py", temp=t) for t in (2.2, 2.3)]
    assert [r.metrics["energy"] for r in runs] == [4.4, 4.6]
    assert {r.experiment for r in runs} == {"fine-scan"}
    with pytest.raises(
        RunFailed, match=r"failed: ValueError: negative temperature; 'gittrack show"
    ) as info:
        exp.run("sim.py", temp=-1.0)
    assert info.value.run is not None and info.value.run.status == "failed"
    assert len(exp.runs) == 3
    with pytest.raises(UsageError, match="has no parameter 'tmp'"):
        exp.run("sim.py", tmp=1)


def test_driver_script_launches_children(tracked_repo: Path, run_cli) -> None:
    write_script(
        tracked_repo,
        "drive.py",
        """\
        import gittrack
        from sim import main


        @gittrack.command()
        def drive():
            exp = gittrack.Experiment("driven")
            done = [exp.run(main, temp=t).id for t in (1.0, 2.0)]
            report = exp.sweep("sim.py", temp=[3.0, 4.0], jobs=2)
            return {"children": len(done) + len(report.results)}


        if __name__ == "__main__":
            drive()
        """,
    )
    run_python(tracked_repo, "drive.py")
    rows = ls(run_cli, tracked_repo)
    driver = next(r for r in rows if r["command"] == "drive.py:drive")
    children = [r for r in rows if r.get("parent") == driver["id"]]
    assert sorted(r["params"]["temp"] for r in children) == [1.0, 2.0, 3.0, 4.0]
    assert {r["experiment"] for r in children} == {"driven"}
    assert driver["metrics"]["children"] == 4


def test_memoisation_reuses_and_force_records_anew(tracked_repo: Path, run_cli) -> None:
    first = run_cli(tracked_repo, "run", "sim.py", "--temp", "7")
    assert first.exit_code == 0
    run_id = ls(run_cli, tracked_repo)[0]["id"]
    again = run_cli(tracked_repo, "run", "sim.py", "--temp", "7")
    assert (
        again.output.strip()
        == f"run {run_id[:8]} reused (same code, params and inputs; --force records anew)"
    )
    assert len(branch_log(tracked_repo)) == 2
    assert run_cli(tracked_repo, "run", "--force", "sim.py", "--temp", "7").exit_code == 0
    assert len(branch_log(tracked_repo)) == 3
    (tracked_repo / "sim.py").write_text((tracked_repo / "sim.py").read_text() + "\n# changed\n")
    assert (
        "recorded" in run_cli(tracked_repo, "run", "sim.py", "--temp", "7").output
    )  # new code tree
    assert len(branch_log(tracked_repo)) == 4
    proc = run_python(tracked_repo, "sim.py", "--temp", "7")
    assert "reused" in proc.stderr


def test_rerun_is_identical_and_uses_the_old_code(tracked_repo: Path, run_cli) -> None:
    assert run_cli(tracked_repo, "run", "sim.py", "--temp", "3").exit_code == 0
    original = ls(run_cli, tracked_repo)[0]
    sim = tracked_repo / "sim.py"
    sim.write_text(sim.read_text().replace("temp * 2.0", "temp * 3.0"))
    git(tracked_repo, "commit", "-qam", "change physics")
    result = run_cli(tracked_repo, "rerun", original["id"][:6])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(f"of {original['id'][:8]}: completed")
    assert "  metric energy: identical" in lines
    assert lines[-1] == "identical"
    rerun = ls(run_cli, tracked_repo)[0]
    assert rerun["rerun_of"] == original["id"]
    assert rerun["code"]["commit"] == original["code"]["commit"]
    assert git(tracked_repo, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert "temp * 3.0" in sim.read_text()


def test_misspelt_option_or_bad_value_is_refused_before_anything_runs(
    tracked_repo: Path, run_cli
) -> None:
    from conftest import branch_log

    typo = run_cli(tracked_repo, "sweep", "sim.py", "--tmp", "1,2")
    assert typo.exit_code == 2
    assert typo.output == (
        "Error: The sweep cannot run sim.py --tmp 1: No such option '--tmp'. "
        "(Did you mean one of: '--steps', '--temp'?)\n"
    )
    bad = run_cli(tracked_repo, "sweep", "sim.py", "--temp", "1,hot")
    assert bad.exit_code == 2
    assert bad.output == (
        "Error: The sweep cannot run sim.py --temp hot: Invalid value for '--temp': 'hot' is not a valid float.\n"
    )
    assert len(branch_log(tracked_repo)) == 1


def test_a_worker_takes_its_next_task_only_after_the_sweep_saw_the_last_result(
    tracked_repo: Path,
) -> None:
    """--fail-fast stops at the result it is handed: no task may have started meanwhile."""
    import time

    from gittrack.execute.executors import LocalExecutor, Task

    write_script(
        tracked_repo,
        "marks.py",
        """\
        import pathlib
        import click
        import gittrack


        @gittrack.command()
        @click.option("--i", type=int)
        def main(i):
            pathlib.Path(f"ran-{i}").write_text("")
            return {"i": i}
        """,
    )
    script = str(tracked_repo / "marks.py")
    where = {"repo": str(tracked_repo), "cwd": str(tracked_repo)}
    tasks = [Task(script, ["--i", str(i)], **where) for i in range(2)]
    results = LocalExecutor(jobs=1).run(tasks)
    first = next(results)
    assert first.ok
    time.sleep(3)  # the sweep takes its time over a result: the next task must wait for it
    results.close()  # what --fail-fast does after a failure
    assert (tracked_repo / "ran-0").exists()
    assert not (tracked_repo / "ran-1").exists()
