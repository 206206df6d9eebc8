"""Terminal habits: readable ls and show, pager, quiet/verbose, completion, verbs, config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import git, write_script
from lookup_support import write_runs

from gittrack import store
from gittrack.cli.table import render_runs
from gittrack.library.listing import list_runs


def two_commands() -> list[dict[str, Any]]:
    """Six sims of a temperature sweep, then two analyses each reading all six (a RunRef list)."""
    sims: list[dict[str, Any]] = [
        {
            "id": f"{i:04x}" + "5151" * 6 + "aaaa",
            "name": f"sweep-{i}",
            "params": {"temp": 100 * (i + 1), "seed": i % 2, "steps": 10_000, "dt": 0.001},
            "metrics": {"energy": -0.5 * i - 0.25, "steps_done": 10_000},
            "env": {"python": "3.11", "host": f"node{i}"},
        }
        for i in range(6)
    ]
    ids = [s["id"] for s in sims]
    analyses: list[dict[str, Any]] = [
        {
            "command": "analysis.py:summarise",
            "name": f"summary-{j}",
            "params": {"sims": ids[: 3 + 3 * j], "bins": [1, 2, 3], "method": f"hist{j}"},
            "metrics": {"mean_energy": -1.25 - j},
            "env": {"python": "3.11", "host": "node9"},
        }
        for j in range(2)
    ]
    return sims + analyses


def test_ls_with_several_commands_is_readable(
    repo: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_runs(repo, two_commands())
    monkeypatch.setenv("COLUMNS", "120")
    listing = list_runs(store.find_repo(repo))
    lines = render_runs(listing, "table", fit=True).splitlines()
    header = lines[0].split()
    assert header[:4] == ["id", "name", "command", "status"]
    # the swept param and a metric come before the run-id list and survive 120 columns
    assert {"temp", "energy"} <= set(header)
    assert all(len(line) <= 120 for line in lines[:-1])
    summary = next(line for line in lines if "summary-1" in line)
    assert "analysis.py:summarise" in summary and "6 runs" in summary
    assert "[3 items]" in summary or "bins" not in header
    assert "5151" not in summary  # no 32-character ids
    footer = lines[-1]
    assert footer.startswith("8 of 8 runs; hidden: ")
    assert "(widen the terminal or --columns)" in footer and "columns hidden" not in footer
    hidden = footer.split("hidden: ", 1)[1].split(" (", 1)[0].split(", ")
    assert hidden and all(
        h.startswith(("params.", "metrics.", "started", "duration")) for h in hidden
    )
    # one command's table: only its runs, no command column, its params
    result = run_cli(repo, "ls", "--command", "sim.py")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0].split()[:3] == ["id", "name", "status"] and "temp" in out[0].split()
    assert "summary" not in result.output and out[-1] == "6 of 8 runs"
    result = run_cli(repo, "ls", "--command", "analysis.py")
    assert "summary-0" in result.output and "sweep-0" not in result.output


WRITER = """\
import click
import gittrack


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
def main(temp):
    for step in range(40):
        print(f"step {step} at {temp}")
    gittrack.save("blob", b"x" * 3 * 1024 * 1024)
    return {"energy": -temp}
"""

READER = """\
import click
import gittrack


@gittrack.command()
@click.option("--sims", type=gittrack.RunRef(multiple=True))
def summarise(sims):
    print("read", len(sims))
    return {"n": len(sims)}
