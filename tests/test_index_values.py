"""The lookup table stores each distinct value of a key once (`vals`) and a run's pointers to
its values (`run_vals`): what runs share costs two integers a run, and a query, a sort, a sync
or a removal sees the same values as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lookup_support import scan, with_other_ids, write_runs

from gittrack import store as gitstore
from gittrack.index import build
from gittrack.index.compiler import compile_order, compile_where
from gittrack.index.db import Index

QUERIES = [
    "params.temp >= 500",
    "params.method = 'verlet' and metrics.energy < -1",
    "env.host = 'node1'",
    "params.seed in (1, 3)",
    "params.seed != 2",
    "metrics.energy like '-1.%'",
    "params.temp = 300 or params.temp = 1200",
]


def fresh(repo: Path) -> Index:
    """The index of `repo`, built anew."""
    path = gitstore.find_repo(repo).state_dir / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    ix = Index(gitstore.find_repo(repo))
    ix.sync()
    return ix


def answers(ix: Index) -> dict[str, Any]:
    """What each query and sort finds (names in order), and the values by run."""
    found: dict[str, Any] = {}
    for query in QUERIES:
        sql, params = compile_where(query)
        found[query] = sorted(r["record"]["name"] for r in ix.select(sql, params))
    for spec in ("-metrics.energy", "params.seed,-params.temp"):
        order, args = compile_order(spec)
        found[spec] = [r["record"]["name"] for r in ix.select("", [], order, order_params=args)]
    found["kv"] = sorted(
        ix.db.execute(
            "SELECT f.id, k.family, k.key, kv.num, kv.text FROM kv JOIN run_fields AS f"
            " ON f.rid = kv.run JOIN keys AS k ON k.key_id = kv.key_id"
        ),
        key=repr,
    )
    return found


def distinct(ix: Index, family: str, key: str) -> int:
    """How many values of one key the table holds."""
    sql = (
        "SELECT count(*) FROM vals JOIN keys ON keys.key_id = vals.key_id"
        " WHERE keys.family = ? AND keys.key = ?"
    )
    return int(ix.db.execute(sql, (family, key)).fetchone()[0])


def test_a_value_runs_share_is_stored_once(repo: Path) -> None:
    write_runs(repo, scan(20))
    ix = fresh(repo)
    assert distinct(ix, "env", "host") == 1  # all 20 runs ran on node1
    assert distinct(ix, "params", "method") == 1
    assert distinct(ix, "params", "seed") == 4
    assert distinct(ix, "params", "temp") == 20
    # every run points at each of its 7 values (temp, seed, method, energy, steps, 2 env)
    assert ix.db.execute("SELECT count(*) FROM run_vals").fetchone()[0] == 20 * 7
    ix.close()


def test_a_sync_points_new_runs_at_the_values_already_stored(repo: Path) -> None:
    write_runs(repo, scan(12))
    ix = fresh(repo)
    ix.close()
    write_runs(repo, with_other_ids(scan(12)))  # the same values again, 12 more runs
    ix = Index(gitstore.find_repo(repo))
    ix.sync()
    assert ix.count() == 24
    assert distinct(ix, "params", "temp") == 12 and distinct(ix, "env", "host") == 1
    synced = answers(ix)
    ix.close()
    assert synced["params.temp >= 500"].count("scan-4") == 2
    assert synced == answers(fresh(repo))  # as a build from nothing finds them


@pytest.mark.parametrize("limit", ["MEMO_VALUES", "MEMO_TOTAL"])
def test_values_past_what_a_build_remembers_answer_the_same(
    repo: Path, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    """A build remembers MEMO_VALUES values of a key and MEMO_TOTAL in all; a value seen
    again past them may be stored twice, which no query, sort or listing of values can tell."""
    write_runs(repo, scan(16) + with_other_ids(scan(16)))
    remembering = answers(fresh(repo))
    monkeypatch.setattr(build, limit, 2)
    ix = fresh(repo)
    assert distinct(ix, "params", "temp") > 16  # some values stored twice
    assert answers(ix) == remembering
    assert len(remembering["params.temp >= 500"]) == 24
    ix.close()


def test_a_removed_run_takes_its_values_out_of_every_answer(repo: Path) -> None:
    specs = scan(6)
    specs[5]["params"] = specs[5]["params"] | {"only": "here"}
    ids = write_runs(repo, specs)
    ix = Index(gitstore.find_repo(repo))
    sql, params = compile_where("params.only = 'here'")
    assert [r["id"] for r in ix.select(sql, params)] == [ids[5]]
    gitstore.remove_runs(gitstore.find_repo(repo), [ids[5]], "remove the odd one")
    assert ix.select(sql, params) == [] and ix.count() == 5
    assert ix.keys("params") == ["method", "only", "seed", "temp"]  # keys stay known
    ix.close()


def test_a_commit_is_found_through_its_index_not_a_scan(repo: Path) -> None:
    """The index on commits holds their first 8 digits: a git note's commit finds its run by
    one look-up (SQLite scanned every run when the whole id was compared beside it)."""
    from gittrack.index.notes_sync import RUN_OF_COMMIT

    ids = write_runs(repo, scan(5))
    ix = Index(gitstore.find_repo(repo))
    ix.sync()
    ix.db.execute("ANALYZE")
    commit = ix.get(ids[2])["commit"]  # type: ignore[index]
    assert ix.db.execute(RUN_OF_COMMIT, (commit[:8], commit)).fetchall() == [(ids[2],)]
    plan = " ".join(r[3] for r in ix.db.execute(f"EXPLAIN QUERY PLAN {RUN_OF_COMMIT}", ("", "")))
    assert "USING INDEX runs_commit" in plan, plan
    ix.close()
