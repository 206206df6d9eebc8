"""Storage stays small: loose objects are packed by a detached `git gc --auto` (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_fsck_clean_and_listed


def _loose(repo: Path) -> int:
    objects = repo / ".git" / "objects"
    return sum(1 for d in objects.iterdir() if len(d.name) == 2 and d.is_dir() for _ in d.iterdir())


def test_loose_objects_are_packed_after_runs(
    tracked_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITTRACK_GC_LOOSE", "1")  # pack as soon as any loose object is seen
    for seed in range(3):
        done = subprocess.run(
            [sys.executable, "sim.py", "--steps", str(seed)], cwd=tracked_repo, capture_output=True
        )
        assert done.returncode == 0, done.stderr
    packs = tracked_repo / ".git" / "objects" / "pack"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if list(packs.glob("*.pack")) and not (tracked_repo / ".git" / "gc.pid").exists():
            break
        time.sleep(0.2)
    assert list(packs.glob("*.pack")), "no pack was written"
    time.sleep(0.5)
    assert_fsck_clean_and_listed(tracked_repo, 3)
    assert _loose(tracked_repo) < 20
