"""A record's values come back exactly from its run.toml: text with carriage returns and
newlines in any string, key or nested table, read by the record and by the index's reader."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write_script
from hypothesis import example, given, settings, strategies as st

from gittrack.cli import cli
from gittrack.index.records import decode
from gittrack.model.record import RunRecord

RUN_ID = "3f2a9c1e" * 4
# line breaks, quotes and escapes first among all characters UTF-8 can hold (no surrogates)
CHAR = st.one_of(
    st.sampled_from(["\r", "\n", "\r\n", "\t", '"', "'", "\\", "\x00", "\x7f", "\u2028"]),
    st.characters(exclude_categories=["Cs"]),
)
TEXT = st.lists(CHAR, max_size=12).map("".join)
SCALAR = st.one_of(
    TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
)
TREE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)
TABLE = st.dictionaries(TEXT, TREE, max_size=5)
STRINGS = st.dictionaries(TEXT, TEXT, max_size=4)


def record_of(**fields: Any) -> RunRecord:
    return RunRecord(id=RUN_ID, command="sim.py", status="completed", **fields)


def assert_round_trip(record: RunRecord) -> None:
    text = record.to_toml()
    back = RunRecord.from_toml(text.encode(), RUN_ID)
    assert back == record, text
    # the index's reader (the fast one when installed) sees the same values
    form, json_text = decode(text.encode(), RUN_ID)
    for key in ("params", "metrics", "env", "argv", "note", "name", "tags", "error"):
        assert form.get(key, type(getattr(record, key))()) == getattr(record, key), (key, text)
    assert json.loads(json_text)["params"] == record.params


@settings(max_examples=300, deadline=None, database=None)
@given(
    params=TABLE,
    metrics=TABLE,
    env=STRINGS,
    argv=st.lists(TEXT, max_size=4),
    note=TEXT,
    name=TEXT,
    tags=st.lists(TEXT, max_size=3),
    error=STRINGS,
)
@example(params={"p": "\r\n"}, metrics={}, env={}, argv=[], note="", name="", tags=[], error={})
@example(
    params={"a\rb": {"x\r\ny": ["\r\n", {"\r": "a\rb\n"}]}},
    metrics={"m": "x\r\ny", "t": {"\n": "\r"}},
    env={"e": "\r\n\r\n"},
    argv=["--p", "\r\n"],
    note="line one\r\nline two\n",
    name="a\r",
    tags=["\r\n"],
    error={"traceback": 'Traceback\r\n  File "x"\n'},
)
def test_every_value_round_trips_exactly_through_run_toml(
    params: dict[str, Any],
    metrics: dict[str, Any],
    env: dict[str, str],
    argv: list[str],
    note: str,
    name: str,
    tags: list[str],
    error: dict[str, str],
) -> None:
    assert_round_trip(
        record_of(
            params=params,
            metrics=metrics,
            env=env,
            argv=argv,
            note=note,
            name=name,
            tags=tags,
            error=error,
        )
    )


def test_multi_line_text_without_a_carriage_return_stays_readable() -> None:
    record = record_of(error={"traceback": "Traceback:\n  line 1\n"})
    assert '"""\nTraceback:\n  line 1\n"""' in record.to_toml()
    assert_round_trip(record)


ECHO = """
import click
import gittrack


@gittrack.command()
@click.option("--p", default="")
def main(p):
    return {"echo": p}


if __name__ == "__main__":
    main()
"""


@pytest.mark.parametrize("value", ["\r\n", "a\rb", "x\r\ny"])
def test_a_param_with_a_carriage_return_is_shown_found_and_reused_exactly(
    tracked_repo: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    write_script(tracked_repo, "echo.py", ECHO)
    monkeypatch.chdir(tracked_repo)
    without_cr = value.replace("\r", "")

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["-C", str(tracked_repo), *args])
        assert result.exit_code == 0, result.output
        return result

    def run(p: str) -> str:
        found = re.search(
            r"run ([0-9a-f]{8}) (recorded|reused)", invoke("run", "echo.py", "--p", p).output
        )
        assert found, p
        return found.group(1)

    first = run(value)
    other = run(without_cr)
    assert other != first  # a value without the carriage return is another run
    assert run(value) == first  # and the same value reuses the first
    shown = json.loads(invoke("show", first, "--json").stdout)
    assert shown["params"] == {"p": value}
    assert shown["metrics"] == {"echo": value}
    assert shown["argv"] == ["--p", value]
    listed = json.loads(invoke("ls", "--json", "--where", f"params.p = '{value}'").stdout)
    assert [row["id"][:8] for row in listed] == [first]
    diff = invoke("diff", first, other).output
    assert "do not differ" not in diff
    # the values shown as literals: a carriage return is seen, not written to the terminal
    assert f"  p  {value!r}  ->  {without_cr!r}" in diff or (
        "\n" not in value and f"  p  {value!r}  ->  {without_cr}" in diff
    )
    assert f"  p:           {value!r}" in invoke("show", first).output
