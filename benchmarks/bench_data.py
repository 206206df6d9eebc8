"""A run returning a 1 GiB numpy array, timed as whole processes, paired in the same run.

Four ways of ending with the array hashed and copied to a local-folder remote, each timed from
process start to process exit (start-up, imports, building and writing the array included):

- untracked: `python plain.py` (click + numpy, `np.save` of the array to a file);
- untracked + `cp` + `md5sum`: the floor of keeping a copy and knowing its hash;
- untracked + `dvc add` + `dvc push`: what DVC users do today;
- tracked: `python sim.py`, the same command under `@gittrack.command()` returning the array.

Every round runs all four (in a rotating order) on fresh content; the ratios are per round,
then the median, printed with every round's ratio and a 95% confidence interval of the median
(distribution-free, from the order statistics of the per-round ratios), so a difference of a
few per cent can be told from the noise. Wall and CPU (user + sys of each process and its
children, from os.wait4) are printed, with the load average, because the machine may be shared.
Peak memory is the tracked process's max RSS minus the untracked one's (the simulation's own).

Each way starts after a pause (`--settle`, 6 s): on a virtual machine that hands freed memory
back to its host (free page reporting), touching a page again costs up to 20 times more than
touching a page still held, and whether the previous step's gigabytes were handed back yet
varied every step's cost by a second or more. After the pause they all have been, so each way
starts alike; the processes of one way follow each other at once, as in a shell.

    python benchmarks/bench_data.py              # 1 GiB, 9 rounds
    python benchmarks/bench_data.py --quick      # 100 MiB, 3 rounds
    python benchmarks/bench_data.py --rounds 15  # more rounds on a noisy machine
    python benchmarks/bench_data.py --settle 0   # no pause before each way
    python benchmarks/bench_data.py --before ../old --ways cp_md5sum,tracked  # fewer ways
    python benchmarks/bench_data.py --before ../old  # also the tracked run of another checkout
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent

SIM = """\
import click, numpy as np
{imports}

@{decorator}
@click.option("--mib", type=int)
@click.option("--seed", type=int)
@click.option("--out", default="")
def main(mib, seed, out):
    field = np.arange(mib << 17, dtype=np.float64)  # 8 bytes an element: `mib` MiB
    field += seed
    if out:
        np.save(out, field)
        return None
    return {{"field": field}}

if __name__ == "__main__":
    main()
"""
PLAIN = SIM.format(imports="", decorator="click.command()")
TRACKED = SIM.format(imports="import gittrack", decorator="gittrack.command()")


@dataclass
class Cost:
    """Wall and CPU seconds of one or more whole processes, and the largest max RSS."""

    wall: float = 0.0
    cpu: float = 0.0
    rss_mib: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu, max(self.rss_mib, other.rss_mib))


def _env(home: Path) -> dict[str, str]:
    """A clean environment; bytecode cached (in the temp folder) as in any installation."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **env,
        "PYTHONPYCACHEPREFIX": str(home / "pycache"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "DVC_NO_ANALYTICS": "1",
    }


