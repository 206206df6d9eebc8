"""The query language: parsing, errors with positions, and what each query finds in a real index."""

from __future__ import annotations

from pathlib import Path

import pytest
from lookup_support import scan, write_runs

import gittrack
from gittrack import store
from gittrack.errors import QueryError
from gittrack.index.compiler import compile_order, compile_where
from gittrack.index.dates import date_span
from gittrack.index.db import Index
from gittrack.index.query import tokenize


def names(repo: Path, where: str, sort: str | None = None) -> list[str]:
    """The names of the runs `where` finds, in order; the same whether each value condition
    lists its runs first or looks each run up (`probe`, for a walk that stops early)."""
    order, order_params = compile_order(sort) if sort else ("runs.started_ts DESC, runs.id", [])
    index = Index(store.find_repo(repo))
    found = []
    try:
        for probe in (False, True):
            sql, params = compile_where(where, probe=probe)
            rows = index.select(sql, params, order, order_params=order_params)
            found.append([r["record"]["name"] for r in rows])
    finally:
        index.close()
    assert found[0] == found[1]
    return found[0]


@pytest.fixture
def scanned(repo: Path) -> Path:
    write_runs(repo, scan(12))
    return repo


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "position", "expected"),
    [
        ("params.temp >>> 2", 13, "a value (a number, 'text', true or false), found '>'"),
        ("(params.temp > 1", 16, "')' to close the '(' at position 1, found the end of the query"),
        (
            "params.temp > 1)",
            15,
            "'and', 'or' or the end of the query (this ')' has no '('), found ')'",
        ),
        (
            "((params.temp > 1) or (status = 'failed')",
            41,
            "')' to close the '(' at position 1, found the end of the query",
        ),
        (
            "foo.bar = 1",
            0,
            "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'foo.bar'",
        ),
        (
            "temp > 1",
            0,
            "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'temp' (did you mean params.temp or metrics.temp?)",
        ),
        (
            "stauts = 'failed'",
            0,
            "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'stauts' (did you mean status?)",
        ),
        (
            "param.temp > 1",
            0,
            "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'param.temp' (did you mean params.temp?)",
        ),
        ("params.temp > 1; DROP TABLE runs", 15, "'and', 'or' or the end of the query, found ';'"),
        ("name = 'scan", 7, "a closing ' for the text that starts here"),
        ("params = 1", 6, "a key after 'params', e.g. params.temp"),
        ("", 0, 'a condition such as "params.temp >= 200", found the end of the query'),
        (
            "params.temp",
            11,
            "an operator (=, !=, <, <=, >, >=, in, like), found the end of the query",
        ),
        (
            "params.seed in (1, 3",
            20,
            "',' or ')' in the list of values, found the end of the query",
        ),
        ("name like 5", 10, "a quoted pattern after 'like', e.g. 'scan-%', found '5'"),
        ("tags > 'x'", 0, "=, !=, in or like after 'tags' (a run carries a tag or not)"),
        ("started > 5", 10, "a date such as '2024-05-01' or '2024-05-01 14:30' for started"),
        ("duration_s > 'long'", 13, "a number, as duration_s is numeric"),
        ("params.temp not = 3", 16, "'in' or 'like' after 'not', found '='"),
    ],
)
def test_malformed_queries_name_position_and_expectation(
    query: str, position: int, expected: str
) -> None:
    with pytest.raises(QueryError) as info:
        compile_where(query)
    assert (info.value.position, info.value.expected) == (position, expected)
    assert str(info.value).splitlines() == [
        f"Invalid query at position {position + 1}: expected {expected}.",
        f"  {query}",
        "  " + " " * position + "^",
    ]


def test_values_are_bound_parameters_never_pasted() -> None:
    sql, params = compile_where("name = 'x''); DROP TABLE runs; --' or metrics.\"a'b\" > 1")
    assert "DROP" not in sql and "a'b" not in sql
    assert params == ["x'); DROP TABLE runs; --", "metrics", "a'b", 1]


def test_tokens_keywords_are_case_insensitive_and_strings_unescape() -> None:
    kinds = [(t.kind, t.text) for t in tokenize("NOT x.y IN ('it''s', -1.5e3) And")]
    assert kinds[0] == ("keyword", "not") and kinds[3] == ("punct", "(")
    assert [t.value for t in tokenize('\'it\'\'s\' "say ""hi"""')[:2]] == ["it's", 'say "hi"']


