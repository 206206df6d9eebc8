"""The UI over the Ising study of issue 13 (two sweeps, failed runs, chained analyses), in-process.

Each test is one finding of that issue: what a scientist sees at a glance.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from uidata import study

from gittrack.cli import cli
from gittrack.ui import create_app


@pytest.fixture
def ising(repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return study(repo, monkeypatch) | {"path": repo}


@pytest.fixture
def client(ising) -> TestClient:
    return TestClient(create_app(ising["path"], port=8765), base_url="http://127.0.0.1:8765")


def headers(html: str) -> list[str]:
    return re.findall(r'<a href="[^"]*" title="([^"]+)"', html)


def test_list_params_collapse_to_a_link_that_opens_those_runs(client, ising):
    """Finding 1: a `sims` param of 58 ids is one "58 runs ▸" link, not 2,000 characters."""
    html = client.get("/").text
    l24 = ising["completed"]["ising-L24"]
    assert "58 runs ▸" in html and "19 runs ▸" in html
    assert ", ".join(l24[:2]) not in html  # the ids are not spelled out in the table
    link = unescape(re.search(r'<a class="refs" href="([^"]+)"[^>]*>58 runs', html).group(1))
    opened = client.get(link + "&limit=100").text
    assert set(re.findall(r'data-id="([0-9a-f]+)"', opened)) == set(l24)


def test_sweep_params_and_metrics_come_first_with_a_command_column(client):
    """Finding 1: varying params, then metrics, then list params; `command` when several."""
    cols = headers(client.get("/").text)
    assert cols[:4] == ["id", "name", "status", "command"]
    assert cols.index("params.temp") < cols.index("metrics.energy") < cols.index("params.sims")
    assert cols[-3:] == ["experiment", "started", "duration_s"]
    assert "params.steps" not in cols  # the same in every run that has it
    html = client.get("/").text
    link = unescape(re.search(r'href="(/\?where=command[^"]+)"[^>]*>tc\.py<', html).group(1))
    one = client.get(link).text
    assert len(re.findall(r'data-id="', one)) == 2
    assert "command" not in headers(one) and "metrics.Tc" in headers(one)


def test_compare_shows_short_hashes_caps_loudly_and_counts_right(client, ising):
    """Finding 8: no 40-character commit, a note past 20 runs, "Compare 1 run"."""
    tc = ising["tcs"][0]
    html = client.get("/compare", params={"ids": tc}).text
    assert "Compare 1 run<" in html
    commit = re.search(r'title="([0-9a-f]{40})">([0-9a-f]+)<', html)
    assert commit and len(commit.group(2)) == 10
    assert ">58 runs ▸<" in html and "metrics.Tc" in html
    many = ",".join(ising["sweeps"]["ising-L24"][:25])
    capped = client.get("/compare", params={"ids": many}).text
    assert "Compare 20 runs" in capped
    assert "Showing the first 20 of 25 runs" in unescape(capped)


def test_flow_graph_folds_experiments_and_every_node_link_works(client, ising):
    """Finding 2: past 20 runs each sweep is one node saying what it holds; links all work."""
    html = client.get(f"/runs/{ising['final']}/lineage").text
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    assert "experiment ising-L24" in text and "58 runs" in text
    assert "temp: 1.6..3 (12 values)" in text and "seed: 0..4 (5 values)" in text
    assert "80 runs" in text  # 58 + 19 folded, two analyses and the final one
    links = set(re.findall(r'<a href="(/[^"]+)"', html.split('id="flow"')[1]))
    assert "/experiments/ising-L24" in links and "/experiments/ising-L32" in links
    for link in links:
        assert client.get(unescape(link)).status_code == 200, link
    every = client.get(f"/runs/{ising['final']}/lineage", params={"fold": "0"}).text
    assert all(f'href="/runs/{s}"' in every for s in ising["completed"]["ising-L24"])
    one = client.get(
        f"/runs/{ising['final']}/lineage", params={"expand": "ising-L32"}
    ).text  # one experiment expanded in place, the other still folded
    assert all(f'href="/runs/{s}"' in one for s in ising["completed"]["ising-L32"])
    assert 'href="/experiments/ising-L24"' in one.split('id="flow"')[1]


def test_cli_lineage_and_report_fold_the_same_way(ising, tmp_path):
    """Finding 2: `gittrack lineage` SVG and the report draw the same folded nodes."""
    out = tmp_path / "flow.svg"
    result = CliRunner().invoke(
        cli, ["-C", str(ising["path"]), "lineage", ising["final"], "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Wrote {out} (80 runs, 8 edges)."
    svg = out.read_text()
    assert "experiment ising&#45;L24" in svg and "58 runs" in svg
    assert 'xlink:href="/experiments/ising-L24"' in svg
    report = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["-C", str(ising["path"]), "report", "-o", str(report)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    flow = html.split('id="flow"')[1]
    assert "58 runs" in flow and "19 runs" in flow
    for anchor in set(re.findall(r'href="#(run-[0-9a-f]+)"', flow)):
        assert f'id="{anchor}"' in html  # every node lands on a row of the table


def test_experiment_page_plots_its_own_runs_and_an_empty_filter_is_empty(client, ising):
    """Finding 3: the plot data of an experiment page is that experiment's runs; no 404."""
    html = client.get("/experiments/ising-L32").text
    box = re.search(r'<details class="card plots" id="plots"([^>]+)>', html).group(1)
    assert 'data-experiment="ising-L32"' in box
    data = client.get(
        "/api/plot", params={"cols": "params.temp,metrics.energy", "experiment": "ising-L32"}
    ).json()
    assert sorted(data["id"]) == sorted(ising["sweeps"]["ising-L32"])
    empty = client.get("/experiments/ising-L32", params={"where": "params.temp > 100"})
    assert empty.status_code == 200
    assert "No runs match this filter." in re.sub(r"<[^>]+>", "", empty.text)
    assert client.get("/experiments/no-such-scan").status_code == 404


