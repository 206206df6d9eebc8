"""The issue's "What a user does" end to end through the CLI, and what bad input shows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import git, write_script
from lookup_support import scan, write_runs

import gittrack
from gittrack import store
from gittrack.cli.table import render_runs
from gittrack.index.db import Index
from gittrack.library.listing import list_runs

SIM = """\
import click
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
@click.option("--seed", type=int, default=0)
@click.option("--steps", type=int, default=100)
def main(temp, seed, steps):
    if seed == 13:
        raise RuntimeError("unlucky seed")
    return {"energy": -temp / 150.0, "steps_done": steps}
"""


def ls_json(run_cli, repo: Path, *args: str) -> list[dict]:
    result = run_cli(repo, "ls", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_what_a_user_does(repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    write_script(repo, "sim.py", SIM)
    assert run_cli(repo, "init").exit_code == 0
    for name, temp, seed in [
        ("scan-100", 100, 1),
        ("scan-200", 200, 3),
        ("scan-300", 300, 2),
        ("bad-250", 250, 13),
    ]:
        run_cli(repo, "run", "--name", name, "sim.py", "--temp", str(temp), "--seed", str(seed))
    write_script(repo, "sim.py", SIM.replace("-temp / 150.0", "-temp / 140.0"))
    assert (
        run_cli(
            repo, "run", "--name", "scan-400", "sim.py", "--temp", "400", "--seed", "3"
        ).exit_code
        == 0
    )
    runs = {r["name"]: r for r in ls_json(run_cli, repo)}
    assert runs["bad-250"]["status"] == "failed" and runs["scan-400"]["metrics"][
        "energy"
    ] == pytest.approx(-2.857, abs=1e-3)

    # $ gittrack ls --where "params.temp >= 200 and (metrics.energy < -1.5 or status = 'failed')"
    result = run_cli(
        repo, "ls", "--where", "params.temp >= 200 and (metrics.energy < -1.5 or status = 'failed')"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # what varies among these runs (the failed one has no metrics)
    assert lines[0].split() == [
        "id",
        "name",
        "status",
        "temp",
        "seed",
        "energy",
        "steps_done",
        "started",
        "duration_s",
    ]
    assert [line.split()[1] for line in lines[1:-1]] == ["scan-400", "bad-250", "scan-300"]
    assert lines[-1] == "3 of 5 runs"
    assert lines[1].split()[0] == runs["scan-400"]["id"][:8]

    # $ gittrack ls --where "params.seed in (1, 3) and name like 'scan-%'" --sort=-metrics.energy --limit 10
    found = ls_json(
        run_cli,
        repo,
        "--where",
        "params.seed in (1, 3) and name like 'scan-%'",
        "--sort=-metrics.energy",
        "--limit",
        "10",
    )
    assert [r["name"] for r in found] == ["scan-100", "scan-200", "scan-400"]
    assert set(found[0]) >= {
        "id",
        "name",
        "status",
        "command",
        "started",
        "finished",
        "duration_s",
        "params",
        "metrics",
        "tags",
        "env",
        "code",
        "commit",
    }
    assert found[0]["params"] == {"temp": 100.0, "seed": 1, "steps": 100}

    # $ gittrack ls --columns id,params.temp,metrics.energy --format csv > table.csv
    result = run_cli(repo, "ls", "--columns", "id,params.temp,metrics.energy", "--format", "csv")
    table = list(csv.reader(io.StringIO(result.output)))
    assert table[0] == ["id", "params.temp", "metrics.energy"]
    assert table[1] == [runs["scan-400"]["id"], "400.0", str(runs["scan-400"]["metrics"]["energy"])]
    assert [r[1] for r in table[1:]] == ["400.0", "250.0", "300.0", "200.0", "100.0"]
    assert table[2][2] == ""  # the failed run has no energy

    # $ gittrack diff 3f2a 9c1e
    a, b = runs["scan-200"]["id"], runs["scan-400"]["id"]
    result = run_cli(repo, "diff", a[:6], b[:6])
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[:2] == [f"a {a[:8]}  scan-200  completed", f"b {b[:8]}  scan-400  completed"]
    assert "params:" in out and "  temp  200.0  ->  400.0" in out
    assert "  seed" not in result.output  # equal values are not shown
    assert any(line.startswith("  energy  -1.333333") and "->  -2.857" in line for line in out)
    assert '-    return {"energy": -temp / 150.0, "steps_done": steps}' in out
    assert '+    return {"energy": -temp / 140.0, "steps_done": steps}' in out
    data = json.loads(run_cli(repo, "diff", a, b, "--json").output)
    assert {"key": "temp", "a": 200.0, "b": 400.0} in data["changes"]["params"]
    assert data["code"]["a"] != data["code"]["b"] and "-temp / 140.0" in data["code"]["diff"]

    # $ gittrack tag 3f2a reference ; gittrack ls --where "tags = 'reference'"
    result = run_cli(repo, "tag", b[:4], "reference")
    assert result.output == f"Run {b[:8]} tags: reference\n"
    assert [r["name"] for r in ls_json(run_cli, repo, "--where", "tags = 'reference'")] == [
        "scan-400"
    ]
    result = run_cli(repo, "ls", "--where", "tags = 'reference'")
    assert result.output.splitlines()[0].split()[-1] == "tags" and "reference" in result.output
    assert git(repo, "notes", "--ref=gittrack", "list").split()[1] == runs["scan-400"]["commit"]
    assert "  tags:        reference" in run_cli(repo, "show", b[:6]).output.splitlines()
    assert run_cli(repo, "note", "scan-400", "best so far").output == f"Run {b[:8]} note set.\n"
    assert ls_json(run_cli, repo, "--where", "tags = 'reference'")[0]["note"] == "best so far"
    assert run_cli(repo, "untag", "scan-400", "reference").output == f"Run {b[:8]} tags: (none)\n"
    assert ls_json(run_cli, repo, "--where", "tags = 'reference'") == []

    # table = gittrack.runs(where="params.temp >= 200"); df = table.to_pandas()
    assert [r.name for r in gittrack.runs(sort="-metrics.energy", limit=2, repo=repo)] == [
        "scan-100",
        "scan-200",
    ]
    table_ = gittrack.runs(where="params.temp >= 200", repo=repo)
    assert len(table_) == 4 and table_.get("scan-300").params["temp"] == 300.0
    df = table_.to_pandas()
    assert next(iter(df["id"])) == b and {"status", "params.temp", "metrics.energy"} <= set(
        df.columns
    )


def test_default_table_shows_what_varies_and_fits(
    repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runs(repo, scan(6))
    monkeypatch.setenv("COLUMNS", "200")
    lines = run_cli(repo, "ls", "--limit", "4").output.splitlines()
    # method and steps_done are equal everywhere: hidden; limit says how many exist
    assert lines[0].split() == [
        "id",
        "name",
        "status",
        "temp",
        "seed",
        "energy",
        "started",
        "duration_s",
    ]
    assert lines[-1] == "4 of 6 runs (more match: raise --limit)"
    lines = run_cli(
        repo, "ls", "--where", "status = 'completed'", "--limit", "2"
    ).output.splitlines()
    assert lines[-1] == "2 of 6 runs (more match: raise --limit)"
    lines = run_cli(repo, "ls").output.splitlines()  # not a terminal: every column
    assert (
        lines[0].split()[-4:] == ["energy", "started", "duration_s", "tags"]
        and lines[-1] == "6 of 6 runs"
    )
    monkeypatch.setenv("COLUMNS", "60")  # on a terminal the table fits its width
    listing = list_runs(store.find_repo(repo))
    lines = render_runs(listing, "table", fit=True).splitlines()
    assert all(len(line) <= 60 for line in lines[:-1])
    assert (
        lines[-1]
        == "6 of 6 runs; hidden: started, duration_s, tags (widen the terminal or --columns)"
    )
    markdown = run_cli(
        repo, "ls", "--format", "markdown", "--columns", "name,params.*", "--limit", "1"
    ).output
    assert markdown.splitlines() == [
        "| name | temp | seed | method |",
        "|---|---|---|---|",
        "| scan-5 | 600 | 1 | verlet |",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["ls", "--where", "params.temp >>> 2"],
            [
                "Error: Invalid query at position 14: expected a value (a number, 'text', true or false), found '>'.",
                "  params.temp >>> 2",
                "               ^",
            ],
        ),
        (
            ["ls", "--where", "(params.temp > 2"],
            [
                "Error: Invalid query at position 17: expected ')' to close the '(' at position 1, found the end of the query.",
                "  (params.temp > 2",
                "                  ^",
            ],
        ),
        (
            ["ls", "--where", "results.energy < 0"],
            [
                "Error: Invalid query at position 1: expected a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'results.energy'.",
                "  results.energy < 0",
                "  ^",
            ],
        ),
        (
            ["ls", "--sort", "energy"],
            [
                "Error: Invalid query at position 1: expected a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'energy' (did you mean params.energy or metrics.energy?).",
                "  energy",
                "  ^",
            ],
        ),
        (
            ["ls", "--columns", "id,temp"],
            [
                "Error: Unknown column 'temp'; use id, name, status, command, experiment, started, finished, duration_s, tags, note, commit, params.X, metrics.X or env.X (params.* for all params).",
            ],
        ),
        (["tag", "nope", "x"], ["Error: No run matches \"nope\". ('gittrack ls' lists runs.)"]),
        (
            ["tag", "scan-1", "a,b"],
            [
                "Error: Invalid tag 'a,b': a tag is a non-empty word without commas or newlines; quote it if it has spaces."
            ],
        ),
    ],
)
def test_bad_input_is_one_clear_error(
    repo: Path, run_cli, args: list[str], message: list[str]
) -> None:
    write_runs(repo, scan(2))
    result = run_cli(repo, *args)
    not_found = message[0].startswith("Error: No run matches")
    assert result.exit_code == (1 if not_found else 2)  # usage errors exit 2
    assert result.output.splitlines() == message
    assert "Traceback" not in result.output


def test_injection_is_a_syntax_error_and_the_index_is_intact(repo: Path, run_cli) -> None:
    write_runs(repo, scan(3))
    for query in [
        "params.temp > 1; DROP TABLE runs",
        "name = 'x'; DROP TABLE runs; --'",
        "name = 'x' or 1=1",
    ]:
        result = run_cli(repo, "ls", "--where", query)
        assert result.exit_code == 2 and result.output.startswith(
            "Error: Invalid query at position"
        )
    assert len(ls_json(run_cli, repo, "--where", "name = 'x''); DROP TABLE runs; --'")) == 0
    index = Index(store.find_repo(repo))
    assert index.count() == 3 and {
        t for (t,) in index.db.execute("SELECT name FROM sqlite_master")
    } >= {"runs", "run_fields", "records", "kv", "tags"}


def test_deleted_index_is_rebuilt_silently(repo: Path, run_cli) -> None:
    write_runs(repo, scan(3))
    assert len(ls_json(run_cli, repo)) == 3
    (store.find_repo(repo).state_dir / "index.sqlite").unlink()
    result = run_cli(
        repo, "ls", "--where", "params.temp >= 200", "--format", "csv", "--columns", "name"
    )
    assert result.output == "name\nscan-2\nscan-1\n"


def test_help_has_examples(repo: Path, run_cli) -> None:
    for command in ("ls", "diff", "tag", "untag", "note"):
        result = run_cli(repo, command, "--help")
        assert result.exit_code == 0 and "Example:" in result.output


def test_diff_lists_what_differs_by_section(repo: Path, run_cli) -> None:
    from gittrack.library.diff import code_diff
    from gittrack.model.record import Code, Output

    first = git(repo, "rev-parse", "HEAD")
    write_script(repo, "sim.py", "print('changed')\n")
    second = git(repo, "rev-parse", "HEAD")
    write_runs(
        repo,
        [
            {
                "name": "a",
                "params": {"temp": 1, "dt": 0.1},
                "metrics": {"e": 1.0},
                "env": {"host": "n1"},
                "outputs": {"traj": Output(path="traj.npy", md5="a" * 32, size=1200)},
                "code": Code(commit=first, script="sim.py"),
            },
            {
                "name": "b",
                "params": {"temp": 2, "dt": 0.1},
                "metrics": {"e": 1.0, "f": 2},
                "env": {"host": "n2"},
                "outputs": {"traj": Output(path="traj.npy", md5="b" * 32, size=1200)},
                "code": Code(commit=second, script="sim.py"),
            },
        ],
    )
    result = run_cli(repo, "diff", "a", "b", "--no-color")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2:16] == [
        "run:",
        "  name        a  ->  b",
        "  duration_s  60.0  ->  61.0",
        "params:",
        "  temp  1  ->  2",
        "metrics:",
        "  f  (none)  ->  2",
        "env:",
        "  host  n1  ->  n2",
        "outputs:",
        "  traj  md5 aaaaaaaaaaaa (1.2 KB)  ->  md5 bbbbbbbbbbbb (1.2 KB)",
        f"code: {first[:10]} -> {second[:10]}",
        "diff --git a/sim.py b/sim.py",
        f"index {git(repo, 'rev-parse', first + ':sim.py')[:7]}..{git(repo, 'rev-parse', second + ':sim.py')[:7]} 100644",
    ]
    assert "+print('changed')" in result.output
    assert "no code" not in run_cli(repo, "diff", "a", "b", "--no-code").output
    assert "diff --git" not in run_cli(repo, "diff", "a", "b", "--no-code").output
    same = run_cli(repo, "diff", "a", "a").output.splitlines()
    assert same[2] == "The runs do not differ in fields, params, metrics, env, outputs or code."
    r = store.find_repo(repo)
    assert code_diff(r, first, "1" * 40) == (
        "",
        "code commit 1111111111 is not in this repository (fetch it with 'gittrack pull')",
    )


def test_misspelt_keys_get_a_hint(tracked_repo: Path, run_cli) -> None:
    assert run_cli(tracked_repo, "run", "sim.py", "--temp", "3").exit_code == 0
    result = run_cli(tracked_repo, "ls", "--where", "params.tmep > 2", "--sort=-metrics.enrgy")
    assert result.exit_code == 0
    assert result.stdout.strip().endswith("0 of 1 runs")
    assert result.stderr.splitlines() == [
        "Warning: no run has params.tmep (did you mean params.temp?)",
        "Warning: no run has metrics.enrgy (did you mean metrics.energy?)",
    ]


WAITING = """\
import pathlib
import time