"""


def test_show_is_readable(tracked_repo: Path, run_cli) -> None:
    write_script(tracked_repo, "writer.py", WRITER)
    write_script(tracked_repo, "reader.py", READER)
    for temp in (1, 2):
        result = run_cli(
            tracked_repo, "run", "--name", f"hot-{temp}", "writer.py", "--temp", str(temp)
        )
        assert result.exit_code == 0, result.output
    assert run_cli(tracked_repo, "run", "reader.py", "--sims", "hot-1,hot-2").exit_code == 0
    rows = json.loads(run_cli(tracked_repo, "ls", "--format", "json").output)
    by_name = {r.get("name") or "reader": r for r in rows}
    out = run_cli(tracked_repo, "show", "latest").output
    lines = out.splitlines()
    hot1, hot2 = by_name["hot-1"]["id"][:8], by_name["hot-2"]["id"][:8]
    # params holding run ids: a count and short ids, no 32-character ids anywhere
    assert any(line.split() == ["sims:", "2", "runs:", f"{hot1},", hot2] for line in lines), out
    assert by_name["hot-1"]["id"] not in out
    # inputs under a header, with the input runs' names and short ids
    head = lines.index("inputs:")
    assert lines[head + 1].split()[:2] == [hot1, "hot-1"] and "writer.py" in lines[head + 1]
    assert lines[head + 2].split()[:2] == [hot2, "hot-2"]
    # the tail of the logs
    assert "stdout (last lines):" in lines and "  read 2" in lines
    out = run_cli(tracked_repo, "show", "hot-2").output
    lines = out.splitlines()
    blob = next(line for line in lines if line.strip().startswith("blob"))
    assert "3.0 MiB" in blob and "3145728" not in out
    folder = tracked_repo / ".gittrack" / "outputs" / by_name["hot-2"]["id"]
    assert f"outputs (in {folder}):" in lines
    assert "  step 39 at 2.0" in lines and "  step 20 at 2.0" not in lines  # only the tail


def _on_a_terminal(
    repo: Path, args: list[str], env: dict[str, str], stderr_too: bool = False
) -> str:
    """Run the CLI with stdout (and stderr) on a pseudo-terminal of 10 lines; what it showed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 100, 0, 0))  # rows, cols
    full = {
        **os.environ,
        "LINES": "10",
        "COLUMNS": "100",
        "PYTHONPATH": str(Path(__file__).parents[1]),
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "-C", str(repo), *args],
        stdin=child_fd,  # click pages only when stdin is a terminal too
        stdout=child_fd,
        stderr=child_fd if stderr_too else subprocess.PIPE,
        env=full,
    )
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    shown = b"".join(chunks).decode("utf-8", "replace")
    assert proc.wait(timeout=60) == 0, (proc.stderr.read() if proc.stderr else b"", shown)
    os.close(main_fd)
    return shown


def test_long_output_on_a_terminal_goes_through_the_pager(repo: Path, tmp_path: Path) -> None:
    write_runs(repo, two_commands() * 1)
    paged = tmp_path / "paged.txt"
    pager = f"{sys.executable} -c \"import sys; open({str(paged)!r}, 'w').write(sys.stdin.read())\""
    shown = _on_a_terminal(repo, ["ls"], {"GITTRACK_PAGER": pager, "PAGER": "false"})
    assert "sweep-3" in paged.read_text() and "sweep-3" not in shown
    paged.unlink()
    shown = _on_a_terminal(repo, ["--no-pager", "ls"], {"GITTRACK_PAGER": pager})
    assert "sweep-3" in shown and not paged.exists()
    # short output, and output that is not a terminal, are printed as they are
    shown = _on_a_terminal(repo, ["ls", "--limit", "2"], {"GITTRACK_PAGER": pager})
    assert "summary-1" in shown and not paged.exists()


def test_quiet_and_verbose(tracked_repo: Path, run_cli) -> None:
    result = run_cli(tracked_repo, "-q", "run", "sim.py", "--temp", "2")
    assert result.exit_code == 0 and "recorded" not in result.stderr
    assert "simulating at 2.0" in result.stdout  # the simulation's own output is untouched
    result = run_cli(tracked_repo, "--verbose", "run", "sim.py", "--temp", "3")
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    recorded = next(i for i, line in enumerate(lines) if " recorded (completed" in line)
    short = lines[recorded].split()[1]
    assert lines[recorded + 1] == f"  see it: gittrack show {short}"
    result = run_cli(tracked_repo, "run", "sim.py", "--temp", "4")
    assert " recorded (completed" in result.stderr and "see it:" not in result.stderr


