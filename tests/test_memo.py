"""Memoisation lookups through memo files: no index on the hot path, stale files only miss."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import branch_log, run_python


def test_reuse_survives_index_loss_and_misses_after_rm(tracked_repo: Path, run_cli) -> None:
    first = run_cli(tracked_repo, "run", "sim.py", "--temp", "3")
    assert "recorded (completed" in first.output
    run_id = json.loads(run_cli(tracked_repo, "show", "latest", "--json").output)["id"]
    memo_dir = tracked_repo / ".git" / "gittrack" / "memo"
    assert [p.read_text().split()[1] for p in memo_dir.iterdir()] == [run_id]

    again = run_python(tracked_repo, "sim.py", "--temp", "3")
    assert f"run {run_id[:8]} reused" in again.stderr
    assert len(branch_log(tracked_repo)) == 2

    # local state is rebuilt from the branch: without memo files and index, reuse still works
    for path in memo_dir.iterdir():
        path.unlink()
    memo_dir.rmdir()
    (tracked_repo / ".git" / "gittrack" / "index.sqlite").unlink()
    rebuilt = run_python(tracked_repo, "sim.py", "--temp", "3")
    assert f"run {run_id[:8]} reused" in rebuilt.stderr

    assert run_cli(tracked_repo, "rm", run_id[:8]).exit_code == 0
    fresh = run_python(tracked_repo, "sim.py", "--temp", "3")
    assert "recorded (completed" in fresh.stderr
    rows = json.loads(run_cli(tracked_repo, "ls", "--json").output)
    assert [r["params"]["temp"] for r in rows] == [3.0] and rows[0]["id"] != run_id


def test_memoize_false_records_every_run_and_bad_outputs_warn(tracked_repo: Path) -> None:
    from conftest import write_script

    write_script(
        tracked_repo,
        "noisy.py",
        """
        import random, click, gittrack

        @gittrack.command(memoize=False)
        @click.option("--n", type=int, default=3)
        def main(n):
            return {"sample": random.random(), "odd": {1, 2}}

        if __name__ == "__main__":
            main()
    """,
    )
    for _ in range(2):
        proc = run_python(tracked_repo, "noisy.py")
        assert "recorded (completed" in proc.stderr
        assert "Warning: output 'odd' was not stored: " in proc.stderr
    assert len(branch_log(tracked_repo)) == 3
