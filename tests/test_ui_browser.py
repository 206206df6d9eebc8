"""The web UI in a real browser: Playwright driving Debian's Chromium against uvicorn."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

if not Path("/usr/bin/chromium").exists():
    raise RuntimeError(
        "These tests need Debian's chromium at /usr/bin/chromium: run `make test`, which installs it."
    )

import uvicorn
from conftest import write_script
from playwright.sync_api import expect, sync_playwright
from uidata import build, study

from gittrack.ui import create_app

# `make screenshots` refreshes the pictures in docs/; a plain test run keeps the tree clean
SHOTS = (
    Path(__file__).resolve().parent.parent / "docs" / "screenshots"
    if os.environ.get("GITTRACK_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "gittrack-screenshots"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(repo: Path):
    """uvicorn serving the UI of `repo` in a thread; yields its address."""
    port = free_port()
    config = uvicorn.Config(
        create_app(repo, port=port), host="127.0.0.1", port=port, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def server(repo: Path, monkeypatch: pytest.MonkeyPatch):
    ids = build(repo, monkeypatch, extra=12)
    for url in serve(repo):
        yield url, ids, repo


@pytest.fixture
def ising(repo: Path, monkeypatch: pytest.MonkeyPatch):
    """The Ising study of uidata.study (83 runs) served."""
    ids = study(repo, monkeypatch)
    for url in serve(repo):
        yield url, ids, repo


@pytest.fixture
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, device_scale_factor=1
        )
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def test_user_journey(server, page):
    url, ids, _repo = server
    page.goto(url + "/")
    expect(page.locator("#runs tbody tr[data-id]")).to_have_count(20)
    expect(page.locator("#count")).to_have_text("20 runs")
    shot(page, "runs-table")
    page.locator("#plots summary").click()
    expect(page.locator("#parcoords .main-svg").first).to_be_visible(timeout=20_000)
    expect(page.locator("#scatter .main-svg").first).to_be_visible(timeout=20_000)
    page.locator("#plots").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('plots').scrollIntoView()")
    shot(page, "plots")

    page.fill("#where", "params.temp >= 200")
    page.press("#where", "Enter")
    expect(page.locator("#count")).to_contain_text("runs")
    temps = page.locator("#runs tbody tr[data-id]").count()
    assert 0 < temps < 20
    page.goto(url + "/?where=" + "params.temp%20%3E%3E%3E%202")
    expect(page.locator("#query-error")).to_be_visible()
    shot(page, "filter-error")

    # open a run from the table
    sim = ids["sims"].split(",")[2]
    page.goto(url + "/?sort=params.temp&desc=1")
    page.locator(f"#runs td.mono a[href='/runs/{sim}']").click()
    page.wait_for_url(url + f"/runs/{sim}")
    expect(page.locator("h1")).to_contain_text(sim[:8])
    expect(page.locator("#series .main-svg").first).to_be_visible(timeout=20_000)
    shot(page, "run-page")

    # its flow graph, downstream; click a node and land on that run
    page.click("#flow-link")
    page.wait_for_url(url + f"/runs/{sim}/lineage")
    page.select_option("select[name=direction]", "both")
    page.click("#flow-form button[type=submit]")
    expect(page.locator(f"#flow a[href='/runs/{ids['final']}']")).to_have_count(1)
    page.goto(url + f"/runs/{ids['final']}/lineage")
    expect(page.locator("#flow svg")).to_be_visible()
    page.mouse.move(5, 845)
    shot(page, "flow-graph")
    page.mouse.move(600, 500)
    page.mouse.wheel(0, -200)  # zoom in, then back to the whole graph
    page.click("#zoom-reset")
    page.locator(f"#flow a[href='/runs/{ids['analysis']}']").first.click()
    page.wait_for_url(url + f"/runs/{ids['analysis']}")
    expect(page.locator("h1")).to_contain_text(ids["analysis"][:8])

    # select rows and compare
    page.goto(url + "/experiments/temp-scan")
    boxes = page.locator("#runs input[name=ids]")
    for i in range(3):
        boxes.nth(i).check()
    expect(page.locator("#compare-button")).to_have_text("Compare 3 selected")
    page.click("#compare-button")
    page.wait_for_url("**/compare?ids=*")
    expect(page.locator("#compare tr.differs").first).to_be_visible()
    expect(page.locator("#series .main-svg").first).to_be_visible(timeout=20_000)
    shot(page, "compare")


def test_new_runs_appear_without_reload(server, page, run_cli):
    url, _ids, repo = server
    page.goto(url + "/")
    expect(page.locator("#runs tbody tr[data-id]")).to_have_count(20)
    page.evaluate("window.__marker = 1")
    assert run_cli(repo, "run", "--name", "fresh-run", "sim.py", "--temp", "7").exit_code == 0
    expect(page.locator("#runs a", has_text="fresh-run")).to_be_visible(timeout=15_000)
    expect(page.locator("#count")).to_have_text("21 runs")
    assert page.evaluate("window.__marker") == 1  # same page: updated in place


def test_unreadable_and_experiments_screens(server, page):
    url, ids, _repo = server
    page.goto(url + "/experiments")
    expect(page.locator("#experiments")).to_be_visible()
    shot(page, "experiments")
    page.goto(url + f"/runs/{ids['bad']}")
    expect(page.locator("#unreadable")).to_be_visible()
    page.goto(url + f"/runs/{ids['final']}")
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    expect(page.locator(".note")).to_have_text("<script>alert('x')</script>")
    assert shutil.which("chromium") or Path("/usr/bin/chromium").exists()


def test_report_opens_offline_with_plots_and_flow(server, tmp_path):
    from click.testing import CliRunner

    from gittrack.cli import cli

    _url, ids, repo = server
    out = tmp_path / "report.html"
    assert CliRunner().invoke(cli, ["-C", str(repo), "report", "-o", str(out)]).exit_code == 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.goto(out.as_uri())
        expect(pg.locator("#parcoords svg polyline").first).to_be_visible()
        expect(pg.locator("#scatters svg circle").first).to_be_visible()
        expect(pg.locator(f"#flow a[href='#run-{ids['analysis']}']")).to_have_count(1)
        shot(pg, "report")
        browser.close()
    assert not errors, errors


def overflow(page) -> dict[str, int]:
    """How far the page, and each table in it, scroll sideways (0: everything fits)."""
    return page.evaluate(
        """() => ({page: document.documentElement.scrollWidth - innerWidth,
        tables: Math.max(0, ...[...document.querySelectorAll('.table-wrap')]
            .map(w => w.scrollWidth - w.clientWidth))})"""
    )


def test_study_pages_fit_and_read_at_1400_and_390(ising):
    """Findings 1, 2, 3, 8, 11: no sideways scroll at 1400 px, folded flow, experiment plots."""
    url, ids, _repo = ising
    tc, final = ids["tcs"][0], ids["final"]
    sim = ids["completed"]["ising-L24"][0]
    pages = {
        "runs": "/",
        "experiment": "/experiments/ising-L24",
        "compare": f"/compare?ids={tc},{sim},{final}",
        "run": f"/runs/{tc}",
        "flow": f"/runs/{final}/lineage",
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for width, height in ((1400, 900), (390, 844)):
            pg = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            pg.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            for name, path in pages.items():
                if width < 1400 and name not in ("runs", "run", "flow"):
                    continue  # the phone-sized look of the pages people open there
                pg.goto(url + path)
                seen = overflow(pg)
                if width == 1400:
                    assert seen == {"page": 0, "tables": 0}, (name, seen)
                elif name == "run":
                    assert seen["page"] == 0, (name, seen)
                if name == "flow":
                    expect(pg.locator("#flow svg")).to_be_visible()
                shot(pg, f"study-{name}-{width}")
            assert not errors, errors
            pg.close()
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.goto(url + "/")
        link = pg.locator("a.refs", has_text="58 runs ▸")
        expect(link).to_be_visible()
        link.click()
        expect(pg.locator("#count")).to_have_text("58 runs")
        pg.goto(url + f"/runs/{final}/lineage")
        pg.locator("#flow a[href='/experiments/ising-L24']").first.click()
        expect(pg.locator("h1")).to_contain_text("ising-L24")
        pg.goto(url + "/experiments/ising-L32")
        with pg.expect_response(lambda r: "/api/plot" in r.url) as answer:
            pg.locator("#plots summary").click()
        assert sorted(answer.value.json()["id"]) == sorted(ids["sweeps"]["ising-L32"])
        expect(pg.locator("#parcoords .main-svg").first).to_be_visible(timeout=20_000)
        # finding 9: colour choice, mean ± standard error over seeds, brushing filters the table
        pg.goto(url + "/experiments/ising-L24?limit=100")
        pg.locator("#plots summary").click()
        expect(pg.locator("#scatter .main-svg").first).to_be_visible(timeout=20_000)
        pg.select_option("#sx", "params.temp")
        pg.select_option("#sy", "metrics.susceptibility")
        pg.wait_for_function("document.getElementById('scatter').data.length === 2")
        mean = pg.evaluate("document.getElementById('scatter').data[1]")
        assert mean["name"] == "mean ± standard error" and len(mean["x"]) == 12
        assert len(mean["error_y"]["array"]) == 12
        pg.select_option("#colour", "metrics.energy")
        pg.wait_for_function(
            "document.getElementById('parcoords').data[0].line.colorscale === 'Viridis'"
        )
        pg.evaluate("Plotly.restyle('parcoords', {'dimensions[0].constraintrange': [[1.5, 2.0]]})")
        visible = pg.locator("#runs tbody tr[data-id]:visible")
        expect(visible).to_have_count(19)  # 4 temperatures x 5 seeds, less the failed one
        expect(pg.locator("#brush-note")).to_contain_text("19 runs")
        shot(pg, "study-plots-1400")
        # finding 7: one chart per metric, log axes, smoothing, runs overlaid on compare
        sims = ids["completed"]["ising-L24"][:3]
        pg.goto(url + f"/runs/{sims[0]}")
        charts = pg.locator("#series .series-chart")
        expect(charts).to_have_count(2)
        expect(charts.first.locator(".main-svg").first).to_be_visible(timeout=20_000)
        raw = pg.evaluate("document.querySelector('.series-chart').data[0].y.slice(0, 3)")
        pg.locator("#logy").check()
        pg.evaluate(
            "var s = document.getElementById('smooth'); s.value = '0.9';"
            "s.dispatchEvent(new Event('input'))"
        )
        pg.wait_for_function(
            "document.querySelector('.series-chart')._fullLayout.yaxis.type === 'log'"
        )
        smoothed = pg.evaluate("document.querySelector('.series-chart').data[0].y.slice(0, 3)")
        assert smoothed[0] == raw[0] and smoothed[2] != raw[2]
        pg.goto(url + "/compare?ids=" + ",".join(sims))
        expect(pg.locator("#series .series-chart")).to_have_count(2)
        pg.wait_for_function("document.querySelector('.series-chart').data.length === 3")
        shot(pg, "study-compare-series-1400")
        # finding 11: "/" focuses the filter, Escape closes the column chooser
        pg.goto(url + "/")
        pg.keyboard.press("/")
        assert pg.evaluate("document.activeElement.id") == "where"
        pg.locator("#where").blur()
        pg.locator("details.chooser summary").click()
        expect(pg.locator(".chooser-list")).to_be_visible()
        pg.keyboard.press("Escape")
        expect(pg.locator(".chooser-list")).to_be_hidden()
        browser.close()


LONG_RUN = """\
import pathlib, time
import click
import gittrack


