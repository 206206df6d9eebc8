"""The web UI in-process (Starlette TestClient): every route, security and faults."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_script
from starlette.testclient import TestClient
from uidata import XSS, build

from gittrack.cli import cli
from gittrack.ui import allowed_host, create_app


@pytest.fixture
def lab(repo: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    return repo, build(repo, monkeypatch)


@pytest.fixture
def client(lab) -> TestClient:
    return TestClient(create_app(lab[0], port=8765), base_url="http://127.0.0.1:8765")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- pages ---------------------------------------------------------------------------------------


def test_runs_table_lists_runs_with_varying_columns_and_status(client, lab):
    r = client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    html = r.text
    assert "8 runs" in text_of(html)
    for run_id in lab[1]["sims"].split(","):
        assert f'href="/runs/{run_id}"' in html
    assert '<span class="badge failed">failed</span>' in html
    assert '<span class="badge unreadable">unreadable</span>' in html
    heads = re.findall(r'<a href="[^"]*" title="([^"]+)"', html)
    assert "params.temp" in heads and "metrics.energy" in heads
    assert 'href="/experiments/temp-scan"' in html


def test_sorting_by_a_param_and_pagination(client, lab):
    html = client.get("/?sort=params.temp&desc=1").text
    order = [m for m in re.findall(r'data-id="([0-9a-f]+)"', html)]
    sims = lab[1]["sims"].split(",")
    assert order.index(sims[2]) < order.index(sims[1]) < order.index(sims[0])
    first = client.get("/?limit=25").text
    assert "1–8 of 8" in first
    assert 'id="next"' not in first


def test_column_chooser_shows_exactly_the_chosen_columns(client):
    html = client.get("/?cols=id,status,metrics.energy").text
    assert re.findall(r'<a href="[^"]*" title="([^"]+)"', html) == [
        "id",
        "status",
        "metrics.energy",
    ]


def test_group_by_experiment(client):
    html = client.get("/?group=experiment").text
    assert 'class="group"' in html
    assert "experiment temp-scan" in text_of(html)


def test_filter_box_speaks_the_query_language(client, lab):
    html = client.get("/", params={"where": "params.temp >= 200"}).text
    ids = set(re.findall(r'data-id="([0-9a-f]+)"', html))
    assert ids == set(lab[1]["sims"].split(",")[1:])


def test_bad_filter_is_shown_inline(client):
    r = client.get("/", params={"where": "params.temp >>> 2 <b>"})
    assert r.status_code == 200
    error = re.search(r'<pre class="error" id="query-error">(.*?)</pre>', r.text, re.S)
    assert (error and "&lt;b&gt;" not in error.group(1)) or "<b>" not in error.group(1)
    assert "<b>" not in r.text.split('id="query-error"')[1].split("</pre>")[0]


def test_run_page_shows_everything(client, lab):
    ids = lab[1]
    sim = ids["sims"].split(",")[0]
    html = client.get(f"/runs/{sim[:6]}").text
    page = text_of(html)
    for expected in (
        "scan-100",
        "temp 100",
        "energy -1",
        "python 3.11.2",
        "trajectory.npy",
        "4.0 KB",
        "step 0",
        "temp-scan",
    ):
        assert expected in page, expected
    assert f'href="/runs/{ids["analysis"]}"' in html  # downstream
    assert 'id="series-data"' in html and '"loss"' in html  # time series plotted
    assert f'href="/runs/{sim}/outputs/metrics.csv"' in html
    analysis = client.get(f"/runs/{ids['analysis']}").text
    for s in ids["sims"].split(","):
        assert f'href="/runs/{s}"' in analysis  # inputs as links


def test_real_run_page_has_captured_log(client, lab):
    html = client.get(f"/runs/{lab[1]['real']}").text
    assert "simulating at 3.0" in html
    assert "stdout.log" in html


def test_code_diff_against_another_run(client, lab):
    ids = lab[1]
    html = client.get(f"/runs/{ids['analysis']}", params={"diff": ids["sims"].split(",")[0]}).text
    assert 'id="diff"' in html
    html = client.get(f"/runs/{ids['analysis']}", params={"diff": "nope-not-a-run"}).text
    assert 'No run matches "nope-not-a-run"' in unescape(html)


def test_download_small_output_and_refuse_others(client, lab):
    sim = lab[1]["sims"].split(",")[0]
    r = client.get(f"/runs/{sim}/outputs/metrics.csv")
    assert r.status_code == 200 and r.text.startswith("step,loss")
    assert client.get(f"/runs/{sim}/outputs/trajectory").status_code == 404  # not available locally
    assert client.get(f"/runs/{sim}/outputs/nothing").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/runs/{id}/outputs/..%2f..%2fsim.py",
        "/runs/{id}/outputs/%2e%2e/sim.py",
        "/runs/{id}/outputs/%2Fetc%2Fpasswd",
        "/runs/{id}/outputs/../../../sim.py",
    ],
)
def test_download_refuses_traversal(client, lab, path):
    sim = lab[1]["sims"].split(",")[0]
    r = client.get(path.format(id=sim))
    assert r.status_code == 404
    assert "add simulation" not in r.text and "gittrack.command" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../views.py",
        "/static/..%2fviews.py",
        "/static/%2e%2e/__init__.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/..%252fviews.py",
    ],
)
def test_static_refuses_traversal(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert "def " not in r.text and "root:" not in r.text


def test_static_assets_and_plotly_served_locally(client):
    assert client.get("/static/app.css").status_code == 200
    r = client.get("/static/plotly.min.js")
    assert r.status_code == 200 and len(r.content) > 1_000_000
    html = client.get("/").text
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no CDN


def test_lineage_graph_is_inline_svg_with_clickable_nodes(client, lab):
    ids = lab[1]
    html = client.get(f"/runs/{ids['final']}/lineage").text
    assert "<svg" in html
    for run_id in [*ids["sims"].split(","), ids["analysis"], ids["final"]]:
        assert f'href="/runs/{run_id}"' in html
    down = client.get(
        f"/runs/{ids['sims'].split(',')[0]}/lineage", params={"direction": "down", "depth": "1"}
    ).text
    assert f'href="/runs/{ids["analysis"]}"' in down and f'href="/runs/{ids["final"]}"' not in down
    assert "<script>alert" not in html


def test_experiments_pages(client):
    html = client.get("/experiments").text
    assert 'href="/experiments/temp-scan"' in html
    exp = client.get("/experiments/temp-scan").text
    assert len(re.findall(r'data-id="', exp)) == 3
    assert client.get("/experiments/none-such").status_code == 404


def test_compare_highlights_differences(client, lab):
    sims = lab[1]["sims"].split(",")
    html = client.get("/compare", params={"ids": f"{sims[0][:6]},{sims[2][:6]}"}).text
    rows = dict(
        re.findall(r'<tr class="(differs|)"><th>([^<]+)</th>', html)[i][::-1]
        for i in range(len(re.findall(r'<tr class="(differs|)"><th>', html)))
    )
    assert rows["params.temp"] == "differs"
    assert rows["params.steps"] == ""
    assert 'id="series-data"' in html
    bad = client.get("/compare", params={"ids": "zzzz"})
    assert bad.status_code == 200 and "No run matches" in bad.text


def test_api_runs_has_the_fields_of_ls_json(client, lab):
    data = client.get("/api/runs").json()
    ls = json.loads(CliRunner().invoke(cli, ["-C", str(lab[0]), "ls", "--format", "json"]).stdout)
    assert {r["id"] for r in data} == {r["id"] for r in ls}
    by_id = {r["id"]: r for r in ls}
    for row in data:
        assert row == by_id[row["id"]]
    one = client.get(f"/api/runs/{lab[1]['final'][:6]}").json()
    assert one["params"]["style"] == XSS and one["commit"]
    assert one.items() >= by_id[lab[1]["final"]].items()  # ls fields, plus the whole record
    assert one["code"] and "inputs" in one
    assert client.get("/api/runs/ffff").status_code == 404


def test_api_runs_pages_are_bounded_and_the_csv_is_that_of_ls(client, lab):
    """/api/runs answers at most 500 runs a page (the rest through offset); /api/runs.csv
    streams every matching run, byte for byte `gittrack ls --format csv`."""
    first = client.get("/api/runs")
    total = int(first.headers["X-Total-Count"])  # an unreadable run counts, but is left out
    assert len(client.get("/api/runs", params={"limit": 500}).json()) == len(first.json()) > 1
    big = client.get("/api/runs", params={"limit": 501})
    assert big.status_code == 400 and "'limit' must be at most 500" in big.json()["error"]
    paged = [
        r["id"]
        for off in range(total)
        for r in client.get(f"/api/runs?limit=1&offset={off}").json()
    ]
    assert paged == [r["id"] for r in first.json()]
    for where in ("", "params.temp >= 1"):
        csv_text = client.get("/api/runs.csv", params={"where": where}).text
        args = ["--where", where] if where else []
        ls = CliRunner().invoke(cli, ["-C", str(lab[0]), "ls", *args, "--format", "csv"])
        assert csv_text == ls.stdout and csv_text.count("\n") > 1


def test_api_tip_changes_when_a_run_lands(client, lab, run_cli):
    before = client.get("/api/tip").json()["tip"]
    assert run_cli(lab[0], "run", "sim.py", "--temp", "9").exit_code == 0
    after = client.get("/api/tip").json()["tip"]
    assert after != before
    assert "9.0" in client.get("/?partial=1").text  # the table part the page re-fetches


def test_api_plot_columns(client, lab):
    data = client.get("/api/plot", params={"cols": "params.temp,metrics.energy"}).json()
    assert set(data) == {"id", "status", "params.temp", "metrics.energy"}
    assert 300.0 in data["params.temp"]


def test_real_outputs_download_and_time_series(tracked_repo, run_cli, tmp_path):
    write_script(
        tracked_repo,
        "logsim.py",
        """
        import click, numpy as np, gittrack

        @gittrack.command()
        @click.option("--n", type=int, default=4)
        def main(n):
            for step in range(n):
                gittrack.log(step=step, loss=1.0 / (step + 1))
            return {"trajectory": np.arange(n, dtype=float), "final": 1.0 / n}

        if __name__ == "__main__":
            main()
    """,
    )
    result = run_cli(tracked_repo, "run", "--name", "logged", "logsim.py", "--n", "6")
    assert result.exit_code == 0, result.output
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get("/runs/logged").text
    data = json.loads(
        unescape(re.search(r'id="series-data">(.*?)</script>', page, re.S).group(1)).replace(
            "\\u003c", "<"
        )
    )
    (series,) = data.values()
    assert series["step"] == [0, 1, 2, 3, 4, 5] and series["loss"][1] == 0.5
    link = re.search(r'href="(/runs/[0-9a-f]+/outputs/trajectory)"', page).group(1)
    import shutil

    shutil.rmtree(tracked_repo / ".gittrack" / "outputs")  # restored from the DVC cache
    body = client.get(link)
    assert body.status_code == 200
    import io

    import numpy as np

    assert np.load(io.BytesIO(body.content)).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_outputs_previewed_as_plots_tables_and_escaped_text(tracked_repo, run_cli):
    """Finding 5 of the UI review: arrays drawn, frames as first rows, text as first lines."""
    write_script(
        tracked_repo,
        "shapes.py",
        """
        import click, numpy as np, pandas as pd, gittrack

        @gittrack.command()
        def main():
            (gittrack.output_dir() / "notes.txt").write_text(
                "<script>alert(1)</script>\\n" + "line\\n" * 100
            )
            return {
                "curve": np.linspace(0.0, 1.0, 5000),
                "field": np.arange(300 * 40, dtype=float).reshape(300, 40),
                "frame": pd.DataFrame({"temp": [1.5, 2.0, 2.5], "energy": [-1.9, -1.6, -1.2]}),
                "labels": np.array(["a", "b"]),
            }

        if __name__ == "__main__":
            main()
    """,
    )
    assert run_cli(tracked_repo, "run", "--name", "shapes", "shapes.py").exit_code == 0
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get("/runs/shapes").text
    data = {
        kind: json.loads(unescape(text).replace("\\u003c", "<"))
        for kind, text in re.findall(
            r'class="preview-data" data-target="[^"]+" data-kind="(\w+)">(.*?)</script>', page, re.S
        )
    }
    assert len(data["line"]["y"]) <= 2000 and data["line"]["y"][0] == 0.0
    assert len(data["heatmap"]["z"]) <= 200 and len(data["heatmap"]["z"][0]) == 40
    frame = page.split('class="preview preview-table"')[1].split("</figure>")[0]
    assert re.findall(r"<th>([^<]+)</th>", frame) == ["temp", "energy"]
    assert "first 3 of 3 rows" in frame
    text = page.split('class="preview-text">')[1].split("</pre>")[0]
    assert text.startswith("&lt;script&gt;alert(1)&lt;/script&gt;") and text.count("line") == 39
    assert "<script>alert(1)" not in page
    assert "&lt;U1 array of shape 2" in page  # a string array: described, not drawn


# -- security and faults -------------------------------------------------------------------------


def test_user_strings_are_escaped_everywhere(client, lab):
    ids = lab[1]
    for path in [
        "/",
        f"/runs/{ids['final']}",
        f"/runs/{ids['real']}",
        f"/compare?ids={ids['final']},{ids['real']}",
        f"/runs/{ids['final']}/lineage",
        "/?cols=id,params.style,params.label",
    ]:
        html = client.get(path).text
        assert "<script>alert" not in html, path
    html = client.get(f"/runs/{ids['final']}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/", "/runs/{id}", "/api/runs", "/api/runs/{id}", "/static/app.css"]
)
def test_read_only(client, lab, method, path):
    r = client.request(method, path.format(id=lab[1]["final"]))
    assert r.status_code == 405


def test_dns_rebinding_host_is_refused(client):
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 403
    assert client.get("/api/runs", headers={"host": "attacker.test"}).status_code == 403
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"host": "127.0.0.1:9999"}).status_code == 403


def test_allowed_host_rules():
    assert allowed_host("127.0.0.1:8765", "127.0.0.1", 8765)
    assert allowed_host("[::1]:8765", "127.0.0.1", 8765)
    assert not allowed_host("rebind.example.com:8765", "127.0.0.1", 8765)
    assert allowed_host("192.168.1.20:8765", "0.0.0.0", 8765)
    assert not allowed_host("rebind.example.com:8765", "0.0.0.0", 8765)


def test_unknown_run_is_a_404_page(client):
    for path in ["/runs/ffffffff", "/runs/ffffffff/lineage", "/runs/ffff/outputs/x", "/nowhere"]:
        r = client.get(path)
        assert r.status_code == 404, path
        assert 'id="error-page"' in r.text and "Traceback" not in r.text


def test_corrupted_record_is_shown_as_such(client, lab):
    bad = lab[1]["bad"]
    r = client.get(f"/runs/{bad}")
    assert r.status_code == 200
    assert 'id="unreadable"' in r.text and "invalid TOML" in r.text
    assert "[params" in r.text  # the stored text is shown
    assert client.get(f"/runs/{bad}/lineage").status_code == 200
    assert client.get(f"/api/runs/{bad}").json()["status"] == "unreadable"


# -- commands ------------------------------------------------------------------------------------


def test_report_is_one_offline_file(lab, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["-C", str(lab[0]), "report", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote {out} (8 runs")
    html = out.read_text()
    assert "<svg" in html and 'id="parcoords"' in html and 'id="scatters"' in html
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', html)
    assert "<script>alert" not in html
    assert "Plotly" not in html and len(html) < 300_000  # plots drawn as SVG, not plotly.js


def test_ui_help_and_warning_on_public_host(lab):
    help_text = CliRunner().invoke(cli, ["ui", "--help"]).output
    assert "--port" in help_text and "gittrack ui --port 9000" in help_text
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gittrack",
            "-C",
            str(lab[0]),
            "ui",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert line.startswith("Warning: serving on 0.0.0.0 makes every run")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ui_binds_loopback_by_default(lab):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gittrack", "-C", str(lab[0]), "ui", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert (
            proc.stdout.readline().strip()
            == f"gittrack UI for {lab[0]} at http://127.0.0.1:{port}/ (Ctrl+C to stop)"
        )
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tip", timeout=2).read()
                break
            except OSError:
                time.sleep(0.1)
        assert b'"tip"' in body
        listening = Path("/proc/net/tcp").read_text()
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ui_on_a_port_in_use_says_so_in_one_sentence(lab):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["-C", str(lab[0]), "ui", "--port", str(port)])
    assert result.exit_code == 1
    assert (
        result.output
        == f"Error: Cannot serve on 127.0.0.1:{port} (Address already in use); stop what uses it or pick another port with --port.\n"
    )


def test_templates_found_from_an_installed_wheel(tmp_path):
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    import zipfile

    wheel = next(tmp_path.glob("*.whl"))
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = "import gittrack.ui as u; print(u.templates_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(target / "gittrack" / "templates")


def test_filter_with_a_misspelt_key_shows_a_hint(tracked_repo: Path, run_cli) -> None:
    assert run_cli(tracked_repo, "run", "sim.py", "--temp", "2").exit_code == 0
    client = TestClient(create_app(tracked_repo, port=8765), base_url="http://127.0.0.1:8765")
    page = client.get("/?where=params.tmep%20%3E%201")
    assert page.status_code == 200
    assert 'id="query-hints"' in page.text
    assert "No run has params.tmep (did you mean params.temp?)." in page.text
    assert 'id="query-hints"' not in client.get("/?where=params.temp%20%3E%201").text


def test_a_died_run_is_found_alike_by_show_and_the_run_page(tracked_repo: Path, run_cli) -> None:
    """One lookup of staged runs (listing.find_staged): an id, a prefix in any case."""
    from test_architecture import _stage_died_runs

    (run_id,) = _stage_died_runs(tracked_repo, 1)
    client = TestClient(create_app(tracked_repo), base_url="http://127.0.0.1")
    for ref in (run_id, run_id[:8], run_id[:8].upper()):
        shown = run_cli(tracked_repo, "show", ref, "--json")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["id"] == run_id
        page = client.get(f"/runs/{ref}")
        assert page.status_code == 200, (ref, page.text[:300])
        assert run_id in page.text


def test_a_run_page_lists_its_consumers_and_launched_runs_oldest_first(tracked_repo) -> None:
    """Found through the lineage edges (not by reading every record): consumers once each,
    launched runs apart, neither a run that only mentions it elsewhere."""
    import datetime as dt

    from gittrack import store
    from gittrack.library.runview import run_view
    from gittrack.model.record import Input, RunRecord

    def rec(n: int, **kw) -> RunRecord:
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=10 - n)
        return RunRecord(
            id=f"{n:032x}", command=f"r{n}.py", status="completed", started=start, **kw
        )

    source = f"{1:032x}"
    records = [
        rec(1),
        rec(2, inputs=[Input(run=source, output="a"), Input(run=source, output="b")]),
        rec(3, inputs=[Input(run=source)]),
        rec(4, parent=source),
        rec(5, note=source, parent=f"{3:032x}"),
    ]
    repo = store.find_repo(tracked_repo)
    store.import_runs(repo, records)
    view = run_view(repo, source)
    assert [d["id"] for d in view.downstream] == [f"{3:032x}", f"{2:032x}"]  # oldest first
    assert [d["id"] for d in view.children] == [f"{4:032x}"]
    assert view.downstream[0]["command"] == "r3.py"
