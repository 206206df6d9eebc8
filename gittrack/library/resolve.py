"""How a user's reference (id, prefix, name, `latest`) resolves to a run id, as git resolves ids."""

from __future__ import annotations

import difflib
import re

from .. import store
from .._ids import short
from ..errors import AmbiguousRun, RunNotFound, UsageError
from ..index.db import Index

MIN_PREFIX = 4
HEX = re.compile(r"^[0-9a-f]+$")


def resolve_id(repo: store.Repo, ref: str) -> str:
    """The full id for `ref`: `latest`, a full id, a unique prefix of 4+ characters, or a name
    (the newest run with that name: `named` tells how many share it)."""
    ref = ref.strip()
    index = Index(repo)
    if ref == "latest":
        latest = index.latest()
        if latest is None:
            raise RunNotFound(ref)
        return latest
    named = index.ids_named(ref)
    if named:  # names need not be unique: a name means the newest run with it
        return named[0]
    lowered = ref.lower()
    if HEX.match(lowered) and len(lowered) >= MIN_PREFIX:
        found = index.ids_with_prefix(lowered)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AmbiguousRun(ref, found)
    if HEX.match(lowered) and len(lowered) < MIN_PREFIX and not named:
        raise UsageError(
            f'"{ref}" is too short to name a run: give at least {MIN_PREFIX} characters of its '
            "id, or its name ('gittrack ls' lists runs)."
        )
    raise RunNotFound(ref, suggest(index, ref))


def named(repo: store.Repo, name: str) -> list[str]:
    """Ids of every run named `name`, newest first (a name means the first of them)."""
    return Index(repo).ids_named(name.strip()) if name.strip() else []


def suggest(index: Index, ref: str) -> list[str]:
    """Close matches for a reference that matched nothing: names, then similar id prefixes."""
    names = [r[0] for r in index.db.execute("SELECT DISTINCT name FROM runs WHERE name != ''")]
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    if len(ref) >= 2 and HEX.match(ref.lower()[:2]):  # "5c8x" is a typo for an id too
        shard = ref.lower()[:2]
        ids = [short(r) for r in index.ids_with_prefix(shard, limit=200)]
        close += difflib.get_close_matches(short(ref.lower()), ids, n=3, cutoff=0.5)
    return close[:3]
