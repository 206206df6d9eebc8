"""How a user's reference (id, prefix, name, `latest`) resolves to a run id, as git resolves ids."""

from __future__ import annotations

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
    import difflib  # only here: a reference matched nothing

    close = difflib.get_close_matches(ref, index.names_near(ref), n=3, cutoff=0.6)
    if len(ref) >= 2 and HEX.match(ref.lower()[:2]):  # "5c8x" is a typo for an id too
        shard = ref.lower()[:2]
        ids = [short(r) for r in index.ids_with_prefix(shard, limit=200)]
        close += difflib.get_close_matches(short(ref.lower()), ids, n=3, cutoff=0.5)
    return close[:3]


def complete_refs(repo: store.Repo, incomplete: str, limit: int = 50) -> list[tuple[str, str]]:
    """Shell completions for a RUN argument: (value, help) for `latest`, names and short ids."""
    index = Index(repo)
    text = incomplete.strip()
    out: list[tuple[str, str]] = []
    if "latest".startswith(text):
        out.append(("latest", "the newest run"))
    rows = index.query(
        "SELECT name, COUNT(*) FROM run_fields WHERE name != '' AND substr(name, 1, ?) = ? "
        "GROUP BY name ORDER BY MAX(started_ts) DESC LIMIT ?",
        (len(text), text, limit),
    )
    out += [(name, f"{n} runs" if n > 1 else "a named run") for name, n in rows]
    if HEX.match(text.lower() or "0"):
        rows = index.query(
            "SELECT id, name, command FROM run_fields WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (text.lower(), text.lower() + "\uffff", limit),
        )
        ids = [r[0] for r in rows]
        for run_id, name, command in rows:
            brief = short(run_id)
            unique = sum(1 for i in ids if i.startswith(brief)) == 1
            out.append((brief if unique else run_id, " ".join(p for p in (name, command) if p)))
    return out