# -- what queries find --------------------------------------------------------------------------


def test_issue_queries(scanned: Path) -> None:
    # energy = -0.2 i, temp = 100 (i + 1), failed when i % 5 == 4
    assert names(
        scanned, "params.temp >= 200 and (metrics.energy < -1.5 or status = 'failed')"
    ) == [
        "scan-11",
        "scan-10",
        "scan-9",
        "scan-8",
        "scan-4",
    ]
    assert names(scanned, "params.seed in (1, 3) and name like 'scan-1%'", "-metrics.energy") == [
        "scan-1",
        "scan-11",
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("params.temp = 300", ["scan-2"]),
        ("params.temp = 300.0", ["scan-2"]),
        ("params.temp != 300 and params.temp <= 400", ["scan-3", "scan-1", "scan-0"]),
        ("not params.temp > 200", ["scan-1", "scan-0"]),
        ("params.seed not in (0, 1, 2)", ["scan-11", "scan-7", "scan-3"]),
        ("params.method = 'verlet' and metrics.energy > -0.3", ["scan-1", "scan-0"]),
        ("name not like 'scan-1%' and status = 'failed'", ["scan-9", "scan-4"]),
        ("NAME LIKE 'SCAN-1_'", ["scan-11", "scan-10"]),
        ("tags = 'baseline'", ["scan-0"]),
        ("tags != 'baseline' and params.temp < 300", ["scan-1"]),
        ("tags in ('x', 'baseline')", ["scan-0"]),
        ("tags like 'base%'", ["scan-0"]),
        ("params.missing = 1", []),
        ("params.missing != 1", []),
        ("not params.missing = 1 and params.temp < 200", ["scan-0"]),
        ("duration_s > 70", ["scan-11"]),
        ("duration_s >= '70'", ["scan-11", "scan-10"]),
        ("started < '2024-05-01T14:00:00Z'", ["scan-1", "scan-0"]),
        ("started = '2024-05-01T13Z'", ["scan-1"]),
        ("started >= '2024-05-01 21:00+00:00'", ["scan-11", "scan-10", "scan-9"]),
        ("finished > '2024-05-01T22:00Z'", ["scan-11", "scan-10"]),
        ("env.host = 'node1' and params.temp = 100", ["scan-0"]),
        ("id like '0003%'", ["scan-3"]),
        ("command = 'sim.py' and params.temp > 1100", ["scan-11"]),
    ],
)
def test_query_results(scanned: Path, where: str, expected: list[str]) -> None:
    assert names(scanned, where) == expected


def test_dates_cover_their_precision() -> None:
    lo, hi = date_span("2024-05-01Z") or (0, 0)
    assert hi - lo == 86400
    lo, hi = date_span("2024-02") or (0, 0)
    assert round((hi - lo) / 86400) == 29
    assert date_span("yesterday") is not None and date_span("not a date") is None


def test_mixed_int_and_str_params(repo: Path) -> None:
    """A param that is an int in one run and a string in another: numbers compare numerically
    (numeric strings included), text compares the written spelling."""
    write_runs(
        repo,
        [
            {"name": "int", "params": {"size": 200, "flag": True}},
            {"name": "str-number", "params": {"size": "300", "flag": "yes"}},
            {"name": "str-word", "params": {"size": "large", "flag": False}},
            {"name": "float", "params": {"size": 200.0}},
            {"name": "list", "params": {"size": [10, 20]}},
        ],
    )
    assert names(repo, "params.size > 100") == ["float", "str-number", "int"]
    assert names(repo, "params.size = 200") == ["float", "int"]
    assert names(repo, "params.size = '200'") == ["int"]
    assert names(repo, "params.size = '300'") == ["str-number"]
    assert names(repo, "params.size = 'large'") == ["str-word"]
    assert names(repo, "params.size in (300, 'large')") == ["str-word", "str-number"]
    assert names(repo, "params.size != 200") == ["list", "str-word", "str-number"]
    assert names(repo, "params.size = 20") == ["list"]  # a list matches when an element does
    assert names(repo, "params.flag = true") == ["int"]
    assert names(repo, "params.flag = false") == ["str-word"]
    assert names(repo, "params.flag = 'yes'") == ["str-number"]
    assert names(repo, "params.size like '%0'") == ["list", "float", "str-number", "int"]


