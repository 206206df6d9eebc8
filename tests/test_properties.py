"""Properties over many inputs (Hypothesis): params survive recording, and queries fail only
as QueryError.

Only the public API is imported.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write_script
from hypothesis import HealthCheck, example, given, settings, strategies as st
from test_hostile_ops import BAD_QUERIES, MANY_ORS, invoke, record_array_runs

import gittrack
from gittrack.cli import cli

SHARED_REPO = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def no_crash(output: str, what: str) -> None:
    assert "unexpected" not in output.lower(), (what, output[:2000])
    assert "Traceback" not in output, (what, output[:2000])


# -- params survive record -> TOML -> index -> show --json ------------------------------------

PARAMS_SIM = """
import json, click, gittrack


class Json(click.ParamType):
    name = "json"

    def convert(self, value, param, ctx):
        return json.loads(value) if isinstance(value, str) else value


@gittrack.command()
@click.option("--i", type=int)
@click.option("--f", type=float)
@click.option("--b/--no-b", default=False)
@click.option("--s", type=str)
@click.option("--ints", type=int, multiple=True)
@click.option("--strs", type=str, multiple=True)
@click.option("--tree", type=Json())
def main(**params):
    return {"ok": 1}


if __name__ == "__main__":
    main()
"""

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
KEY = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)
SCALAR = st.one_of(INT64, FLOATS, st.booleans(), TEXT)
TREE = st.dictionaries(
    KEY,
    st.recursive(
        SCALAR,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=5,
)


@pytest.fixture
def params_repo(tracked_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_script(tracked_repo, "params.py", PARAMS_SIM)
    monkeypatch.chdir(tracked_repo)
    return tracked_repo


@settings(SHARED_REPO, max_examples=40)
@given(
    i=INT64,
    f=FLOATS,
    b=st.booleans(),
    s=TEXT,
    ints=st.lists(INT64, max_size=4),
    strs=st.lists(TEXT, max_size=4),
    tree=TREE,
)
@example(i=2**63 - 1, f=-0.0, b=True, s="", ints=[], strs=[""], tree={})
@example(
    i=-1,
    f=1e-310,
    b=False,
    s="é\n\"'\\\t ☃ 🚀",
    ints=[0, -(2**63)],
    strs=["--i", "-"],
    tree={"a.b": {"": [1, 2.5, "x", True, [], {}]}, "[x]": [{"k": 1}, {"k": "v"}]},
)
def test_any_params_survive_record_and_show(
    params_repo: Path,
    i: int,
    f: float,
    b: bool,
    s: str,
    ints: list[int],
    strs: list[str],
    tree: dict[str, Any],
) -> None:
    args = ["--i", str(i), "--f", repr(f), "--b" if b else "--no-b", "--s", s]
    for value in ints:
        args += ["--ints", str(value)]
    for value in strs:
        args += ["--strs", value]
    args += ["--tree", json.dumps(tree)]
    ran = CliRunner().invoke(cli, ["-C", str(params_repo), "run", "--force", "params.py", *args])
    no_crash(ran.output, "run")
    assert ran.exit_code == 0, ran.output
    found = re.search(r"run ([0-9a-f]{8}) recorded", ran.output)
    assert found, ran.output
    expected = {"i": i, "f": f, "b": b, "s": s, "ints": ints, "strs": strs, "tree": tree}
    shown = invoke(params_repo, "show", found.group(1), "--json")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert record["params"] == expected
    listed = invoke(params_repo, "ls", "--json", "--where", f"id = '{record['id']}'")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["params"] == expected


# -- the query parser fails only as QueryError -------------------------------------------------

FIELDS = [
    "id",
    "name",
    "status",
    "started",
    "finished",
    "duration_s",
    "tags",
    "experiment",
    "params.seed",
    "metrics.energy",
    "env.python",
    'params."a b"',
    "params.x.y",
]
WORDS = [
    "and",
    "or",
    "not",
    "in",
    "like",
    "true",
    "false",
    "(",
    ")",
    ",",
    "=",
    "==",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
]
VALUES = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=12).map(lambda t: "'" + t.replace("'", "''") + "'"),
    st.sampled_from(
        [
            "'2024-13-45'",
            "'2024-02-30'",
            "'2024-01-01T25:00'",
            "'0000-00-00'",
            "1e999",
            "-1e999",
            "9" * 400,
            "'" + "9" * 5000 + "'",
            ".5",
            "1.",
            "+3",
        ]
    ),
)
TOKENS = st.lists(st.one_of(st.sampled_from(FIELDS), st.sampled_from(WORDS), VALUES), max_size=20)
COMPARISON = st.tuples(
    st.sampled_from(FIELDS), st.sampled_from(["=", "!=", "<", ">=", "like", "in"]), VALUES
).map(lambda t: f"{t[0]} {t[1]} ({t[2]})" if t[1] == "in" else " ".join(t))
DATES = st.tuples(
    st.integers(0, 99999), st.integers(0, 99), st.integers(0, 99), st.sampled_from(["", "T25:61"])
).map(lambda t: f"'{t[0]:04d}-{t[1]:02d}-{t[2]:02d}{t[3]}'")
DATE_COMPARISON = st.tuples(
    st.sampled_from(["started", "finished"]), st.sampled_from(["=", "<", ">="]), DATES
).map(" ".join)
EXPRESSION = st.recursive(
    COMPARISON | DATE_COMPARISON,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=8,
)
QUERIES = st.one_of(st.text(max_size=60), TOKENS.map(" ".join), EXPRESSION)


@pytest.fixture
def query_repo(tracked_repo: Path) -> Path:
    record_array_runs(tracked_repo, 1)
    return tracked_repo


@settings(SHARED_REPO, max_examples=100)
@given(query=QUERIES)
@example(query=BAD_QUERIES["an invalid date"])
@example(query=BAD_QUERIES["a 5000-digit number"])
@example(query=BAD_QUERIES["500 nested parentheses"])
@example(query=BAD_QUERIES["2000 nots"])
@example(query=MANY_ORS)
@example(query="finished < '2024-02-30'")
@example(query="params.seed = 1e999")
def test_the_query_parser_fails_only_as_query_error(query_repo: Path, query: str) -> None:
    with contextlib.suppress(gittrack.QueryError):
        gittrack.runs(where=query, repo=query_repo)
    result = invoke(query_repo, "ls", "--where", query)
    no_crash(result.output, query[:200])
    assert result.exit_code in (0, 2), (query[:200], result.output[:500])
    if result.exit_code == 2:
        assert result.output.startswith("Error: Invalid query at position"), result.output[:500]
