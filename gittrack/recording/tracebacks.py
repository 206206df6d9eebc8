"""The traceback of a run's own error: from its first frame outside gittrack and click."""

from __future__ import annotations

import traceback
from pathlib import Path

import click

# frames of these folders are how the run was started, not where it failed
_SKIPPED = (str(Path(click.__file__).parent), str(Path(__file__).resolve().parents[1]))


def user_traceback(exc: BaseException) -> str:
    """`exc` formatted as Python would, without the leading frames of gittrack and click (all of
    them when the error arose inside gittrack itself)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_SKIPPED):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()
