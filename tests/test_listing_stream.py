"""`ls --format json|csv` streams the index's rows: the same listing, flat in memory."""

from __future__ import annotations

import json
from pathlib import Path

from gittrack import store
from gittrack.cli.table import render_runs
from gittrack.library.listing import list_runs


def _record(repo: Path, run_cli) -> list[str]:
    """Four runs: a NaN param and metric, a git-note tag and note, one with a label."""
    for args in (["--temp", "1"], ["--temp", "nan"], ["--temp", "3", "--label", "ü"], []):
        result = run_cli(repo, "run", "sim.py", *args)
        assert result.exit_code == 0, result.output
    ids = [r["id"] for r in list_runs(store.find_repo(repo)).rows]
    assert run_cli(repo, "tag", ids[1][:8], "reference").exit_code == 0
    assert run_cli(repo, "note", ids[2][:8], "kept for the paper").exit_code == 0
    return ids


def _same(a: object, b: object) -> bool:
    """Equal as JSON text (a NaN equals itself there)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_json_listing_has_one_run_a_line_and_the_same_rows(tracked_repo: Path, run_cli) -> None:
    ids = _record(tracked_repo, run_cli)
    expected = list_runs(store.find_repo(tracked_repo), varying=False).rows
    result = run_cli(tracked_repo, "ls", "--format", "json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == len(ids) + 2
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ids
    assert _same(rows, expected)
    tagged = next(r for r in rows if r["id"] == ids[1])
    assert tagged["tags"] == ["reference"] and tagged["commit"]
    assert next(r for r in rows if r["id"] == ids[2])["note"] == "kept for the paper"
    limited = json.loads(run_cli(tracked_repo, "ls", "--json", "--limit", "2").stdout)
    assert [r["id"] for r in limited] == ids[:2]


def test_csv_and_column_listings_match_the_table_of_the_same_runs(
    tracked_repo: Path, run_cli
) -> None:
    _record(tracked_repo, run_cli)
    repo = store.find_repo(tracked_repo)
    for args in ([], ["--where", "params.temp >= 1", "--sort=-metrics.energy"]):
        where = args[1] if args else None
        sort = args[2].partition("=")[2] if args else None
        listing = list_runs(repo, where=where, sort=sort, varying=False)
        result = run_cli(tracked_repo, "ls", *args, "--format", "csv")
        assert result.exit_code == 0, result.output
        assert result.stdout == render_runs(listing, "csv")
    columns = "id,params.temp,metrics.*,tags,note,commit"
    listing = list_runs(repo, columns=columns, varying=False)
    result = run_cli(tracked_repo, "ls", "--columns", columns, "--format", "json")
    assert _same(
        json.loads(result.stdout), json.loads(render_runs(listing, "json", listing.columns))
    )
    assert run_cli(tracked_repo, "ls", "--where", "params.temp > 99", "--json").stdout == "[]\n"


ODD = """\
import click
import gittrack


@gittrack.command()
@click.option("--flag/--no-flag", default=False)
@click.option("--size", type=int, multiple=True)
@click.option("--text", default="plain")
@click.option("--ratio", type=float, default=0.5)
def main(flag, size, text, ratio):
    return {
        "tiny": 1.234e-05,
        "small": 0.000123,
        "huge": 1e16,
        "wide": 1234567890123456.0,
        "big": 2**62,
        "ok": flag,
        "fit": {"slope": ratio, "label": text},
        "word": text,
    }
"""


def test_csv_cells_of_odd_values_are_those_of_the_table(tracked_repo: Path, run_cli) -> None:
    """Bools, lists, nested tables, float spellings and text that needs quoting or looks
    like JSON: the streamed CSV (its quick way for plain rows included) is the table's CSV."""
    (tracked_repo / "odd.py").write_text(ODD)
    texts = ["plain", 'say "hi", twice', "line\nbreak", "[not a list]", "true", "ü {x}", ""]
    for n, text in enumerate(texts):
        flags = ["--flag"] if n % 2 else []
        sizes = [f"--size={s}" for s in range(n % 3)]
        ratio = ["--ratio", ["1e-07", "0.25", "3", "1e300"][n % 4]]
        result = run_cli(tracked_repo, "run", "odd.py", "--text", text, *flags, *sizes, *ratio)
        assert result.exit_code == 0, result.output
    assert run_cli(tracked_repo, "tag", "latest", "ab", "c").exit_code == 0
    assert run_cli(tracked_repo, "note", "latest", "a note, with a comma").exit_code == 0
    repo = store.find_repo(tracked_repo)
    flat = "id,params.*,metrics.tiny,metrics.small,metrics.huge,metrics.wide,metrics.big"
    for columns in (
        None,
        f"{flat},metrics.ok,metrics.word,note,tags,commit",
        "metrics.word",
        "tags",
    ):
        listing = list_runs(repo, columns=columns, varying=False)
        args = ["--columns", columns] if columns else []
        result = run_cli(tracked_repo, "ls", *args, "--format", "csv")
        assert result.exit_code == 0, result.output
        assert result.stdout == render_runs(listing, "csv", listing.columns if columns else None)
        assert len(result.stdout.splitlines()) > len(texts)
