"""The grid of a sweep: value specs (`a,b,c`, `start:stop[:step]`) and their product.

A sweep's arguments are split into axes, one per option; every combination of their values is
one grid point, i.e. one run.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import SweepSpecError, UsageError

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
RANGE = re.compile(rf"^({NUMBER}):({NUMBER})(?::({NUMBER}))?$")
MAX_RUNS = 100_000


def expand(spec: str) -> list[str]:
    """The values a sweep spec stands for: `a,b,c`, `start:stop[:step]`, or one literal."""
    match = RANGE.match(spec)
    if match:
        return _range(spec, *match.groups())
    if ":" in spec and re.match(rf"^{NUMBER}:", spec):
        raise SweepSpecError(spec, "a range needs numbers for start, stop and step")
    parts = re.split(r"(?<!\\),", spec)
    values = [p.replace("\\,", ",") for p in parts]
    if len(values) > 1 and any(v.strip() == "" for v in values):
        raise SweepSpecError(spec, "a list has an empty value")
    return values


def _range(spec: str, start: str, stop: str, step: str | None) -> list[str]:
    integral = all(re.match(r"^[-+]?\d+$", p) for p in (start, stop, step or "1"))
    if integral:
        if step is not None and int(step) == 0:
            raise SweepSpecError(spec, "the step is 0")
        span = range(int(start), int(stop), int(step or 1))
        count = len(span)  # counted before a single value is made
    else:
        a, b, s = float(start), float(stop), float(step or 1)
        if s == 0:
            raise SweepSpecError(spec, "the step is 0")
        count = max(0, math.ceil((b - a) / s - 1e-9))
    if count > MAX_RUNS:
        raise SweepSpecError(spec, f"the range has {count} values, more than {MAX_RUNS}")
    values: list[Any] = list(span) if integral else [round(a + i * s, 12) for i in range(count)]
    if not values:
        raise SweepSpecError(spec, "the range is empty")
    return [repr(v) if isinstance(v, float) else str(v) for v in values]


@dataclass
class Axis:
    """One argument of a sweep: its option (or "" for a positional) and the values it takes."""

    option: str
    values: list[str]

    @property
    def param(self) -> str:
        return self.option.lstrip("-").replace("-", "_") if self.option else ""


def parse_grid(args: Iterable[str]) -> list[Axis]:
    """Split script arguments into axes; an option followed by another option is a flag."""
    args = list(args)
    axes: list[Axis] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            axes += [Axis("", [a]) for a in args[i + 1 :]]
            break
        if _is_option(token):
            if "=" in token and token.startswith("--"):
                option, _, value = token.partition("=")
                axes.append(Axis(option, expand(value)))
            elif i + 1 < len(args) and not _is_option(args[i + 1]):
                axes.append(Axis(token, expand(args[i + 1])))
                i += 1
            else:
                axes.append(Axis(token, []))  # a flag
        else:
            axes.append(Axis("", expand(token)))
        i += 1
    return axes


def _is_option(token: str) -> bool:
    return re.match(r"^--?[A-Za-z_]", token) is not None


def grid_points(axes: list[Axis]) -> list[tuple[list[str], dict[str, str]]]:
    """Every combination as (argument list, {varying param: value})."""
    choices: list[list[str | None]] = [list(a.values) or [None] for a in axes]
    total = math.prod(len(c) for c in choices)
    if total > MAX_RUNS:
        raise UsageError(
            f"The sweep has {total} runs, more than {MAX_RUNS}; split it into several sweeps."
        )
    points = []
    for combo in itertools.product(*choices):
        argv: list[str] = []
        varying: dict[str, str] = {}
        for axis, value in zip(axes, combo, strict=True):
            if axis.option:
                argv.append(axis.option)
            if value is not None and axis.values:
                argv.append(value)
                if len(axis.values) > 1:
                    varying[axis.param or f"arg{axes.index(axis)}"] = value
        points.append((argv, varying))
    return points