def test_outputs_are_previewed_images_inline_and_tables_as_first_rows(client, ising):
    """Finding 5: the PNG an analysis wrote is shown; a CSV output shows its first rows."""
    tc = ising["tcs"][0]
    html = client.get(f"/runs/{tc}").text
    src = re.search(r'<img src="([^"]+)" alt="output binder.png', html).group(1)
    image = client.get(unescape(src))
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    sim = ising["completed"]["ising-L24"][0]
    page = client.get(f"/runs/{sim}").text
    figure = page.split('class="preview preview-table"')[1].split("</figure>")[0]
    assert re.findall(r"<th>([^<]+)</th>", figure) == ["step", "energy", "magnetization"]
    assert "first 20 of 30 rows" in figure


def test_inputs_grouped_by_experiment_with_what_varies_and_the_query(client, ising):
    """Finding 6: not 58 rows of "ising.py completed" but one group saying what varies."""
    html = client.get(f"/runs/{ising['tcs'][0]}").text
    inputs = html.split('id="inputs"')[1].split("</section>")[0]
    text = unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inputs)))
    assert "sims given as experiment = 'ising-L24' and status = 'completed'" in text
    assert "experiment ising-L24 · 58 runs · seed 0..4 (5 values) · temp 1.6..3 (12 values)" in text
    heads = re.findall(r'<th class="num">([^<]+)</th>', inputs)
    assert heads == ["seed", "temp"]  # L and steps are the same for all: not repeated
    assert inputs.count('href="/runs/') == 58


def test_report_of_the_study_is_light_with_static_plots(ising, tmp_path):
    """Finding 10: plots drawn as SVG (no plotly.js inlined): the study's report is small."""
    report = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["-C", str(ising["path"]), "report", "-o", str(report)])
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert len(html.encode()) < 1_500_000
    assert "Plotly" not in html and "<script src" not in html
    scatters = html.split('id="scatters"')[1]
    assert "mean ± standard error" in scatters  # temperature repeats over seeds
    assert 'aria-label="metrics.susceptibility against params.temp"' in scatters


def contrast(fg: str, bg: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_labelled_filter_readable_grey_and_a_favicon(client):
    """Finding 11: the filter has a label, grey text reaches 4.5:1, the favicon exists."""
    html = client.get("/").text
    assert re.search(r'<label for="where"[^>]*>[^<]+</label>', html)
    css = client.get("/static/app.css").text
    colours = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{3,6})\b", css))
    for background in (colours["bg"], "#ffffff", "#f8fafc", "#f1f5f9"):
        assert contrast(colours["muted"], background) >= 4.5, background
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
    assert 'rel="icon"' in html


