"""Recording with a large untracked data file in the repository: overhead unchanged, no growth.

Two repositories alike but for a 300 MB untracked file of random bytes in one. The same trivial
tracked script (and its untracked twin, the baseline) runs in both, interleaved: the overhead of
recording is the median of paired differences, tracked minus untracked, in each repository. A
dirty run (the script edited, so its code is snapshotted) is timed as well, and `.git` is
measured before and after.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_record import ENV, make_repo  # noqa: E402
from common import timed_cpu  # noqa: E402


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    return timed_cpu(cmd, cwd, ENV)


def git_size(repo: Path) -> int:
    """Bytes under .git without gittrack's local state (index database, caches)."""
    git_dir = repo / ".git"
    return sum(
        p.stat().st_size
        for p in git_dir.rglob("*")
        if p.is_file() and p.relative_to(git_dir).parts[0] != "gittrack"
    )


def write_random(path: Path, mib: int) -> None:
    with path.open("wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1 << 20))


def overheads(
    repos: dict[str, Path], reps: int, dirty: bool
) -> dict[str, tuple[list[float], list[float]]]:
    """Paired tracked-minus-untracked (wall, CPU) times per repository, interleaved."""
    py = sys.executable
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in repos}
    for repo in repos.values():  # warm-up: bytecode caches, packages listing, memo files
        timed([py, "tracked.py", "--x", "-2" if dirty else "-1"], repo)
        timed([py, "untracked.py", "--x", "-1"], repo)
    for i in range(reps):
        for name, repo in repos.items():
            if dirty:  # a new edit each time: the run's code differs from HEAD, and anew
                script = repo / "tracked.py"
                script.write_text(script.read_text() + f"# edit {i}\n")
            t, tc = timed([py, "tracked.py", "--x", str(i + (1000 if dirty else 0))], repo)
            u, uc = timed([py, "untracked.py", "--x", str(i)], repo)
            out[name][0].append(t - u)
            out[name][1].append(tc - uc)
    return out


def main(quick: bool = False) -> list[dict[str, object]]:
    reps = 5 if quick else 15
    mib = 30 if quick else 300
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        plain = make_repo(Path(tmp) / "a")
        data = make_repo(Path(tmp) / "b")
        write_random(data / "big.bin", mib)
        repos = {"without the file": plain, f"with {mib} MB untracked": data}
        before = {name: git_size(repo) for name, repo in repos.items()}
        for dirty in (False, True):
            found = overheads(repos, reps, dirty)
            for name, (wall, cpu) in found.items():
                rows.append(
                    {
                        "run": "dirty" if dirty else "clean",
                        "repo": name,
                        "wall_ms": statistics.median(wall) * 1000,
                        "cpu_ms": statistics.median(cpu) * 1000,
                    }
                )
        grown = {name: git_size(repo) - before[name] for name, repo in repos.items()}
    print(f"\nRecording overhead with a large untracked file (median of {reps} paired runs)")
    print(f"{'run':>6} {'repository':>24} {'wall':>9} {'CPU':>9} {'CPU ratio':>10}")
    base: dict[str, float] = {}
    for row in rows:
        wall, cpu = float(str(row["wall_ms"])), float(str(row["cpu_ms"]))
        ref = base.setdefault(str(row["run"]), cpu)
        ratio = cpu / ref if ref else float("nan")
        print(f"{row['run']:>6} {row['repo']:>24} {wall:>7.0f}ms {cpu:>7.0f}ms {ratio:>9.2f}x")
    for name, n in grown.items():
        print(f".git grew by {n / 1024:.0f} KiB over {2 * reps + 2} tracked runs {name}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
