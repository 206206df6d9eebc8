"""Building run histories fast for the lookup-table tests: records written through store."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

from gittrack import store
from gittrack.model.record import Code, RunRecord
from gittrack.store import project

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def write_runs(path: Path, specs: list[dict[str, Any]]) -> list[str]:
    """Write one run commit per spec (RunRecord fields; `i` orders start times); returns ids."""
    repo = store.find_repo(path)
    project.init(repo)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True
    ).stdout.strip()
    ids = []
    for i, spec in enumerate(specs):
        spec = dict(spec)
        run_id = spec.pop("id", f"{i:04x}" + "0a1b2c3d" * 3 + "beef")
        fields: dict[str, Any] = {
            "command": "sim.py",
            "status": "completed",
            "started": T0 + dt.timedelta(hours=i),
            "finished": T0 + dt.timedelta(hours=i, minutes=1),
            "duration_s": 60.0 + i,
            "code": Code(commit=head, script="sim.py"),
            "env": {"python": "3.11", "host": "node1"},
        }
        fields.update(spec)
        store.write_run(repo, RunRecord(id=run_id, **fields), {})
        ids.append(run_id)
    repo.close()
    return ids


def scan(n: int = 12) -> list[dict[str, Any]]:
    """A temperature scan: temp 100..(n*100), seeds 0-3, energy falling with temp, some failed."""
    return [
        {
            "name": f"scan-{i}",
            "status": "failed" if i % 5 == 4 else "completed",
            "params": {"temp": 100 * (i + 1), "seed": i % 4, "method": "verlet"},
            "metrics": {"energy": round(-0.2 * i, 3), "steps_done": 1000},
            "tags": ["baseline"] if i == 0 else [],
        }
        for i in range(n)
    ]


def with_other_ids(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same specs with ids that `write_runs`' defaults never give (a later batch of runs)."""
    return [spec | {"id": f"{i:04x}" + "5e5e" * 6 + "cafe"} for i, spec in enumerate(specs)]


def die_holding_the_index(path: Path) -> Path:
    """Sync the index of the repository at `path` in a process that writes to it once more and
    dies without closing it, its pages left in the -wal; the index file's path."""
    died = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from gittrack import store; from gittrack.index.db import Index;"
            " ix = Index(store.find_repo(sys.argv[1])); ix.sync();"
            " ix.db.execute('UPDATE run_fields SET name = name'); os._exit(0)",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    assert died.returncode == 0, died.stderr
    index = store.find_repo(path).state_dir / "index.sqlite"
    assert Path(f"{index}-wal").stat().st_size > 0
    return index