def wait_for(name):
    for _ in range(600):
        if pathlib.Path(name).exists():
            return
        time.sleep(0.1)


@gittrack.command()
@click.option("--n", type=int, default=3)
def main(n):
    print("first line", flush=True)
    for step in range(n):
        gittrack.log(step=step, loss=1.0 / (step + 1))
    wait_for("more")
    print("second line", flush=True)
    wait_for("go")
    return {"final": 1.0}


if __name__ == "__main__":
    main()
"""


def test_a_running_run_is_listed_followed_live_and_then_recorded(server, page):
    """Finding 4: listed as it starts, its own page with elapsed time, live logs and series."""
    url, _ids, repo = server
    write_script(repo, "long.py", LONG_RUN)
    page.goto(url + "/")
    expect(page.locator("#runs tbody tr[data-id]")).to_have_count(20)
    proc = subprocess.Popen(
        [sys.executable, "long.py", "--n", "4"],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        row = page.locator("#runs tbody tr.status-running")
        expect(row).to_have_count(1, timeout=15_000)  # without a reload
        expect(page.locator("#count")).to_have_text("21 runs")
        row.locator("td.mono a").click()
        expect(page.locator("#status")).to_have_text("running")
        expect(page.locator("pre[data-log='stdout.log']")).to_contain_text("first line")
        expect(page.locator("#series .main-svg").first).to_be_visible(timeout=20_000)
        page.wait_for_timeout(1500)
        assert float(page.locator("#elapsed").inner_text().split()[0]) > 0
        shot(page, "running-run")
        (repo / "more").touch()
        expect(page.locator("pre[data-log='stdout.log']")).to_contain_text(
            "second line", timeout=15_000
        )
        (repo / "go").touch()
        expect(page.locator("#status")).to_have_text("completed", timeout=30_000)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
