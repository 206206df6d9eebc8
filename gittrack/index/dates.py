"""Dates in queries and records: a date literal as the span it names, ISO text as seconds."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

_DATE_FORMATS: list[tuple[str, Callable[[dt.datetime], dt.timedelta]]] = [
    (r"\d{4}", lambda d: dt.timedelta(days=366 if d.year % 4 == 0 else 365)),
    (r"\d{4}-\d{2}", lambda d: dt.timedelta(days=31)),
    (r"\d{4}-\d{2}-\d{2}", lambda d: dt.timedelta(days=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}", lambda d: dt.timedelta(hours=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", lambda d: dt.timedelta(minutes=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}", lambda d: dt.timedelta(seconds=1)),
]


def date_span(text: str) -> tuple[float, float] | None:
    """[start, end) of a date literal in epoch seconds; dates without a zone are local time.

    A literal is as wide as its precision: '2024-05-01' is that whole day, '2024-05' the month,
    so `started = '2024-05-01'` finds the runs started that day. Also 'today', 'yesterday', 'now'.
    """
    text = text.strip()
    word = text.lower()
    now = dt.datetime.now().astimezone()
    if word in ("today", "yesterday"):
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "yesterday":
            day = (day - dt.timedelta(days=1)).replace(hour=0)
        return day.timestamp(), (day + dt.timedelta(days=1)).timestamp()
    if word == "now":
        return now.timestamp(), now.timestamp()
    body, zone = text, ""
    zmatch = re.search(r"(Z|[+-]\d{2}:?\d{2})$", text) if len(text) > 10 else None
    if zmatch:
        body, zone = text[: zmatch.start()], zmatch.group()
    try:
        return _span(text, body, zone)
    except (ValueError, OverflowError, OSError):  # '2024-13-45', year 0 or beyond 9999
        return None


def _span(text: str, body: str, zone: str) -> tuple[float, float] | None:
    """date_span() of a literal split into its body and zone; raises ValueError when invalid."""
    for pattern, width in _DATE_FORMATS:
        if re.fullmatch(pattern, body):
            padded = body.replace(" ", "T")
            if len(padded) == 4:
                padded += "-01-01"
            elif len(padded) == 7:
                padded += "-01"
            elif len(padded) == 13:
                padded += ":00"
            start = _localise(
                dt.datetime.fromisoformat(padded + ("+00:00" if zone == "Z" else zone))
            )
            if width(start) == dt.timedelta(days=31):  # a month: up to the next month's first day
                nxt = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                return start.timestamp(), nxt.timestamp()
            return start.timestamp(), (start + width(start)).timestamp()
    exact = _localise(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    return exact.timestamp(), exact.timestamp() + 0.001


def _localise(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.astimezone()


def timestamp(iso: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time as records store it (None when empty)."""
    if not iso:
        return None
    try:
        return _localise(dt.datetime.fromisoformat(iso)).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
