"""Benchmark of the web UI: first table page and browser render at 10,000 runs, a 200-run flow,
the folded flow graph of an analysis of all 10,000 runs, and the report's size at 100 and 5,000.

Builds a synthetic history through the library (records written in batches of run folders)
and prints each measurement against its target and a baseline taken in the same run.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gittrack import store  # noqa: E402
from gittrack.model.record import Code, Input, Output, RunRecord, run_folder  # noqa: E402
from gittrack.store import project  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def make_repo(path: Path) -> store.Repo:
    """A git repository with one commit and gittrack initialised."""
    path.mkdir(parents=True, exist_ok=True)
    env = ["-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "sim.py").write_text("print('sim')\n")
    subprocess.run(["git", "-C", str(path), "add", "sim.py"], check=True)
    subprocess.run(["git", "-C", str(path), *env, "commit", "-qm", "sim"], check=True)
    repo = store.find_repo(path)
    project.init(repo)
    return repo


def synthetic_record(
    i: int, code: str, inputs: list[str] | None = None, experiment: str = ""
) -> RunRecord:
    """A completed run record with a few params and metrics, deterministic in `i`."""
    run_id = f"{(i * 2654435761) % 2**32:08x}{i:024x}"
    return RunRecord(
        id=run_id,
        command="sim.py" if not inputs else "analyse.py",
        status="completed" if i % 17 else "failed",
        name=f"run-{i}",
        argv=["--temp", str(i % 50)],
        started=T0 + dt.timedelta(seconds=i),
        finished=T0 + dt.timedelta(seconds=i + 2),
        duration_s=2.0 + (i % 7) * 0.1,
        experiment=experiment,
        params={"temp": float(i % 50), "steps": 1000 + i % 3 * 500, "seed": i % 10},
        metrics={"energy": -1.5 + (i % 50) * 0.01, "accept": (i % 13) / 13},
        code=Code(commit=code, dirty=False, script="sim.py"),
        inputs=[Input(run=r, output="trajectory") for r in inputs or []],
        outputs={
            "trajectory": Output(path="trajectory.npy", md5=f"{i:032x}", size=8000 + i, kind="npy")
        },
        env={"python": "3.11", "host": "bench"},
    )


def write_batch(repo: store.Repo, records: list[RunRecord]) -> None:
    """Commit many run folders at once (a fast way to build a large synthetic history)."""
    writer = store.ObjectWriter(repo)
    files = {f"{run_folder(r.id)}/run.toml": r.to_toml().encode() for r in records}
    edits = store.write_blobs(writer, files)
    writer.sync()
    store.commit_to_branch(repo, f"bench: {len(records)} runs", edits)


def build(path: Path, n: int, chain: int) -> tuple[store.Repo, str, str]:
    """`n` runs in sweeps of 1,000, a chain of `chain` analyses each consuming the previous two,
    one analysis per sweep consuming all its runs and a final one consuming those."""
    repo = make_repo(path)
    code = repo.git("rev-parse", "HEAD").stdout.decode().strip()
    batch: list[RunRecord] = []
    for i in range(n):
        batch.append(synthetic_record(i, code, experiment=f"scan-{i // 1000}"))
        if len(batch) == 2000:
            write_batch(repo, batch)
            batch = []
    ids: list[str] = []
    for j in range(chain):
        rec = synthetic_record(n + j, code, inputs=ids[-2:])
        ids.append(rec.id)
        batch.append(rec)
    sweeps: dict[str, list[str]] = {}
    for i in range(n):
        sweeps.setdefault(f"scan-{i // 1000}", []).append(synthetic_record(i, code).id)
    per_sweep = [
        synthetic_record(n + chain + k, code, inputs=members)
        for k, members in enumerate(sweeps.values())
    ]
    final = synthetic_record(n + chain + len(per_sweep), code, inputs=[r.id for r in per_sweep])
    write_batch(repo, [*batch, *per_sweep, final])
    return repo, ids[-1] if ids else "", final.id


def report_size(n: int) -> tuple[float, float]:
    """(MB, seconds) of `gittrack report` over `n` runs in sweeps of up to 1,000 and a chain."""
    from gittrack.ui.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        repo, _, _ = build(Path(tmp) / "repo", n, min(50, n // 10))
        t = time.perf_counter()
        html, _ = build_report(repo)
        return len(html.encode()) / 1e6, time.perf_counter() - t


def cpu() -> float:
    """CPU seconds (user + system) of this process and of its children waited for so far."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_cpu(fn: Any, repeat: int = 3) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the fastest of `repeat` calls (the server runs in this
    process: the in-process client's thread or uvicorn's, so its CPU time is counted)."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        c, t = cpu(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t
        if wall < best[0]:
            best = (wall, cpu() - c)
    return best


def timed(fn: Any, repeat: int = 3) -> float:
    return timed_cpu(fn, repeat)[0]


