"""Overhead of `gittrack exec` against the bare command: LAMMPS on the tests' melt deck, and `true`.

Medians over interleaved repetitions in one repository; every tracked run uses --force (a new
run each time, no reuse) and keeps the engine's outputs through DVC. The engine's identity
(sha256, `-h` probe, dpkg) is cached after the first run, as it is for users.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DECK = HERE.parent / "tests" / "engine" / "in.melt"
ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "OMPI_MCA_pml": "ob1",  # MPI starts in ~0.2 s instead of ~0.5 s on one node
    "OMPI_MCA_btl": "self",
    "PYTHONPATH": str(HERE.parent),
}
GITTRACK = [sys.executable, "-m", "gittrack"]
sys.path.insert(0, str(HERE))
from common import timed_cpu  # noqa: E402


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=ENV)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    return timed_cpu(cmd, cwd, ENV)


def main(quick: bool = False) -> list[dict[str, object]]:
    if shutil.which("lmp") is None:
        print("LAMMPS (lmp) is not installed: `make test` installs it. Skipped.")
        return []
    reps = 3 if quick else 9
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="gittrack-bench-exec-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q")
        git(repo, "config", "user.name", "Bench")
        git(repo, "config", "user.email", "bench@example.org")
        shutil.copy(DECK, repo / "in.melt")
        git(repo, "add", "in.melt")
        git(repo, "commit", "-qm", "deck")
        subprocess.run([*GITTRACK, "init"], cwd=repo, check=True, capture_output=True, env=ENV)
        bare_dir = Path(tmp) / "bare"
        bare_dir.mkdir()
        cases = {
            "lmp melt, 100 steps": [
                *["lmp", "-in", str(repo / "in.melt")],
                *["-var", "T", "1.5", "-var", "N", "100"],
            ],
            "true": ["true"],
        }
        startup = [sys.executable, "-c", "import gittrack.cli"]  # the interpreter and CLI
        for label, bare in cases.items():
            tracked = [*GITTRACK, "exec", "--force", "--", *bare]
            timed(tracked, repo)  # first run: identity probed and cached, as for any user
            samples: dict[str, list[tuple[float, float]]] = {"bare": [], "exec": [], "cli": []}
            for _ in range(reps):
                samples["bare"].append(timed(bare, bare_dir))
                samples["exec"].append(timed(tracked, repo))
                samples["cli"].append(timed(startup, repo))
            wall = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
            cpu = {k: statistics.median(c for _, c in v) for k, v in samples.items()}
            rows.append({"command": label, "wall": wall, "cpu": cpu})
    load = os.getloadavg()[0]
    print(
        f"gittrack exec against the bare command (median of {reps}, interleaved; "
        f"load average {load:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"{'command':>20} {'bare':>8} {'exec':>8} {'overhead':>9} {'cpu overhead':>13} "
        f"{'of it: python + import':>23}"
    )
    for r in rows:
        w, c = r["wall"], r["cpu"]
        assert isinstance(w, dict) and isinstance(c, dict)
        print(
            f"{r['command']:>20} {w['bare'] * 1000:>6.0f}ms {w['exec'] * 1000:>6.0f}ms "
            f"{(w['exec'] - w['bare']) * 1000:>7.0f}ms {(c['exec'] - c['bare']) * 1000:>11.0f}ms "
            f"{w['cli'] * 1000:>21.0f}ms"
        )
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
