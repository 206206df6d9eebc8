"""A run.toml over the size a record may hold (MAX_RECORD_BYTES) costs only itself: listed as
unreadable with one line saying why, never read into memory whole, every other run as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from gittrack import store
from gittrack.cli import cli
from gittrack.model.record import run_folder

HOSTILE = "ab" * 16
LIMIT_MIB = 16  # MAX_RECORD_BYTES, as docs/storage-format.md says
SIZE = 200 * 2**20
# the run's own view of memory: a record read whole would add its 200 MiB (and parsed, more)
# (VmHWM: the peak of this process since it started; ru_maxrss would count the test's own)
PEAK = """
import json, sys
from click.testing import CliRunner
from gittrack.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
print(json.dumps({"exit": result.exit_code, "stdout": result.stdout, "stderr": result.stderr,
                  "peak": peak}))
"""


def _hostile_record(repo: Path) -> None:
    """Commit a valid but 200 MiB run.toml (a 200 MiB note), as a collaborator's push could."""
    r = store.find_repo(repo)
    text = f'schema = 2\nid = "{HOSTILE}"\nstatus = "completed"\nnote = "'.encode()
    text += b"x" * (SIZE - len(text) - 2) + b'"\n'
    writer = store.ObjectWriter(r)
    edits = store.write_blobs(writer, {f"{run_folder(HOSTILE)}/run.toml": text})
    writer.sync()
    store.commit_to_branch(r, f"run {HOSTILE[:8]}: crafted\n\nRun-Id: {HOSTILE}\n", edits)


def _in_process(repo: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_a_run_toml_over_the_limit_costs_only_itself(tracked_repo: Path) -> None:
    for temp in ("1", "2"):
        ran = CliRunner().invoke(cli, ["-C", str(tracked_repo), "run", "sim.py", "--temp", temp])
        assert ran.exit_code == 0, ran.output
    _hostile_record(tracked_repo)
    reason = f"run.toml is 200.0 MiB, over the {LIMIT_MIB} MiB a record may hold (it was not read)"

    listed = _in_process(tracked_repo, "ls", "--json")
    assert listed["exit"] == 0, listed["stderr"]
    rows = json.loads(listed["stdout"])
    assert sorted(r["params"]["temp"] for r in rows) == [1.0, 2.0]
    assert listed["stderr"] == f"Warning: run {HOSTILE[:8]} is unreadable ({reason}); skipped\n"
    assert listed["peak"] < SIZE / 2  # the record was never held whole

    shown = _in_process(tracked_repo, "show", HOSTILE[:8])
    assert shown["peak"] < SIZE / 2
    assert shown["exit"] == 1
    assert shown["stderr"] == f"Error: The record of run {HOSTILE[:8]} is unreadable: {reason}.\n"

    # the Python API's readers (a Run's record, a RunSet's records) say so as a RecordError
    repo = store.find_repo(tracked_repo)
    import gittrack

    try:
        gittrack.Run(HOSTILE, repo=tracked_repo).record  # noqa: B018
    except gittrack.RecordError as exc:
        assert exc.reason == reason
    else:
        raise AssertionError("a record over the limit was read")
    assert store.has_record(repo, HOSTILE)


PARALLEL_PEAK = """
import json, sys
from gittrack.index import build
build.PARALLEL_MIN_RUNS = 0  # decoded in worker processes, as a big history's first build
from click.testing import CliRunner
from gittrack.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "stdout": result.stdout, "stderr": result.stderr}))
"""


def test_a_first_build_in_worker_processes_passes_over_it_too(tracked_repo: Path) -> None:
    import os

    ran = CliRunner().invoke(cli, ["-C", str(tracked_repo), "run", "sim.py", "--temp", "3"])
    assert ran.exit_code == 0, ran.output
    _hostile_record(tracked_repo)
    (tracked_repo / ".git" / "gittrack" / "index.sqlite").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", PARALLEL_PEAK, "-C", str(tracked_repo), "ls", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "GITTRACK_INDEX_WORKERS": "2"},
        check=True,
    )
    listed = json.loads(done.stdout)
    assert listed["exit"] == 0, listed["stderr"]
    assert [r["params"]["temp"] for r in json.loads(listed["stdout"])] == [3.0]
    reason = f"run.toml is 200.0 MiB, over the {LIMIT_MIB} MiB a record may hold (it was not read)"
    assert listed["stderr"] == f"Warning: run {HOSTILE[:8]} is unreadable ({reason}); skipped\n"


def test_a_git_note_over_the_limit_is_passed_over(tracked_repo: Path) -> None:
    """Notes arrive from collaborators (`gittrack pull`): a huge one (damaged or hostile) is not
    read into the lookup table; the run's other notes and every listing are unaffected."""
    import os

    ran = CliRunner().invoke(cli, ["-C", str(tracked_repo), "run", "sim.py", "--temp", "5"])
    assert ran.exit_code == 0, ran.output
    tagged = CliRunner().invoke(cli, ["-C", str(tracked_repo), "tag", "latest", "fine"])
    assert tagged.exit_code == 0, tagged.output
    other = CliRunner().invoke(cli, ["-C", str(tracked_repo), "run", "sim.py", "--temp", "6"])
    assert other.exit_code == 0, other.output
    commit = subprocess.run(
        ["git", "rev-parse", "gittrack/runs"], cwd=tracked_repo, capture_output=True, text=True
    ).stdout.strip()
    huge = tracked_repo.parent / "huge-note"
    huge.write_bytes(b"tag: spam\n" + b"x" * (40 * 2**20))  # over the 1 MiB a note may hold
    subprocess.run(
        ["git", "notes", "--ref", "gittrack", "add", "-f", "-F", str(huge), commit],
        cwd=tracked_repo,
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_NOTES_DISPLAY_REF": ""},
    )
    listed = _in_process(tracked_repo, "ls", "--json")
    assert listed["exit"] == 0, listed["stderr"]
    rows = {r["params"]["temp"]: r for r in json.loads(listed["stdout"])}
    assert rows[5.0]["tags"] == ["fine"] and "spam" not in rows[6.0].get("tags", [])
    assert listed["peak"] < 40 * 2**20  # the note was never held whole


def test_a_note_too_long_to_keep_is_refused_in_one_sentence(tracked_repo: Path) -> None:
    ran = CliRunner().invoke(cli, ["-C", str(tracked_repo), "run", "sim.py"])
    assert ran.exit_code == 0, ran.output
    text = "x" * (2 * 2**20)
    result = CliRunner().invoke(cli, ["-C", str(tracked_repo), "note", "latest", text])
    assert result.exit_code == 2, result.output  # a usage error, as click says them
    assert "over the 1 MiB a run's note may hold; shorten it" in result.output
    assert "Traceback" not in result.output
