"""The UI's views that answer without leaving the page, in Chromium over the Ising study:
the compare page's plots, flow graph nodes expanded in place, a metric overlaid across the
runs selected in the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright
from test_ui_browser import ARGS, serve, shot
from uidata import study

pytestmark = pytest.mark.slow


@pytest.fixture
def ising(repo: Path, monkeypatch: pytest.MonkeyPatch):
    ids = study(repo, monkeypatch)
    for url in serve(repo):
        yield url, ids


@pytest.fixture
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    assert not errors, errors


def test_compare_draws_params_and_metrics_one_line_and_point_per_run(ising, page):
    """Compare: the compared runs' params and metrics as parallel coordinates and a scatter."""
    url, ids = ising
    sims = ids["completed"]["ising-L24"][::14][:4]  # four temperatures
    page.goto(url + "/compare?ids=" + ",".join(sims))
    plot = page.locator("#compare-parcoords")
    expect(plot.locator(".main-svg").first).to_be_visible(timeout=20_000)
    dims = page.evaluate(
        "document.getElementById('compare-parcoords').data[0].dimensions"
        ".map(d => [d.label, d.values.length])"
    )
    labels = [label for label, _ in dims]
    assert {"temp", "seed", "energy"} <= set(labels), labels
    assert all(n == 4 for _, n in dims)  # one line per compared run on every axis
    expect(page.locator("#compare-scatter .main-svg").first).to_be_visible()
    assert page.evaluate("document.getElementById('compare-scatter').data.length") == 4
    expect(page.locator("#compare-scatter .scatterlayer .point")).to_have_count(4)
    page.select_option("#cmp-x", "params.temp")
    page.select_option("#cmp-y", "metrics.energy")
    points = page.evaluate(
        "document.getElementById('compare-scatter').data.map(t => [t.name, t.x[0], t.y[0]])"
    )
    assert [name.split()[0] for name, _, _ in points] == [s[:8] for s in sims]
    assert all(isinstance(x, float) and isinstance(y, float) for _, x, y in points)
    page.locator("#compare-plots").scroll_into_view_if_needed()
    shot(page, "study-compare-plots-1400")
    # runs with different params (an analysis and a sim) still get their points
    page.goto(url + f"/compare?ids={ids['tcs'][0]},{sims[0]}")
    expect(page.locator("#compare-scatter .main-svg").first).to_be_visible(timeout=20_000)
    assert page.evaluate("document.getElementById('compare-scatter').data.length") == 2


def test_flow_expands_a_folded_experiment_in_place(ising, page):
    """Flow graph: "expand" draws the experiment's runs without a navigation; reload keeps it."""
    url, ids = ising
    final = ids["final"]
    page.goto(url + f"/runs/{final}/lineage")
    l32 = ids["completed"]["ising-L32"]
    expect(page.locator("#flow svg")).to_be_visible()
    assert page.locator(f"#flow a[href='/runs/{l32[0]}']").count() == 0
    page.locator("#zoom-in").click()
    before = page.evaluate("document.querySelector('#flow svg').getAttribute('viewBox')")
    page.evaluate("window.notReloaded = true")
    page.locator("#folded a.expand[data-name='ising-L32']").click()
    expect(page.locator(f"#flow a[href='/runs/{l32[0]}']")).to_have_count(1, timeout=15_000)
    assert page.evaluate("window.notReloaded === true")  # no navigation happened
    for run in l32:
        expect(page.locator(f"#flow a[href='/runs/{run}']")).to_have_count(1)
    expect(page.locator("#flow a[href='/experiments/ising-L24']").first).to_be_attached()
    expect(page.locator("#flow-count")).to_have_text("80 runs")  # the same runs, more nodes
    after = page.evaluate("document.querySelector('#flow svg').getAttribute('viewBox')")
    width = lambda box: float(box.split()[2])  # noqa: E731
    assert width(after) == pytest.approx(width(before))  # the zoom is kept
    assert "expand=ising-L32" in page.url
    assert page.locator("#folded a.expand").count() == 1  # only ising-L24 is left to expand
    assert page.locator("input[name=expand][value='ising-L32']").count() == 1
    page.reload()
    expect(page.locator(f"#flow a[href='/runs/{l32[0]}']")).to_have_count(1)
    shot(page, "study-flow-expanded-1400")


def test_overlay_of_one_metric_across_the_runs_selected_in_the_table(ising, page):
    """Time series: tick runs on `/`, "Overlay a metric", one chart with a line per run."""
    url, ids = ising
    sims = ids["completed"]["ising-L32"][::6][:3]  # three temperatures
    page.goto(url + "/?limit=100")
    button = page.locator("#overlay-button")
    expect(button).to_be_disabled()
    for run in [*sims, ids["tcs"][0]]:
        page.locator(f"input[name=ids][value='{run}']").check()
    expect(button).to_be_enabled()
    button.click()
    chart = page.locator("#overlay-chart")
    expect(chart.locator(".main-svg").first).to_be_visible(timeout=20_000)
    assert page.locator("#overlay-metric option").all_inner_texts() == ["energy", "magnetization"]
    page.select_option("#overlay-metric", "magnetization")
    page.wait_for_function(
        "document.getElementById('overlay-chart').layout.yaxis.title.text === 'magnetization'"
    )
    traces = page.evaluate(
        "document.getElementById('overlay-chart').data.map(t => [t.name, t.x.length])"
    )
    assert sorted(traces) == sorted([s[:8], 30] for s in sims)  # in the order of the table
    expect(chart.locator(".scatterlayer .trace")).to_have_count(3)
    expect(page.locator("#overlay-note")).to_have_text(
        "1 of the 4 selected runs has no time series."
    )
    expect(page.locator("#overlay-what")).to_have_text("(magnetization, 3 runs)")
    shot(page, "study-overlay-1400")