def test_a_wide_fan_in_unfolded_is_a_grid_not_a_column(ising, tmp_path):
    """Finding 2: 58 inputs drawn run by run fill a grid, not one column 4,000 pt tall."""
    out = tmp_path / "wide.svg"
    tc = ising["tcs"][0]
    args = ["-C", str(ising["path"]), "lineage", tc, "--no-collapse", "-o", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    width, height = map(
        int, re.search(r'<svg width="(\d+)pt" height="(\d+)pt"', out.read_text()).groups()
    )
    assert height < 1.5 * width, (width, height)
    assert all(
        f'xlink:href="/runs/{s}"' in out.read_text() for s in ising["completed"]["ising-L24"]
    )


def test_first_table_page_reads_no_record_per_run(ising, monkeypatch):
    """The first page at any size: which columns vary, which params are lists and how many
    commands come from the index's small tables; only the page's rows and one record per
    column shape are read, never every record (no json_each over the runs)."""
    from gittrack.index.db import Index
    from gittrack.library import browse

    Index(ising["repo"]).sync()  # built once; what is measured is reading it
    statements: list[str] = []

    class Traced(Index):
        @property
        def db(self):
            db = super().db
            db.set_trace_callback(statements.append)
            return db

    monkeypatch.setattr(browse, "Index", Traced)
    getattr(browse, "CENSUS_CACHE", {}).clear()
    page = browse.page(ising["repo"])
    assert page.total == 83
    assert page.columns == [  # what the old reading of every record chose
        *("id", "name", "status", "command", "params.L", "params.temp", "params.seed"),
        *("metrics.energy", "metrics.magnetization", "metrics.susceptibility", "metrics.Tc"),
        *("params.sims", "experiment", "started", "duration_s"),
    ]  # not params.tcs: one run has it, so it does not vary
    reading = [s for s in statements if "record" in s and "json_each" in s]
    assert not reading, reading
    for sql in statements:  # records are read by row id, a page or a shape's sample at a time
        if "FROM records" in sql or "r.record" in sql:
            assert "rid IN (" in sql, sql
    statements.clear()
    assert browse.page(ising["repo"]).columns == page.columns
    assert not [s for s in statements if "GROUP BY" in s]  # the census is remembered


def test_api_series_gives_each_selected_runs_time_series(client, ising):
    """The overlay's data: one series per run asked for, {} for a run that logged none."""
    sims = ising["completed"]["ising-L32"][:2]
    tc = ising["tcs"][0]
    data = client.get("/api/series", params={"ids": ",".join([*sims, tc[:8]])}).json()
    assert list(data) == [*sims, tc]
    assert list(data[sims[0]]) == ["step", "energy", "magnetization"]
    assert len(data[sims[0]]["energy"]) == 30 and data[tc] == {}
    missing = client.get("/api/series", params={"ids": "nosuchrun"})
    assert missing.status_code == 404 and "nosuchrun" in missing.json()["error"]
    assert client.get("/api/series").status_code == 400


def test_census_of_a_query_is_what_its_runs_hold(ising):
    """Which columns vary among the runs a query matches (lists compared whole), how many
    runs have each, found for every column at once: the same as reading each run's record."""
    import json

    from gittrack.index.db import Index
    from gittrack.library import browse
    from gittrack.library.listing import list_runs
    from gittrack.model.values import cell

    repo = ising["repo"]
    index = Index(repo)
    index.sync()
    for where in (None, "params.temp >= 2.3", "experiment = 'ising-L24'", "params.L = 24"):
        found = browse.census(index, *browse.where_sql(where))
        rows = list_runs(repo, where=where, varying=False).rows
        assert found.total == len(rows) > 0, where
        for column, (distinct, count, _) in found.stats.items():
            values = [cell(r, column) for r in rows if cell(r, column) is not None]
            assert count == len(values), (where, column)
            assert distinct == min(len({json.dumps(v) for v in values}), 2), (where, column)
    index.close()
