"""Runs in a notebook and in pandas (issue 16, findings 5 and 6), executed by a real kernel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
from conftest import write_script
from nbclient import NotebookClient

import gittrack

PLOT = """\
import struct, zlib
import click
import gittrack


def png(width, height):
    raw = b"".join(b"\\0" + b"\\xff\\x00\\x00" * width for _ in range(height))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@gittrack.command()
@click.option("--temp", type=float, default=1.0)
@click.option("--steps", type=int, default=None)
@click.option("--fast", is_flag=True)
def main(temp, steps, fast):
    path = gittrack.output_dir() / "plot.png"
    path.write_bytes(png(4, 3))
    return {"plot": path, "energy": temp * 2}


if __name__ == "__main__":
    main()
"""


def _record(repo: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "plot.py", *args], cwd=repo, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_runs_show_as_html_and_svg_in_a_notebook(tracked_repo: Path) -> None:
    write_script(tracked_repo, "plot.py", PLOT)
    _record(tracked_repo, "--temp", "2.5")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(f"import gittrack\nrepo = {str(tracked_repo)!r}"),
        nbformat.v4.new_code_cell("gittrack.Run('latest', repo)"),
        nbformat.v4.new_code_cell("gittrack.runs(repo=repo)"),
        nbformat.v4.new_code_cell("gittrack.Run('latest', repo).lineage()"),
        nbformat.v4.new_code_cell("print(repr(gittrack.runs(repo=repo)))"),
        nbformat.v4.new_code_cell("gittrack.runs(repo=repo).get('latest').params['temp']"),
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    run_html = nb.cells[1].outputs[0]["data"]["text/html"]
    run = gittrack.Run("latest", tracked_repo)
    assert f"run {run.short}" in run_html and "completed" in run_html
    assert "<th>temp</th><td>2.5</td>" in run_html
    assert "<th>energy</th><td>5.0</td>" in run_html
    assert "data:image/png;base64," in run_html  # the small plot, inline
    table = nb.cells[2].outputs[0]["data"]["text/html"]
    assert "<caption>1 run</caption>" in table and run.short in table
    svg = nb.cells[3].outputs[0]["data"]["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") or "<svg" in svg
    assert nb.cells[4].outputs[0]["text"].strip() == f"<RunSet of 1 run: {run.short}>"
    assert nb.cells[5].outputs[0]["data"]["text/plain"] == "2.5"


def test_to_pandas_keeps_types_and_times(tracked_repo: Path) -> None:
    write_script(tracked_repo, "plot.py", PLOT)
    _record(tracked_repo, "--temp", "1.0", "--steps", "10")
    _record(tracked_repo, "--temp", "2.0", "--fast")
    _record(tracked_repo, "--temp", "3.0", "--steps", "30")
    subprocess.run([sys.executable, "sim.py"], cwd=tracked_repo, check=True, capture_output=True)
    frame = gittrack.runs(repo=tracked_repo).to_pandas()
    for column in ("started", "finished"):
        assert str(frame[column].dtype).startswith("datetime64[") and "UTC" in str(
            frame[column].dtype
        )
    assert str(frame["params.steps"].dtype) == "Int64"  # not float64, despite the missing value
    assert str(frame["params.fast"].dtype) == "boolean"
    assert str(frame["params.temp"].dtype) == "float64"
    assert str(frame["command"].dtype) == "string"
    steps = sorted(v for v in frame["params.steps"].dropna().tolist())
    assert steps == [10, 30] or steps == [10, 10, 30]