def test_sorting_numbers_then_text_missing_last(repo: Path) -> None:
    write_runs(
        repo,
        [
            {"name": "a", "params": {"x": 10}, "metrics": {"m": 1.5}},
            {"name": "b", "params": {"x": 2}, "metrics": {"m": 1.5}},
            {"name": "c", "params": {"x": "word"}},
            {"name": "d", "params": {}, "metrics": {"m": -3.0}},
        ],
    )
    assert names(repo, "status = 'completed'", "params.x") == ["b", "a", "c", "d"]
    assert names(repo, "status = 'completed'", "-params.x") == ["a", "b", "c", "d"]
    assert names(repo, "status = 'completed'", "-metrics.m,params.x") == ["b", "a", "d", "c"]
    assert names(repo, "status = 'completed'", "name") == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("spec", "position", "expected"),
    [
        ("-metrics.energy,,name", 16, "a field to sort by, e.g. -metrics.energy"),
        (
            "bogus",
            0,
            "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, tags, code.commit, params.X, metrics.X or env.X, found 'bogus' (did you mean params.bogus or metrics.bogus?)",
        ),
        ("name, -tags", 7, "a field other than tags to sort by"),
        ("-1", 1, "a field to sort by, e.g. -metrics.energy"),
    ],
)
def test_bad_sort_keys(spec: str, position: int, expected: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_order(spec)
    assert (info.value.position, info.value.expected) == (position, expected)


def test_python_api_runs_and_pandas(scanned: Path) -> None:
    table = gittrack.runs(where="params.temp >= 1000", repo=scanned)
    assert len(table) == 3
    assert [r.name for r in table] == ["scan-11", "scan-10", "scan-9"]
    assert table.get("scan-10").params["temp"] == 1100
    df = table.to_pandas()
    assert list(df["id"]) == table.ids
    assert {
        "id",
        "status",
        "params.temp",
        "params.seed",
        "metrics.energy",
        "tags",
        "started",
    } <= set(df.columns)
    assert df["params.temp"].tolist() == [1200, 1100, 1000]
    assert str(df["params.temp"].dtype) == "Int64"  # nullable: stays int even when a run lacks it
    with pytest.raises(QueryError):
        gittrack.runs(where="params.temp >>> 2", repo=scanned)


def test_a_limited_listing_walks_runs_in_order_and_stops_early(scanned: Path) -> None:
    """With a limit and no sort each value condition is a look-up of the run walked (kv's
    primary key, tags' and members' run indexes), never a list of every matching run."""
    where = (
        "params.temp >= 200 and (metrics.energy != 3 or tags in ('x') or experiment = 'e'"
        " or experiment = '' or params.seed like '1%')"
    )
    index = Index(store.find_repo(scanned))
    index.sync()
    for probe in (False, True):
        sql, params = compile_where(where, probe=probe)
        plan = " | ".join(
            r[3]
            for r in index.db.execute(
                "EXPLAIN QUERY PLAN SELECT rid FROM run_fields AS runs WHERE "
                f"{sql} ORDER BY runs.started_ts DESC, runs.id LIMIT 20",
                params,
            )
        )
        assert ("LIST SUBQUERY" in plan) is not probe, plan
        assert "SCAN runs USING INDEX runs_started" in plan
    index.close()
    listed = gittrack.runs(where=where, repo=scanned)
    assert [r.name for r in gittrack.runs(where=where, repo=scanned, limit=3)] == [
        r.name for r in listed
    ][:3]
    assert len(listed) > 3


@pytest.mark.parametrize("walk_first", [2, 5, 5000])
def test_a_limited_listing_is_the_start_of_the_whole_one(
    scanned: Path, monkeypatch: pytest.MonkeyPatch, walk_first: int
) -> None:
    """The runs walked one by one first (however many), then the lists when the matches
    among them do not fill the limit: always the first runs of the whole listing."""
    import gittrack.index.db

    monkeypatch.setattr(gittrack.index.db, "WALK_FIRST", walk_first)
    for where in ("params.temp >= 200", "params.temp > 99999", "params.temp = 300", "tags = 'x'"):
        whole = [r.name for r in gittrack.runs(where=where, repo=scanned)]
        for limit in (1, 2, 3, 20):
            found = [r.name for r in gittrack.runs(where=where, repo=scanned, limit=limit)]
            assert found == whole[:limit], (where, limit)
