"""Optional parts of gittrack and the extras that install them."""

from __future__ import annotations

import importlib.util

from .errors import MissingExtra


def require(what: str, extra: str, *modules: str) -> None:
    """Raise MissingExtra, naming `extra`, when one of `modules` is not installed."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(what, extra)