def clear_census() -> None:
    """Forget the remembered column census (to time a page as after a new run)."""
    from gittrack.library import browse

    browse.CENSUS_CACHE.clear()


def serve(repo: store.Repo, port: int) -> Any:
    import uvicorn

    from gittrack.ui import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(repo, port=port), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def browser_time(url: str) -> tuple[float, float]:
    """(Seconds from navigation until the runs table is visible in Chromium, CPU seconds of
    the server meanwhile; the browser's own CPU time is not counted)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(url + "/about-blank-warmup")
        best = (float("inf"), 0.0)
        for _ in range(3):
            c, t = cpu(), time.perf_counter()
            page.goto(url + "/")
            page.wait_for_selector("#runs tbody tr[data-id]", state="visible")
            wall = time.perf_counter() - t
            if wall < best[0]:
                best = (wall, cpu() - c)
        browser.close()
    return best


def main(quick: bool = False) -> list[tuple[str, float, float, float, float]]:
    """Run the benchmark and print a table; returns (what, seconds, CPU seconds, target,
    baseline) rows."""
    from starlette.testclient import TestClient

    from gittrack.index.db import Index
    from gittrack.library import lineage
    from gittrack.ui import create_app

    n = 1000 if quick else 10_000
    chain = 50 if quick else 200
    rows: list[tuple[str, float, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        repo, last, final = build(Path(tmp) / "repo", n, chain)
        Index(repo).sync()
        print(f"built {n + chain} runs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        client = TestClient(create_app(repo), base_url="http://127.0.0.1")
        client.get("/")
        # baseline: reading every record through the lookup table (what a naive page would do)
        baseline = timed(lambda: Index(repo).select())
        first = timed_cpu(lambda: client.get("/").raise_for_status())
        rows.append(("table first page served", *first, 0.300, baseline))
        uncached = timed_cpu(lambda: clear_census() or client.get("/").raise_for_status())
        rows.append(("table first page, census not cached", *uncached, 0.300, baseline))
        by_param = timed_cpu(lambda: client.get("/?sort=params.temp&desc=1").raise_for_status())
        rows.append(("table sorted by a param", *by_param, 0.300, baseline))
        api = timed_cpu(lambda: client.get("/api/runs").raise_for_status())
        rows.append(("api/runs first 100", *api, 0.300, baseline))
        page = timed_cpu(lambda: client.get(f"/runs/{last}").raise_for_status())
        rows.append(("a run's page (consumers, launched runs)", *page, 0.300, baseline))
        flow_page = client.get(f"/runs/{last}/lineage").text
        assert f"{chain} runs" in flow_page, "the flow graph does not hold the whole ancestry"
        one = lineage.Graph("a", {"a": lineage.Node("a", "run", "a")})
        dot = timed(lambda: lineage.render(one, "svg"), repeat=2)
        ancestry = timed_cpu(
            lambda: client.get(f"/runs/{last}/lineage").raise_for_status(), repeat=2
        )
        rows.append((f"flow graph of {chain}-run ancestry", *ancestry, 2.0, dot))
        folded = client.get(f"/runs/{final}/lineage").text
        shown = n + -(-n // 1000) + 1  # the sweeps' runs, one analysis each, the final one
        assert f"{shown} runs" in folded and "1000 runs" in folded, "not folded"
        folded_t = timed_cpu(
            lambda: client.get(f"/runs/{final}/lineage").raise_for_status(), repeat=2
        )
        rows.append((f"folded flow graph of {n:,} runs", *folded_t, 3.0, dot))
        port = free_port()
        server = serve(repo, port)
        try:
            shown_t = browser_time(f"http://127.0.0.1:{port}")
            rows.append(("table visible in Chromium", *shown_t, 1.5, rows[0][1]))
        finally:
            server.should_exit = True
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average (1, 5, 15 min) at the end: {load}")
    print(
        f"{'measurement':<38} {'seconds':>8} {'cpu s':>7} {'target':>7} {'ok':>3} "
        f"{'baseline':>9} {'ratio':>6}"
    )
    for what, secs, cpu_s, target, base in rows:
        ok = "yes" if secs <= target else "NO"
        ratio = secs / base if base else 0
        print(f"{what:<38} {secs:8.3f} {cpu_s:7.3f} {target:7.2f} {ok:>3} {base:9.3f} {ratio:6.2f}")
    sizes = [(runs, *report_size(runs)) for runs in ((100, 500) if quick else (100, 5000))]
    print(f"\n{'report':<34} {'MB':>8} {'target':>7} {'ok':>3} {'seconds':>9}")
    for runs, mb, secs in sizes:
        target = 1.5 if runs <= 100 else float("inf")
        ok = "yes" if mb <= target else "NO"
        shown = f"{target:7.2f}" if target != float("inf") else f"{'-':>7}"
        print(f"{f'report of {runs:,} runs':<34} {mb:8.2f} {shown} {ok:>3} {secs:9.2f}")
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
