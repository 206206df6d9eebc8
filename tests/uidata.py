"""A repository with runs of every kind the UI shows, shared by the UI tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from click.testing import CliRunner

from gittrack import store
from gittrack.cli import cli
from gittrack.model.record import Code, Input, Output, RunRecord, run_folder

XSS = "<script>alert('x')</script>"
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def record(run_id: str, minutes: int, **fields) -> RunRecord:
    fields.setdefault("status", "completed")
    fields.setdefault("command", "sim.py")
    return RunRecord(
        id=run_id,
        started=T0 + dt.timedelta(minutes=minutes),
        finished=T0 + dt.timedelta(minutes=minutes, seconds=3),
        duration_s=3.0,
        **fields,
    )


def series(i: int) -> str:
    return "step,loss\n" + "".join(f"{s},{(3 - i) / (s + 1):.4f}\n" for s in range(5))


def build(path: Path, monkeypatch, extra: int = 0) -> dict[str, str]:
    """Real runs of sim.py, a sweep-like experiment, an analysis chain, an XSS run, a corrupt record."""
    monkeypatch.chdir(path)
    runner = CliRunner()
    assert runner.invoke(cli, ["-C", str(path), "init"]).exit_code == 0
    result = runner.invoke(
        cli, ["-C", str(path), "run", "--name", "real", "sim.py", "--temp", "3", "--label", XSS]
    )
    assert result.exit_code == 0, result.output
    repo = store.find_repo(path)
    head = store.head_state(repo)[0]
    other = (
        repo.git(
            "commit-tree",
            repo.git("rev-parse", "HEAD^{tree}").stdout.decode().strip(),
            "-p",
            head,
            "-m",
            "tweak",
        )
        .stdout.decode()
        .strip()
    )
    ids = {}
    sims = []
    for i, temp in enumerate((100.0, 200.0, 300.0)):
        rid = f"a{i}" + "0" * 30
        rec = record(
            rid,
            i,
            name=f"scan-{int(temp)}",
            experiment="temp-scan",
            argv=["--temp", str(temp)],
            params={"temp": temp, "steps": 1000},
            metrics={"energy": -temp / 100, "accept": 0.5 + i / 10},
            code=Code(commit=head, script="sim.py"),
            outputs={
                "trajectory": Output(path="trajectory.npy", md5="d" * 32, size=4096, kind="npy"),
                "metrics.csv": Output(
                    path="metrics.csv", md5="e" * 32, size=len(series(i)), kind="csv"
                ),
            },
            env={"python": "3.11.2", "host": "lab"},
        )
        store.write_run(repo, rec, {"stdout.log": f"step {i}\n".encode()})
        out = path / ".gittrack" / "outputs" / rid
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.csv").write_text(series(i))
        sims.append(rid)
    failed = record(
        "f0" + "0" * 30,
        5,
        status="failed",
        params={"temp": -1.0, "steps": 10},
        code=Code(commit=other, script="sim.py", dirty=True),
        error={
            "type": "ValueError",
            "message": "negative temperature",
            "traceback": "Traceback ...\nValueError: negative temperature",
        },
    )
    store.write_run(repo, failed, {})
    analysis = record(
        "b0" + "0" * 30,
        10,
        name="fit",
        command="analyse.py",
        params={"sims": "temp-scan"},
        metrics={"slope": 1.25},
        inputs=[Input(run=s, commit="", output="trajectory", md5="d" * 32) for s in sims],
        code=Code(commit=other, script="analyse.py"),
    )
    store.write_run(repo, analysis, {})
    final = record(
        "c0" + "0" * 30,
        20,
        name="paper-figure",
        command="plot.py",
        params={"style": XSS},
        inputs=[Input(run=analysis.id, output="curve")],
        note=XSS,
        tags=["paper"],
    )
    store.write_run(repo, final, {"stdout.log": (XSS + "\n").encode()})
    # a record hand-edited into invalid TOML on the branch
    bad = "d0" + "0" * 30
    writer = store.ObjectWriter(repo)
    edits = store.write_blobs(
        writer, {f"{run_folder(bad)}/run.toml": b"schema = 1\nid = 'd0\n[params\n"}
    )
    writer.sync()
    store.commit_to_branch(repo, f"run {bad[:8]}: hand edit\n\nRun-Id: {bad}\n", edits)
    for j in range(extra):  # more of the sweep, for plots worth looking at
        temp = 50.0 + 25 * j
        rec = record(
            f"e{j:02d}" + "0" * 28,
            30 + j,
            name=f"scan-{int(temp)}",
            experiment="fine-scan",
            argv=["--temp", str(temp)],
            params={"temp": temp, "steps": 1000 + 500 * (j % 3), "seed": j % 4},
            metrics={
                "energy": -1.5 + (temp / 300) ** 2 + 0.05 * (j % 3),
                "accept": 0.9 - temp / 600,
            },
            code=Code(commit=head, script="sim.py"),
            status="failed" if j == 7 else "completed",
        )
        store.write_run(repo, rec, {})
    ids.update(sims=",".join(sims), failed=failed.id, analysis=analysis.id, final=final.id, bad=bad)
    from gittrack.index.db import Index

    ids["real"] = Index(repo).ids_named("real")[0]
    return ids
