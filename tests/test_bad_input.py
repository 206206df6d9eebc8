"""Bad input: one clear sentence, a non-zero exit, no traceback, nothing recorded."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import SIM, branch_log, git, run_python, write_script

from gittrack import store
from gittrack.cli import cli
from gittrack.model.record import RunRecord, run_folder


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_not_a_git_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "sim.py").write_text("import gittrack\n")
    for args in (["ls"], ["run", "sim.py"], ["init"], ["show", "latest"]):
        result = invoke("-C", str(plain), *args)
        assert result.exit_code == 1, args
        assert result.output == (
            f"Error: {plain} is not inside a git repository. "
            "Run 'git init' there first (or 'gittrack init --git').\n"
        )
    made = invoke("-C", str(plain), "init", "--git")
    assert made.exit_code == 0, made.output
    assert (plain / ".git").is_dir()
    assert branch_log(plain) == ["gittrack: initialise runs branch"]


def test_no_commits_yet(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    write_script(empty, "sim.py", SIM, commit=False)
    result = invoke("-C", str(empty), "run", "sim.py")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: The git repository at {empty} has no commits yet. "
        "Commit your code first, e.g. 'git add -A && git commit -m start'.\n"
    )
    assert git(empty, "branch", "--list", "gittrack/runs") == ""
    assert not (empty / ".git" / "gittrack" / "running").exists()


def test_script_problems(tracked_repo: Path, run_cli) -> None:
    (tracked_repo / "notes.txt").write_text("hello")
    write_script(tracked_repo, "plain.py", "x = 1\n", commit=False)
    write_script(
        tracked_repo,
        "two.py",
        """
        import click, gittrack

        @gittrack.command()
        def a():
            pass

        @gittrack.command()
        def b():
            pass
    """,
        commit=False,
    )
    write_script(tracked_repo, "broken.py", "def f(:\n", commit=False)
    cases = {
        ("missing.py",): "Error: Script missing.py does not exist; check the path.",
        (
            "notes.txt",
        ): "Error: Script notes.txt is not a Python file (.py); give the simulation's .py "
        "file, or record any other program with 'gittrack exec -- PROGRAM ARGS'.",
        ("lmp", "-in", "in.melt"): "Error: Script lmp does not exist, but a program lmp does; "
        "record it with 'gittrack exec -- lmp ...'.",
        (
            "plain.py",
        ): "Error: Script plain.py defines no tracked command; decorate its function with @gittrack.command().",
        (
            "two.py",
        ): "Error: Script two.py defines several tracked commands (a, b); name one as two.py:FUNCTION.",
        (
            "two.py:c",
        ): "Error: Script two.py has no tracked command named 'c' (tracked commands: a, b).",
        ("broken.py",): "Error: Script broken.py has a syntax error at line 1: invalid syntax.",
    }
    for args, message in cases.items():
        result = run_cli(tracked_repo, "run", *args)
        assert result.exit_code == 1, args
        assert result.output.strip() == message
    named = run_cli(tracked_repo, "run", "two.py:b")
    assert named.exit_code == 0, named.output
    assert len(branch_log(tracked_repo)) == 2  # init + the one good run


def test_bad_option_values_are_clicks_message_and_record_nothing(
    tracked_repo: Path, run_cli
) -> None:
    bad = run_cli(tracked_repo, "run", "sim.py", "--temp", "hot")
    assert bad.exit_code == 2
    assert "Error: Invalid value for '--temp': 'hot' is not a valid float." in bad.output
    unknown = run_cli(tracked_repo, "run", "sim.py", "--pressure", "3")
    assert unknown.exit_code == 2
    assert "Error: No such option '--pressure'." in unknown.output
    proc = run_python(tracked_repo, "sim.py", "--steps", "many", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(branch_log(tracked_repo)) == 1


def test_unknown_and_ambiguous_ids(tracked_repo: Path, run_cli) -> None:
    repo = store.find_repo(tracked_repo)
    for run_id in ("abcd1111" + "0" * 24, "abcd2222" + "0" * 24, "abce3333" + "0" * 24):
        store.write_run(repo, RunRecord(id=run_id, command="sim.py", status="completed"), {})
    missing = run_cli(tracked_repo, "show", "zzzz")
    assert missing.exit_code == 1
    assert missing.output == "Error: No run matches \"zzzz\". ('gittrack ls' lists runs.)\n"
    ambiguous = run_cli(tracked_repo, "show", "abcd")
    assert ambiguous.exit_code == 1
    assert ambiguous.output == (
        'Error: "abcd" matches 2 runs (abcd11110000, abcd22220000); give more characters of the id.\n'
    )
    assert json.loads(run_cli(tracked_repo, "show", "abcd2", "--json").output)["id"].startswith(
        "abcd2222"
    )
    assert (
        run_cli(tracked_repo, "show", "abc").exit_code == 2
    )  # under 4 characters: no prefix match, a usage error
    near = run_cli(tracked_repo, "show", "abcf")
    assert near.output.startswith('Error: No run matches "abcf". Did you mean ')
    typo = run_cli(tracked_repo, "show", "abcx")  # the typo is not a hex digit
    assert typo.output.startswith('Error: No run matches "abcx". Did you mean abc')
    run_cli(tracked_repo, "run", "--name", "twin", "sim.py")
    run_cli(tracked_repo, "run", "--force", "--name", "twin", "sim.py")
    twin = run_cli(tracked_repo, "show", "twin")  # a shared name means the newest run
    assert twin.exit_code == 0
    assert twin.output.splitlines()[1].startswith("  (the newest of 2 runs named 'twin'; ")
    near = run_cli(tracked_repo, "show", "twim")
    assert (
        near.output
        == "Error: No run matches \"twim\". Did you mean twin? ('gittrack ls' lists runs.)\n"
    )


def test_hand_edited_invalid_toml_is_reported_and_skipped(tracked_repo: Path, run_cli) -> None:
    run_cli(tracked_repo, "run", "sim.py", "--temp", "1")
    run_cli(tracked_repo, "run", "sim.py", "--temp", "2")
    rows = json.loads(run_cli(tracked_repo, "ls", "--json").output)
    victim = rows[0]["id"]
    # edit run.toml on the branch by hand, with plain git plumbing in a temporary worktree
    wt = tracked_repo.parent / "edit"
    git(tracked_repo, "worktree", "add", "-q", str(wt), "gittrack/runs")
    (wt / run_folder(victim) / "run.toml").write_text("schema = 1\nid = [broken\n")
    git(wt, "commit", "-qam", "hand edit")
    git(tracked_repo, "worktree", "remove", "--force", str(wt))
    listing = run_cli(tracked_repo, "ls", "--json")
    assert listing.exit_code == 0
    assert [r["id"] for r in json.loads(listing.stdout)] == [rows[1]["id"]]
    assert f"Warning: run {victim[:8]} is unreadable (invalid TOML" in listing.stderr
    shown = run_cli(tracked_repo, "show", victim[:6])
    assert shown.exit_code == 1
    assert shown.output.startswith(
        f"Error: The record of run {victim[:8]} is unreadable: invalid TOML"
    )


DEEP = """
import click, gittrack

