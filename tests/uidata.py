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


# -- a 2D Ising study: two sweeps, failed runs, chained analyses, a PNG, time series ------------

L24_TEMPS = [round(1.6 + k * 1.4 / 11, 3) for k in range(12)]  # 12 temperatures x 5 seeds
L32_TEMPS = [2.0, 2.2, 2.3, 2.5]  # 4 temperatures x 5 seeds


def png(width: int = 240, height: int = 160) -> bytes:
    """A small real PNG (a gradient), written without any imaging library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x % 256, y * 3 % 256, 128))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def ising_series(temp: float) -> str:
    return "step,energy,magnetization\n" + "".join(
        f"{s * 100},{-2 + temp / 3 + 1 / (s + 1):.4f},{max(0.0, 1 - temp / 3.2) + 0.3 / (s + 1):.4f}\n"
        for s in range(30)
    )


def study(path: Path, monkeypatch) -> dict[str, object]:
    """The study of issue 13: sweeps ising-L24 (60 runs) and ising-L32 (20), 3 failed among
    them, a Tc analysis of each (a `sims` list param of the completed ids, a PNG output) and a
    finite-size analysis of both; 83 runs committed at once."""
    monkeypatch.chdir(path)
    assert CliRunner().invoke(cli, ["-C", str(path), "init"]).exit_code == 0
    repo = store.find_repo(path)
    head = store.head_state(repo)[0]
    files: dict[str, bytes] = {}
    n = 0

    def add(rec: RunRecord, extra: dict[str, bytes] | None = None) -> None:
        files[f"{run_folder(rec.id)}/run.toml"] = rec.to_toml().encode()
        for name, data in (extra or {}).items():
            files[f"{run_folder(rec.id)}/{name}"] = data

    def local(run_id: str, name: str, data: bytes) -> None:
        out = path / ".gittrack" / "outputs" / run_id
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)

    sweeps: dict[str, list[str]] = {}
    completed: dict[str, list[str]] = {}
    failed_at = {("ising-L24", 7), ("ising-L24", 41), ("ising-L32", 12)}
    for name, size, temps in (("ising-L24", 24, L24_TEMPS), ("ising-L32", 32, L32_TEMPS)):
        for k, (temp, seed) in enumerate((t, s) for t in temps for s in range(5)):
            n += 1
            rid = f"{n:04x}" + "1" * 28
            failed = (name, k) in failed_at
            series_text = ising_series(temp)
            outputs = {
                "observables": Output(path="obs.npy", md5=f"{n:032x}", size=800, kind="npy"),
                "metrics.csv": Output(
                    path="metrics.csv", md5=f"{n + 500:032x}", size=len(series_text), kind="csv"
                ),
            }
            rec = record(
                rid,
                n,
                command="ising.py",
                experiment=name,
                argv=["--L", str(size), "--temp", str(temp), "--seed", str(seed)],
                params={"L": size, "temp": temp, "seed": seed, "steps": 20000},
                metrics={}
                if failed
                else {
                    "energy": round(-2 + temp / 3, 4),
                    "magnetization": round(max(0.0, 1 - temp / 3.2), 4),
                    "susceptibility": round(1 / (abs(temp - 2.269) + 0.05), 3),
                },
                outputs={} if failed else outputs,
                code=Code(commit=head, script="ising.py"),
                status="failed" if failed else "completed",
                error={"type": "RuntimeError", "message": "diverged", "traceback": "..."}
                if failed
                else {},
            )
            add(rec, {"stdout.log": f"L={size} T={temp} seed={seed}\n".encode()})
            if not failed:
                local(rid, "metrics.csv", series_text.encode())
                completed.setdefault(name, []).append(rid)
            sweeps.setdefault(name, []).append(rid)
    tcs = []
    for name in ("ising-L24", "ising-L32"):
        n += 1
        rid = f"{n:04x}" + "2" * 28
        image = png()
        rec = record(
            rid,
            n + 100,
            name=f"tc-{name[-3:]}",
            command="tc.py",
            argv=["--sims", f"experiment = '{name}' and status = 'completed'"],
            params={"sims": completed[name], "method": "binder-crossing"},
            metrics={"Tc": 2.27 if name.endswith("24") else 2.271, "Tc_err": 0.01},
            inputs=[Input(run=s, output="observables", md5="") for s in completed[name]],
            outputs={"binder.png": Output(path="binder.png", md5=f"{n:032x}", size=len(image))},
            code=Code(commit=head, script="tc.py"),
        )
        add(rec)
        local(rid, "binder.png", image)
        tcs.append(rid)
    n += 1
    final = f"{n:04x}" + "3" * 28
    add(
        record(
            final,
            n + 200,
            name="finite-size",
            command="finite_size.py",
            params={"tcs": tcs},
            metrics={"Tc_inf": 2.2692},
            inputs=[Input(run=t, output="binder.png") for t in tcs],
            code=Code(commit=head, script="finite_size.py"),
        )
    )
    writer = store.ObjectWriter(repo)
    edits = store.write_blobs(writer, files)
    writer.sync()
    store.commit_to_branch(repo, f"study: {len(files)} files", edits)
    return {"sweeps": sweeps, "completed": completed, "tcs": tcs, "final": final, "repo": repo}