def timed(args: Sequence[str], cwd: Path, env: dict[str, str]) -> Cost:
    """Run one process to its exit; its wall time, CPU time and max RSS (children included)."""
    os.sync()  # the previous step's dirty pages are not this one's cost
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{output.decode(errors='replace')}")
    return Cost(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _quiet(args: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


class Bench:
    """The repositories and remotes of one benchmark, set up once, cleaned after each step."""

    def __init__(self, tmp: Path, mib: int, before: Path | None = None) -> None:
        self.tmp, self.mib = tmp, mib
        self.env = _env(tmp / "home")
        self.py = sys.executable
        self.dvc = str(Path(sys.executable).parent / "dvc")
        self.plain = tmp / "plain"
        self.plain.mkdir()
        (self.plain / "plain.py").write_text(PLAIN)
        self.remote = tmp / "remote"
        self.gt = tmp / "gt"
        self.dv = tmp / "dvc"
        for repo in (self.gt, self.dv):
            repo.mkdir()
            _quiet(["git", "init", "-q", "-b", "main"], repo, self.env)
        (self.gt / "sim.py").write_text(TRACKED)
        (self.dv / "plain.py").write_text(PLAIN)
        for repo in (self.gt, self.dv):
            _quiet(["git", "add", "."], repo, self.env)
            _quiet(["git", "commit", "-qm", "sim"], repo, self.env)
        _quiet([self.py, "-m", "gittrack", "init"], self.gt, self.env)
        self.gt_remote = tmp / "gt-remote"
        _quiet([self.py, "-m", "gittrack", "remote", "set", str(self.gt_remote)], self.gt, self.env)
        _quiet([self.dvc, "init", "-q"], self.dv, self.env)
        _quiet(
            [self.dvc, "remote", "add", "-d", "storage", str(self.tmp / "dvc-remote")],
            self.dv,
            self.env,
        )
        _quiet(["git", "commit", "-qam", "dvc"], self.dv, self.env)
        self.seed = 0
        self.trackers = {"tracked": (self.gt, self.env, self.gt_remote)}
        if before is not None:  # the same run under another gittrack (e.g. before a change)
            env = {**self.env, "PYTHONPATH": str(before)}
            repo = tmp / "gt-before"
            shutil.copytree(self.gt, repo)
            shutil.rmtree(repo / ".git")
            for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "sim"]):
                _quiet(["git", *args], repo, env)
            _quiet([self.py, "-m", "gittrack", "init"], repo, env)
            remote = tmp / "gt-before-remote"
            _quiet([self.py, "-m", "gittrack", "remote", "set", str(remote)], repo, env)
            self.trackers["tracked_before"] = (repo, env, remote)

    def _args(self, out: str) -> list[str]:
        self.seed += 1
        return [self.py, "plain.py", "--mib", str(self.mib), "--seed", str(self.seed), "--out", out]

    def untracked(self) -> Cost:
        cost = timed(self._args("field.npy"), self.plain, self.env)
        (self.plain / "field.npy").unlink()
        return cost

    def cp_md5sum(self) -> Cost:
        self.remote.mkdir(exist_ok=True)
        cost = timed(self._args("field.npy"), self.plain, self.env)
        cost += timed(["cp", "field.npy", str(self.remote / "field.npy")], self.plain, self.env)
        cost += timed(["md5sum", "field.npy"], self.plain, self.env)
        (self.plain / "field.npy").unlink()
        shutil.rmtree(self.remote)
        return cost

    def dvc_add_push(self) -> Cost:
        cost = timed(self._args("field.npy"), self.dv, self.env)
        cost += timed([self.dvc, "add", "-q", "field.npy"], self.dv, self.env)
        cost += timed([self.dvc, "push", "-q"], self.dv, self.env)
        for path in ("field.npy", "field.npy.dvc", ".gitignore"):
            (self.dv / path).unlink(missing_ok=True)
        shutil.rmtree(self.dv / ".dvc" / "cache", ignore_errors=True)
        shutil.rmtree(self.tmp / "dvc-remote", ignore_errors=True)
        return cost

    def tracked(self, which: str = "tracked") -> Cost:
        repo, env, remote = self.trackers[which]
        self.seed += 1
        args = [self.py, "sim.py", "--mib", str(self.mib), "--seed", str(self.seed)]
        cost = timed(args, repo, env)
        log = ["git", "log", "-1", "--name-only", "--format=", "gittrack/runs"]
        toml = next(f for f in _quiet(log, repo, env).splitlines() if f.endswith("run.toml"))
        record = _quiet(["git", "show", "gittrack/runs:" + toml], repo, env)
        assert "pushed = true" in record, record
        shutil.rmtree(repo / ".gittrack" / "outputs")
        shutil.rmtree(repo / ".gittrack" / "cache" / "files", ignore_errors=True)
        shutil.rmtree(remote / "files", ignore_errors=True)
        return cost

    def tracked_before(self) -> Cost:
        return self.tracked("tracked_before")