def nested(n):
    value = {"leaf": 1}
    for _ in range(n - 1):
        value = {"k": value}
    return value

@gittrack.command()
@click.option("--n", type=int, default=100)
def main(n):
    gittrack.log_metadata(tree=nested(n))
    return {"y": n}

if __name__ == "__main__":
    main()
"""


def test_metadata_nested_too_deep_fails_the_run_in_one_sentence(tracked_repo: Path) -> None:
    """A value no reader would accept is refused when it is logged, not recorded unreadable."""
    write_script(tracked_repo, "deep.py", DEEP)
    proc = run_python(tracked_repo, "deep.py", "--n", "100", check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Metadata 'tree' is nested 100 levels deep" in proc.stderr
    proc = run_python(tracked_repo, "deep.py", "--n", "63")  # as deep as a record may hold
    listing = run_python(tracked_repo, "-m", "gittrack", "ls", "--format", "json").stdout
    rows = json.loads(listing)
    assert sorted(r["status"] for r in rows) == ["completed", "failed"]
    assert not [r for r in rows if r.get("unreadable")]
    failed = next(r for r in rows if r["status"] == "failed")
    shown = run_python(tracked_repo, "-m", "gittrack", "show", failed["id"]).stdout
    assert "nested 100 levels deep" in shown


def test_params_nested_too_deep_are_refused_before_the_run(tracked_repo: Path) -> None:
    script = """
import gittrack
value = {"leaf": 1}
for _ in range(99):
    value = {"k": value}
with gittrack.track("deep", params={"tree": value}):
    print("ran")
"""
    write_script(tracked_repo, "deeptrack.py", script)
    proc = run_python(tracked_repo, "deeptrack.py", check=False)
    assert proc.returncode != 0 and "ran" not in proc.stdout
    # a library call in the user's own script: Python's report, ending in the one sentence
    assert "UsageError: Param 'tree' is nested 100 levels deep" in proc.stderr.splitlines()[-1]
    assert git(tracked_repo, "rev-list", "--count", "gittrack/runs") == "1"  # nothing recorded


def test_a_result_nested_too_deep_is_stored_as_an_output_not_as_metrics(
    tracked_repo: Path,
) -> None:
    script = DEEP.replace(
        'gittrack.log_metadata(tree=nested(n))\n    return {"y": n}',
        'return {"y": n, "tree": nested(n)}',
    )
    assert "tree" in script and "log_metadata" not in script
    write_script(tracked_repo, "deepresult.py", script)
    run_python(tracked_repo, "deepresult.py", "--n", "2000")
    rows = json.loads(run_python(tracked_repo, "-m", "gittrack", "ls", "--format", "json").stdout)
    assert [r["status"] for r in rows] == ["completed"]
    shown = run_python(tracked_repo, "-m", "gittrack", "show", rows[0]["id"]).stdout
    assert "tree" in shown
    record = RunRecord.from_toml(
        git(tracked_repo, "show", f"gittrack/runs:{run_folder(rows[0]['id'])}/run.toml")
    )
    assert record.metrics == {"y": 2000} and "tree" in record.outputs


def test_a_damaged_heartbeat_costs_only_its_own_staged_run(tracked_repo: Path) -> None:
    """Heartbeats are read back from disk (another member's process may have written them):
    valid JSON of the wrong shape is a run last seen never, not a crash of every listing."""
    running = tracked_repo / ".git" / "gittrack" / "running"
    beats = ["[1, 2]", '{"time": "soon", "pid": "x", "host": 5}', "not json", '"text"']
    for n, beat in enumerate(beats):
        record = RunRecord(id=f"{n + 1:032x}", command="sim.py", status="running")
        folder = running / record.id
        folder.mkdir(parents=True)
        (folder / "run.toml").write_text(record.to_toml())
        (folder / "heartbeat").write_text(beat)
    proc = run_python(tracked_repo, "-m", "gittrack", "ls", "--format", "json")
    rows = json.loads(proc.stdout)
    assert sorted(r["id"] for r in rows) == [f"{n + 1:032x}" for n in range(len(beats))]
    assert {r["status"] for r in rows} == {"died"}
