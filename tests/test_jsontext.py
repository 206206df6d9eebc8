"""The recording path's JSON text is exactly json's, whatever the value."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import PurePosixPath
from typing import Any

from hypothesis import given, settings, strategies as st

from gittrack._jsontext import dumps

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.builds(PurePosixPath, st.text(min_size=1, alphabet="abc/."))
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),  # not str keys: json's own work
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(values, st.booleans())
def test_the_text_is_jsons(value: Any, sort_keys: bool) -> None:
    try:
        expected = json.dumps(value, sort_keys=sort_keys, default=str)
    except TypeError:  # keys json cannot sort (e.g. None beside ints): the same error
        return
    assert dumps(value, sort_keys=sort_keys, default=str) == expected


def test_values_json_refuses_are_refused_alike() -> None:
    for value in ({"a": object()}, [{1, 2}]):
        try:
            json.dumps(value)
        except TypeError as exc:
            expected = str(exc)
        try:
            dumps(value)
        except TypeError as exc:
            assert str(exc) == expected
        else:
            raise AssertionError("no error")
    looped: list[Any] = []
    looped.append(looped)
    try:
        dumps(looped)
    except ValueError as exc:
        assert "Circular" in str(exc)
    else:
        raise AssertionError("no error")


def test_controls_quotes_and_astral_characters() -> None:
    text = 'a"b\\c\n\r\t\b\f\x00\x1f\x7f é ☃ 𝄞 \ud800'
    assert dumps({"k": text}) == json.dumps({"k": text})
    assert dumps([float("nan"), float("inf"), -float("inf"), -0.0, 1e300]) == json.dumps(
        [float("nan"), float("inf"), -float("inf"), -0.0, 1e300]
    )
