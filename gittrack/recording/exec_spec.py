"""What `gittrack exec` is given: its options, parsed into params, inputs and metric patterns.

Kept apart from the run itself (exec_run.py) so that the CLI can declare exec's options without
importing the recording machinery.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from ..errors import UsageError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
INT = re.compile(r"^[-+]?\d+$")
TYPES = ("int", "float", "bool", "str")
INPUTS_DIR = ".inputs"  # inside the run folder; a dot folder is never an output
UNKEPT_DIR = ".unkept"  # files the program wrote that no -o glob matched


# -- parsing -------------------------------------------------------------------------------


def typed_value(text: str, kind: str = "") -> Any:
    """`text` as int, float or bool when it reads as one (or as `kind`), else the string."""
    if kind == "str":
        return text
    if kind == "int" or (not kind and INT.match(text)):
        return int(text)
    if kind == "bool" or (not kind and text.lower() in ("true", "false")):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"'{text}' is not a bool (true or false)")
    if kind == "float":
        return float(text)
    with contextlib.suppress(ValueError):
        if text.strip() and text.lower() not in ("nan", "inf", "-inf", "infinity"):
            return float(text)
    return text


def parse_param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` (typed by its look) or `NAME:TYPE=VALUE` as (name, value)."""
    key, sep, value = text.partition("=")
    name, _, kind = key.partition(":")
    if not sep or not NAME.match(name) or (kind and kind not in TYPES):
        raise UsageError(
            f"-p '{text}' is not NAME=VALUE or NAME:TYPE=VALUE (TYPE one of "
            f"{', '.join(TYPES)}), e.g. -p temp=300."
        )
    try:
        return name, typed_value(value, kind)
    except ValueError as exc:
        raise UsageError(f"-p '{text}': {exc}; give a value of type {kind}.") from exc


@dataclass
class InputSpec:
    """`-i NAME=RUN[:OUTPUT]`: runs by reference or query, optionally one output of each."""

    name: str
    ref: str
    output: str = ""


def parse_input(text: str) -> InputSpec:
    name, sep, ref = text.partition("=")
    if not sep or not NAME.match(name) or not ref.strip():
        raise UsageError(
            f"-i '{text}' is not NAME=RUN or NAME=RUN:OUTPUT, e.g. -i sim=5c1e0a2f:dump "
            'or -i sims="params.steps = 1000".'
        )
    head, colon, tail = ref.rpartition(":")
    if colon and re.match(r"^[\w][\w.\-]*$", tail) and head.strip():
        return InputSpec(name, head.strip(), tail)
    return InputSpec(name, ref.strip())


def parse_metrics_from(text: str) -> tuple[str, re.Pattern[str]]:
    """`FILE:REGEX` (FILE relative to where the program ran, or stdout/stderr)."""
    file, sep, regex = text.partition(":")
    if not sep or not file or not regex:
        raise UsageError(
            f"--metrics-from '{text}' is not FILE:REGEX, e.g. "
            "'log.lammps:^final step (?P<step>\\d+) pe (?P<pe>\\S+)$'."
        )
    try:
        pattern = re.compile(regex, re.MULTILINE)
    except re.error as exc:
        raise UsageError(f"--metrics-from '{text}': the regex does not compile ({exc}).") from exc
    if not pattern.groupindex:
        raise UsageError(
            f"--metrics-from '{text}' has no named group; name each metric as (?P<name>...)."
        )
    return file, pattern


def _check(parse: Any) -> Any:
    """A click callback running `parse` on every value, failing as click does (exit 2)."""

    def callback(ctx: click.Context, param: click.Parameter, values: Any) -> Any:
        for value in values:
            try:
                parse(value)
            except UsageError as exc:
                raise click.BadParameter(str(exc), ctx, param) from exc
        return values

    return callback


def exec_options(func: Any) -> Any:
    """The options exec and `sweep --exec` share (what a run of a program is made of)."""
    decorators = [
        click.option(
            "-p",
            "--param",
            "params",
            multiple=True,
            metavar="NAME=VALUE",
            callback=_check(parse_param),
            help="A param (typed: int, float, bool, else string; NAME:TYPE=VALUE forces), "
            "substituted into the command as {NAME}.",
        ),
        click.option(
            "-o",
            "--output",
            "outputs",
            multiple=True,
            metavar="GLOB",
            help="Keep the files matching GLOB as outputs (default: everything written).",
        ),
        click.option(
            "-i",
            "--input",
            "inputs",
            multiple=True,
            metavar="NAME=RUN[:OUTPUT]",
            callback=_check(parse_input),
            help="An earlier run (id, name or query), or one of its outputs, placed in the run "
            "folder as {NAME} and recorded as an input.",
        ),
        click.option(
            "--cwd",
            type=click.Path(file_okay=False, exists=True),
            default=None,
            help="Run the program here instead of in a fresh run folder.",
        ),
        click.option(
            "--metrics-from",
            "metrics_from",
            multiple=True,
            metavar="FILE:REGEX",
            callback=_check(parse_metrics_from),
            help="Metrics from the named groups of REGEX's last match in FILE (or stdout).",
        ),
        click.option(
            "--engine-version",
            default="",
            help="The program's version, recorded when it cannot tell (e.g. a git describe).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def substitute(arg: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """`arg` with every `{NAME}` of a param or input replaced; other braces are left alone."""

    def value(match: re.Match[str]) -> str:
        key = match[1]
        if key in inputs:
            return inputs[key]
        if key in params:
            v = params[key]
            return str(v).lower() if isinstance(v, bool) else str(v)
        return match[0]

    return PLACEHOLDER.sub(value, arg)


def exec_args(
    params: Sequence[str],
    outputs: Sequence[str],
    inputs: Sequence[str],
    cwd: str | None,
    metrics_from: Sequence[str],
    engine_version: str,
    command: Sequence[str],
) -> list[str]:
    """The argument list of `exec_command` for these option values."""
    args: list[str] = []
    for flag, values in (("-p", params), ("-o", outputs), ("-i", inputs)):
        for value in values:
            args += [flag, value]
    for value in metrics_from:
        args += ["--metrics-from", value]
    if cwd:
        args += ["--cwd", cwd]
    if engine_version:
        args += ["--engine-version", engine_version]
    return [*args, "--", *command]