import click
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    pathlib.Path("started").write_text("")
    while not pathlib.Path("release").exists():
        time.sleep(0.05)
    return {"energy": -temp}


if __name__ == "__main__":
    main()
"""


def test_a_query_finds_the_runs_that_are_running(tracked_repo: Path, run_cli) -> None:
    """A running run is in no index yet: `--where` and `--sort` still see it, as `ls` does."""
    import subprocess
    import sys
    import time

    write_script(tracked_repo, "wait.py", WAITING)
    (tracked_repo / "release").write_text("")
    assert run_cli(tracked_repo, "run", "wait.py", "--temp", "2").exit_code == 0  # completed
    (tracked_repo / "release").unlink()
    (tracked_repo / "started").unlink()
    proc = subprocess.Popen([sys.executable, "wait.py", "--temp", "9"], cwd=tracked_repo)
    try:
        deadline = time.monotonic() + 60
        while not (tracked_repo / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        running = ls_json(run_cli, tracked_repo, "--where", "status = 'running'")
        assert [(r["status"], r["params"]["temp"]) for r in running] == [("running", 9.0)]
        assert [
            r["params"]["temp"]
            for r in ls_json(run_cli, tracked_repo, "--where", "params.temp > 1")
        ] == [9.0, 2.0]
        assert (
            ls_json(run_cli, tracked_repo, "--where", "params.temp = 2")[0]["status"] == "completed"
        )
        assert len(ls_json(run_cli, tracked_repo, "--where", "params.temp = 2")) == 1
        shown = run_cli(tracked_repo, "ls", "--where", "status = 'running'")
        assert "running" in shown.stdout and "1 of" in shown.stdout, shown.output
    finally:
        (tracked_repo / "release").write_text("")
        proc.wait(timeout=60)
    assert ls_json(run_cli, tracked_repo, "--where", "status = 'running'") == []
