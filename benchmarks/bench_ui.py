"""Benchmark of the web UI: first table page and browser render at 10,000 runs, a 200-run flow.

Builds a synthetic history through the library (records written in batches of run folders)
and prints each measurement against its target and a baseline taken in the same run.
"""

from __future__ import annotations

import datetime as dt
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


def build(path: Path, n: int, chain: int) -> tuple[store.Repo, str]:
    """`n` independent runs plus a chain of `chain` analyses each consuming the previous two."""
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
    write_batch(repo, batch)
    return repo, ids[-1] if ids else ""


def timed(fn: Any, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


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


def browser_time(url: str) -> float:
    """Seconds from navigation until the runs table is visible in Chromium."""
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
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_selector("#runs tbody tr[data-id]", state="visible")
            best = min(best, time.perf_counter() - t)
        browser.close()
    return best


def main(quick: bool = False) -> list[tuple[str, float, float, float]]:
    """Run the benchmark and print a table; returns (what, seconds, target, baseline) rows."""
    from starlette.testclient import TestClient

    from gittrack.index.db import Index
    from gittrack.library import lineage
    from gittrack.ui import create_app

    n = 1000 if quick else 10_000
    chain = 50 if quick else 200
    rows: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        repo, last = build(Path(tmp) / "repo", n, chain)
        Index(repo).sync()
        print(f"built {n + chain} runs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        client = TestClient(create_app(repo), base_url="http://127.0.0.1")
        client.get("/")
        # baseline: reading every record through the lookup table (what a naive page would do)
        baseline = timed(lambda: Index(repo).select())
        rows.append(
            (
                "table first page served",
                timed(lambda: client.get("/").raise_for_status()),
                0.300,
                baseline,
            )
        )
        rows.append(
            (
                "table sorted by a param",
                timed(lambda: client.get("/?sort=params.temp&desc=1").raise_for_status()),
                0.300,
                baseline,
            )
        )
        rows.append(
            (
                "api/runs first 100",
                timed(lambda: client.get("/api/runs").raise_for_status()),
                0.300,
                baseline,
            )
        )
        flow_page = client.get(f"/runs/{last}/lineage").text
        assert f"{chain} runs" in flow_page, "the flow graph does not hold the whole ancestry"
        one = lineage.Graph("a", {"a": lineage.Node("a", "run", "a")})
        dot = timed(lambda: lineage.render(one, "svg"), repeat=2)
        rows.append(
            (
                f"flow graph of {chain}-run ancestry",
                timed(lambda: client.get(f"/runs/{last}/lineage").raise_for_status(), repeat=2),
                2.0,
                dot,
            )
        )
        port = free_port()
        server = serve(repo, port)
        try:
            rows.append(
                (
                    "table visible in Chromium",
                    browser_time(f"http://127.0.0.1:{port}"),
                    1.5,
                    rows[0][1],
                )
            )
        finally:
            server.should_exit = True
    print(
        f"{'measurement':<34} {'seconds':>8} {'target':>7} {'ok':>3} {'baseline':>9} {'ratio':>6}"
    )
    for what, secs, target, base in rows:
        ok = "yes" if secs <= target else "NO"
        print(
            f"{what:<34} {secs:8.3f} {target:7.2f} {ok:>3} {base:9.3f} {secs / base if base else 0:6.2f}"
        )
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