METHODS = ("untracked", "cp_md5sum", "dvc_add_push", "tracked")
LABELS = {
    "untracked": "untracked script",
    "cp_md5sum": "untracked + cp + md5sum",
    "dvc_add_push": "untracked + dvc add + dvc push",
    "tracked": "tracked (gittrack)",
    "tracked_before": "tracked (--before gittrack)",
}


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage) of a distribution-free confidence interval of the median.

    The k-th smallest and k-th largest of n values bracket the median with probability
    1 - 2 P(Binomial(n, 1/2) < k); k is the largest giving at least `level`. Fewer than 6
    values cannot reach 95%: then (nan, nan, 0.0).
    """
    from math import comb

    ordered = sorted(values)
    n = len(ordered)
    best = (float("nan"), float("nan"), 0.0)
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(comb(n, i) for i in range(k)) / 2**n
        if coverage < level:
            break
        best = (ordered[k - 1], ordered[n - k], coverage)
    return best


def main(
    quick: bool = False,
    rounds: int = 0,
    before: Path | None = None,
    settle: float = 6.0,
    ways: Sequence[str] = METHODS,
) -> dict[str, float]:
    """Run the paired rounds and print the table; returns the medians and ratios."""
    mib = 100 if quick else 1024
    rounds = rounds or (3 if quick else 9)
    methods = tuple(m for m in METHODS if m in ways) + (("tracked_before",) if before else ())
    costs: dict[str, list[Cost]] = {m: [] for m in methods}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gittrack-bench-data-") as name:
        bench = Bench(Path(name), 1, before)
        for method in methods:  # warm up: bytecode caches, the OS's file cache of modules
            getattr(bench, method)()
        bench.mib = mib
        for r in range(rounds):
            order = methods[r % len(methods) :] + methods[: r % len(methods)]
            for method in order:
                os.sync()
                time.sleep(settle)
                costs[method].append(getattr(bench, method)())
    load_end = os.getloadavg()
    med = {
        m: Cost(
            *(
                statistics.median(getattr(c, f) for c in costs[m])
                for f in ("wall", "cpu", "rss_mib")
            )
        )
        for m in methods
    }
    print(
        f"A run returning a {mib} MiB numpy array, whole processes, median of {rounds} paired rounds"
    )
    print(
        f"load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end; {settle:g} s pause before each way"
    )
    print(f"{'method':<34}{'wall':>9}{'CPU':>9}{'max RSS':>10}")
    for m in methods:
        c = med[m]
        print(f"{LABELS[m]:<34}{c.wall:>8.2f}s{c.cpu:>8.2f}s{c.rss_mib:>7.0f}MiB")
    print("each round, wall (CPU) seconds:")
    for r in range(rounds):
        cells = [f"{costs[m][r].wall:6.2f} ({costs[m][r].cpu:5.2f})" for m in methods]
        print(f"  round {r + 1}: " + "  ".join(cells))

    def ratios(a: str, b: str, field: str) -> list[float]:
        return [
            getattr(x, field) / getattr(y, field) for x, y in zip(costs[a], costs[b], strict=True)
        ]

    def ratio(a: str, b: str, field: str) -> float:
        return statistics.median(ratios(a, b, field))

    def spread(a: str, b: str, field: str) -> str:
        """Each round's ratio, and the median's confidence interval when there are enough."""
        each = ratios(a, b, field)
        low, high, level = median_interval(each)
        interval = f"; {level:.0%} CI {low:.2f}-{high:.2f}" if level else ""
        return " ".join(f"{r:.2f}" for r in each) + interval

    result: dict[str, float] = {"mib": mib}
    for base in ("cp_md5sum", "dvc_add_push"):
        for field in ("wall", "cpu"):
            if {"tracked", base} <= set(methods):
                result[f"{base}_{field}"] = ratio("tracked", base, field)

    def gap(a: str, b: str, field: str) -> float:
        pairs = zip(costs[a], costs[b], strict=True)
        return statistics.median(getattr(x, field) - getattr(y, field) for x, y in pairs)

    if {"tracked", "cp_md5sum", "untracked"} <= set(methods):
        over, floor = gap("tracked", "untracked", "wall"), gap("cp_md5sum", "untracked", "wall")
        result.update(over_s=over, floor_s=floor)
        print(f"tracked over untracked: +{over:.2f}s wall (cp + md5sum add +{floor:.2f}s)")
    pairs = [("tracked", "cp_md5sum"), ("tracked", "dvc_add_push")]
    if before:
        pairs += [("tracked_before", "cp_md5sum"), ("tracked_before", "dvc_add_push")]
        pairs += [("tracked", "tracked_before")]
    for a, b in (p for p in pairs if set(p) <= set(methods)):
        print(
            f"{LABELS[a]} / ({LABELS[b]}): wall {ratio(a, b, 'wall'):.2f}x, "
            f"CPU {ratio(a, b, 'cpu'):.2f}x (median of the rounds' ratios)"
        )
        for field in ("wall", "cpu"):
            print(f"    {field:>4} each round: {spread(a, b, field)}")
    if {"tracked", "untracked"} <= set(methods):
        extra = gap("tracked", "untracked", "rss_mib")
        result.update(peak_extra_mib=extra)
        print(f"peak memory above the simulation's own: {extra:.0f} MiB (goal <= 100)")
    for field in ("wall", "cpu") if "cp_md5sum_wall" in result else ():
        met = "met" if result[f"cp_md5sum_{field}"] <= 1.0 else "NOT met"
        _, high, level = median_interval(ratios("tracked", "cp_md5sum", field))
        sure = f" (and {high:.2f}x at the top of its {level:.0%} CI)" if level else ""
        print(f"goal, in {field} time: tracked no slower than untracked + cp + md5sum: {met}{sure}")
    return result


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MiB instead of 1 GiB")
    parser.add_argument("--rounds", type=int, default=0, help="paired rounds (default 9)")
    parser.add_argument(
        "--before", type=Path, help="also time the tracked run with the gittrack at this path"
    )
    parser.add_argument(
        "--settle", type=float, default=6.0, help="seconds of pause before each way (default 6)"
    )
    parser.add_argument(
        "--ways",
        default=",".join(METHODS),
        help=f"the ways to time, comma-separated (default {','.join(METHODS)})",
    )
    args = parser.parse_args()
    ways = args.ways.split(",")
    if unknown := set(ways) - set(METHODS):
        parser.error(f"unknown ways: {', '.join(sorted(unknown))}")
    main(args.quick, args.rounds, args.before, args.settle, ways)