def _complete(repo: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of `words` (click's completion protocol)."""
    import os
    import subprocess

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parents[1]),
        "_GITTRACK_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "gittrack"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_run_arguments_complete_ids_and_names(repo: Path) -> None:
    ids = write_runs(repo, two_commands())
    offered = _complete(repo, "gittrack show sw")
    assert offered[:6] == [f"sweep-{i}" for i in range(5, -1, -1)]
    assert _complete(repo, f"gittrack diff {ids[5][:5]}") == [ids[5][:8]]
    assert "latest" in _complete(repo, "gittrack tag ")
    assert _complete(repo, "gittrack rm summary-") == ["summary-1", "summary-0"]
    docs = (Path(__file__).parents[1] / "docs" / "getting-started.md").read_text()
    assert 'eval "$(_GITTRACK_COMPLETE=bash_source gittrack)"' in docs


BIG = """\
import click
import gittrack


@gittrack.command()
def main():
    gittrack.save("big", b"\\x00" * (65 << 20))
"""


@pytest.mark.slow
def test_progress_bars_on_a_terminal(tracked_repo: Path, run_cli, tmp_path: Path) -> None:
    write_script(tracked_repo, "big.py", BIG)
    assert run_cli(tracked_repo, "run", "big.py").exit_code == 0
    assert run_cli(tracked_repo, "remote", "set", str(tmp_path / "elsewhere")).exit_code == 0
    shown = _on_a_terminal(tracked_repo, ["push"], {}, stderr_too=True)
    assert "pushing" in shown and "Pushed" in shown, repr(shown)
    # the first index build of a big history
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_index import append_runs

    append_runs(tracked_repo, 2100)
    (tracked_repo / ".git" / "gittrack" / "index.sqlite").unlink(missing_ok=True)
    shown = _on_a_terminal(tracked_repo, ["ls", "--limit", "1"], {}, stderr_too=True)
    assert "indexing runs" in shown and "1 of 2101 runs" in shown
    (tracked_repo / ".git" / "gittrack" / "index.sqlite").unlink()
    shown = _on_a_terminal(tracked_repo, ["-q", "ls", "--limit", "1"], {}, stderr_too=True)
    assert "indexing runs" not in shown


def test_filter_by_code_version_and_remove_by_query(tracked_repo: Path, run_cli) -> None:
    for temp in (1, 2):
        assert run_cli(tracked_repo, "run", "sim.py", "--temp", str(temp)).exit_code == 0
    old = git(tracked_repo, "rev-parse", "HEAD")
    write_script(tracked_repo, "sim.py", (tracked_repo / "sim.py").read_text() + "\n# v2\n")
    for temp in (3, 4):
        assert run_cli(tracked_repo, "run", "sim.py", "--temp", str(temp)).exit_code == 0
    found = json.loads(
        run_cli(tracked_repo, "ls", "--where", f"code.commit = '{old[:7]}'", "--json").output
    )
    assert sorted(r["params"]["temp"] for r in found) == [1.0, 2.0]
    newer = run_cli(tracked_repo, "ls", "--where", f"code.commit != '{old[:7]}'", "--json")
    assert sorted(r["params"]["temp"] for r in json.loads(newer.output)) == [3.0, 4.0]
    short = run_cli(tracked_repo, "ls", "--where", "code.commit = 'ab'")
    assert short.exit_code == 2 and "at least 4 hex digits" in short.output
    # rm --where: refused without a terminal unless --yes, then removes what matches
    query = f"code.commit = '{old[:7]}' and params.temp > 1"
    refused = run_cli(tracked_repo, "rm", "--where", query)
    assert refused.exit_code == 2 and "add --yes" in refused.output
    done = run_cli(tracked_repo, "rm", "--where", query, "--yes")
    assert done.exit_code == 0 and done.output.startswith("Removed 1 run(s)")
    left = json.loads(run_cli(tracked_repo, "ls", "--json").output)
    assert sorted(r["params"]["temp"] for r in left) == [1.0, 3.0, 4.0]


def test_project_settings_with_environment_overrides(
    repo: Path, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gittrack.store.config import settings

    assert settings(repo).memoize is True and settings(repo).remote is None
    (repo / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.gittrack]\n'
        f'remote = "{tmp_path / "lab-storage"}"\nmemoize = false\njobs = 3\n'
        'code = ["src/**/*.py"]\nsnapshot_max_bytes = 1000\n'
    )
    git(repo, "add", "pyproject.toml")
    git(repo, "commit", "-qm", "settings")
    got = settings(repo)
    assert (got.memoize, got.jobs, got.code, got.snapshot_max_bytes) == (
        False,
        3,
        ["src/**/*.py"],
        1000,
    )
    # gittrack init writes the project's remote; memoize = false records identical runs anew
    assert run_cli(repo, "init").exit_code == 0
    assert run_cli(repo, "remote", "show").output.strip() == str(tmp_path / "lab-storage")
    for _ in range(2):
        result = run_cli(repo, "run", "sim.py", "--temp", "5")
        assert result.exit_code == 0 and "reused" not in result.stderr
    monkeypatch.setenv("GITTRACK_MEMOIZE", "1")
    monkeypatch.setenv("GITTRACK_JOBS", "2")
    assert settings(repo).memoize is True and settings(repo).jobs == 2
    assert "reused" in run_cli(repo, "run", "sim.py", "--temp", "5").stderr
    # gittrack.toml wins over pyproject; a wrong type is one clear sentence
    (repo / "gittrack.toml").write_text("jobs = 0\n")
    monkeypatch.delenv("GITTRACK_JOBS")
    bad = run_cli(repo, "sweep", "sim.py", "--temp", "1,2")
    assert (
        bad.exit_code == 2 and "Setting 'jobs' in" in bad.output and "gittrack.toml" in bad.output
    )
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    import re as re_

    used = set(re_.findall(r"GITTRACK_[A-Z_]+", _sources()))
    assert used - {"GITTRACK_COMPLETE"} <= set(re_.findall(r"GITTRACK_[A-Z_]+", docs))
    for key in ("remote", "snapshot_max_bytes", "code", "memoize", "executor", "jobs"):
        assert f"`{key}`" in docs


def _sources() -> str:
    root = Path(__file__).parents[1] / "gittrack"
    return "\n".join(p.read_text() for p in root.rglob("*.py"))


def test_diff_a_run_against_the_working_tree(tracked_repo: Path, run_cli) -> None:
    assert run_cli(tracked_repo, "run", "--name", "base", "sim.py", "--temp", "1").exit_code == 0
    same = run_cli(tracked_repo, "diff", "base", "--worktree")
    assert same.exit_code == 0 and same.output.startswith("The working tree has the code of run")
    sim = tracked_repo / "sim.py"
    sim.write_text(sim.read_text().replace("temp * 2.0", "temp * 3.0"))  # not committed
    changed = run_cli(tracked_repo, "diff", "base", "--worktree", "--no-color")
    assert changed.exit_code == 0
    assert '-    return {"energy": temp * 2.0' in changed.output
    assert '+    return {"energy": temp * 3.0' in changed.output
    both = run_cli(tracked_repo, "diff", "base", "latest", "--worktree")
    assert both.exit_code == 2 and "drop B" in both.output


def test_ui_exports_the_filtered_runs_as_csv(repo: Path) -> None:
    import csv
    import io
    from html import unescape

    from starlette.testclient import TestClient

    from gittrack.ui import create_app

    write_runs(repo, two_commands())
    client = TestClient(create_app(repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get("/", params={"where": "params.temp >= 400"}).text
    link = unescape(page.split('id="csv-link" href="', 1)[1].split('"', 1)[0])
    assert link.startswith("/api/runs.csv?where=")
    response = client.get(link)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["params.temp"] for r in rows) == ["400", "500", "600"]
    assert {"id", "status", "metrics.energy"} <= set(rows[0])
    bad = client.get("/api/runs.csv", params={"where": "params.temp >>> 1"})
    assert bad.status_code == 400 and bad.text.startswith("Error: ")
