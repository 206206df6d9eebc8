"""The runs and edges of one lineage graph, walked and summed up in SQL.

A graph of 100,000 runs should not bring 100,000 records into Python only to fold them into a
few nodes: `Flow` walks the lineage edges into temporary tables of the index's connection (the
runs reached, the edges between them, each run's fields) and answers what folding asks per
experiment, status or command with GROUP BY; only ids and edges come back. The tables live as
long as the connection and are emptied for each graph; every `Index` has its own connection,
so two graphs never share them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .edges import ready

if TYPE_CHECKING:
    from .db import Index

EdgeRow = tuple[str, str, str, str, str]  # child, parent, kind, output, md5

_TABLES = (
    # the runs seen, in the order reached: a walk's next level is those past a rowid
    "CREATE TEMP TABLE IF NOT EXISTS flow_seen (id TEXT PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS flow_reach (id TEXT PRIMARY KEY)",
    # as found, duplicates too (what reads them groups them)
    "CREATE TEMP TABLE IF NOT EXISTS flow_rows (child TEXT, parent TEXT, kind TEXT, "
    "output TEXT, md5 TEXT)",
    # the runs seen that have a readable record, by their rid (the records' order); `placed`:
    # the experiment a run is drawn in, `grp`: the one it is folded into
    "CREATE TEMP TABLE IF NOT EXISTS flow_runs (rid INTEGER PRIMARY KEY, id TEXT, status TEXT, "
    "command TEXT, joined TEXT, placed TEXT, grp TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS flow_groups (name TEXT PRIMARY KEY)",
)
_CLEARED = ("flow_seen", "flow_rows", "flow_runs", "flow_groups")

# the runs of each scope, read in rid order (a third of the time of any other): `exp:NAME`
# those folded into NAME, `cmd:COMMAND` every run read of the commands given (JSON list ?1)
_PARTS = {
    "exp:": ("s.grp", "s.grp != ''"),
    "cmd:": ("s.command", "s.command IN (SELECT value FROM json_each(?1))"),
}
_FROM = "flow_runs AS s JOIN records AS x ON x.rid = s.rid"
_NUMBER = "j.type IN ('integer', 'real')"
_PARAMS = "json_each(x.record, '$.params') AS j"
_CHECKED = "json_each(iif(json_valid(x.record), x.record, '{}'), '$.params') AS j"


def _summary(part: str, params: str) -> str:
    """One row per scope, param and type for numbers, per distinct value for anything else."""
    name, where = _PARTS[part]
    return (
        f"SELECT '{part}' || {name}, j.key, j.type, iif({_NUMBER}, NULL, j.value), "
        f"count(DISTINCT iif({_NUMBER}, j.value, NULL)), min(iif({_NUMBER}, j.value, NULL)), "
        f"max(iif({_NUMBER}, j.value, NULL)) FROM {_FROM}, {params} WHERE {where} "
        f"GROUP BY {name}, 2, 3, 4"
    )


def _in_scope(scope: str) -> str:
    """The condition on `s` of the runs of `scope` (its name ?2)."""
    name, where = _PARTS[scope[:4]]
    return f"{where} AND {name} = ?2"


_PROBE_BELOW = 8  # read the fields of the runs by id when the graph holds less than 1/8 of them


class Flow:
    """The temporary tables of one lineage graph in `index`'s connection."""

    def __init__(self, index: Index) -> None:
        self.db = ready(index)
        if self.db.execute("PRAGMA temp_store").fetchone()[0] != 2:  # changing it drops them
            self.db.execute("PRAGMA temp_store = MEMORY")
            self.db.execute("PRAGMA temp.cache_size = -64000")  # 100,000 runs: a fifth less time
        for statement in _TABLES:
            self.db.execute(statement)
        for table in _CLEARED:
            self.db.execute(f"DELETE FROM {table}")
        self.commands = "[]"  # the commands of the `cmd:` scopes
        self.seen = self.runs = 0  # how many runs seen, and read

    # -- the runs and edges -------------------------------------------------------------------

    def walk(self, root: str, downstream: bool, depth: int | None, kinds: Iterable[str]) -> None:
        """Add the runs reachable from `root` (upstream, or downstream; at most `depth` steps)
        and the edges of `kinds` between them, level by level as a breadth-first walk."""
        near, far = ("parent", "child") if downstream else ("child", "parent")
        kinds = list(kinds)
        marks = ",".join("?" * len(kinds))
        db = self.db
        first = db.execute("SELECT 1 FROM flow_seen LIMIT 1").fetchone() is None
        reach = "flow_seen" if first else "flow_reach"  # the first walk's runs are all seen
        db.execute("DELETE FROM flow_reach")
        db.execute(f"INSERT INTO {reach} (id) VALUES (?)", (root,))
        level, low = 0, 0  # the runs of this level: rowid > low
        while depth is None or level < depth:
            mark = db.execute("SELECT coalesce(max(rowid), 0) FROM flow_rows").fetchone()[0]
            top = db.execute(f"SELECT max(rowid) FROM {reach}").fetchone()[0]
            db.execute(
                "INSERT INTO flow_rows SELECT e.child, e.parent, e.kind, e.output, e.md5 "
                f"FROM {reach} AS r CROSS JOIN lineage_edges AS e ON e.{near} = r.id "
                f"WHERE r.rowid > ? AND e.kind IN ({marks})",
                [low, *kinds],
            )
            found = db.execute(
                f"INSERT OR IGNORE INTO {reach} (id) SELECT {far} FROM flow_rows WHERE rowid > ?",
                (mark,),
            ).rowcount
            if not found:
                break
            level, low = level + 1, top
        if not first:
            db.execute("INSERT OR IGNORE INTO flow_seen (id) SELECT id FROM flow_reach")

    def add(self, ids: Iterable[str], rows: Iterable[EdgeRow]) -> None:
        """Add runs and edges as they are (the flow among given runs)."""
        self.db.executemany("INSERT OR IGNORE INTO flow_seen (id) VALUES (?)", ((i,) for i in ids))
        self.db.executemany("INSERT INTO flow_rows VALUES (?,?,?,?,?)", rows)

    def ids(self) -> set[str]:
        """Every run seen, indexed or not."""
        return {r[0] for r in self.db.execute("SELECT id FROM flow_seen")}

    def rows(self) -> list[EdgeRow]:
        """The edges, each once, sorted (by Python: half the time of SQLite's DISTINCT)."""
        found = self.db.execute("SELECT child, parent, kind, output, md5 FROM flow_rows")
        return list(dict.fromkeys(sorted(found)))

    # -- the runs' fields and where they are drawn ---------------------------------------------

    def read_runs(self) -> int:
        """Read the fields of the runs seen that have a readable record (no `problem`): how
        many. A large share of the index is read in its order rather than looked up by id."""
        self.seen = self.db.execute("SELECT count(*) FROM flow_seen").fetchone()[0]
        size = self.db.execute("SELECT coalesce(max(rid), 0) FROM run_fields").fetchone()[0]
        pair = (
            "flow_seen AS s CROSS JOIN run_fields AS f ON f.id = s.id"
            if self.seen * _PROBE_BELOW < size
            else "run_fields AS f CROSS JOIN flow_seen AS s ON s.id = f.id"
        )
        self.runs = int(
            self.db.execute(
                "INSERT INTO flow_runs SELECT f.rid, f.id, coalesce(f.status, ''), "
                "coalesce(f.command, ''), coalesce(f.joined, ''), coalesce(f.experiment, ''), "
                f"coalesce(f.experiment, '') FROM {pair} WHERE f.problem IS NULL"
            ).rowcount
        )
        return self.runs

    def joined(self) -> list[tuple[int, str, str]]:
        """(rid, own experiment, JSON list of every experiment) of runs that others reused."""
        return self.db.execute(
            "SELECT rid, placed, joined FROM flow_runs WHERE joined != ''"
        ).fetchall()

    def placed_counts(self) -> dict[str, int]:
        """How many runs each experiment ("" for none) draws."""
        return dict(self.db.execute("SELECT placed, count(*) FROM flow_runs GROUP BY placed"))

    def place(self, placed: Mapping[int, str]) -> None:
        """Draw these runs (by rid) in these experiments."""
        self.db.executemany(
            "UPDATE flow_runs SET placed = ?1, grp = ?1 WHERE rid = ?2",
            ((v, k) for k, v in placed.items()),
        )

    def placed(self, unfolded: bool = False) -> dict[str, str]:
        """{id: experiment drawn in} of every run read (or only of those not folded)."""
        where = " WHERE grp = ''" if unfolded else ""
        return dict(self.db.execute(f"SELECT id, placed FROM flow_runs{where}"))

    def tally(self, root: str) -> list[tuple[str, str, str, int]]:
        """(experiment drawn in, status, command, runs) of the runs read, but `root`."""
        return self.db.execute(
            "SELECT placed, status, command, count(*) FROM flow_runs WHERE id != ? "
            "GROUP BY 1, 2, 3",
            (root,),
        ).fetchall()

    def command_counts(self) -> dict[str, int]:
        """{command: runs} of every run read."""
        return dict(self.db.execute("SELECT command, count(*) FROM flow_runs GROUP BY command"))

    def fold(self, root: str, names: Iterable[str]) -> dict[str, list[str]]:
        """Fold the runs drawn in the experiments `names` (all but `root`) into one node each;
        returns {experiment: its folded runs, sorted}."""
        self.db.executemany("INSERT INTO flow_groups VALUES (?)", ((n,) for n in names))
        self.db.execute(
            "UPDATE flow_runs SET grp = '' WHERE grp != '' AND "
            "(id = ? OR grp NOT IN (SELECT name FROM flow_groups))",
            (root,),
        )
        rows = self.db.execute(
            "SELECT grp, group_concat(id, char(2)) FROM flow_runs WHERE grp != '' GROUP BY grp"
        )
        return {name: sorted(ids.split("\2")) for name, ids in rows}

    def unfolded(self) -> list[str]:
        """The runs drawn one by one, missing or unreadable ones too, sorted."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM flow_runs WHERE grp = ''")]
        if self.seen > self.runs:  # seen but not read
            ids += [
                r[0]
                for r in self.db.execute("SELECT id FROM flow_seen EXCEPT SELECT id FROM flow_runs")
            ]
        return sorted(ids)

    def grouped_rows(self) -> list[tuple[str, str, str, list[str], list[str]]]:
        """The edges by (child, kind, output): (child, kind, output, parents, their md5s)."""
        rows = self.db.execute(
            "SELECT child, kind, output, group_concat(coalesce(parent, ''), char(2)), "
            "group_concat(coalesce(md5, ''), char(2)) FROM flow_rows GROUP BY 1, 2, 3"
        )
        return [(c, k, o, p.split("\2"), m.split("\2")) for c, k, o, p, m in rows]

    # -- param values per scope -----------------------------------------------------------------

    def scope_commands(self, commands: Iterable[str]) -> None:
        """Add the scopes `cmd:COMMAND`, every run read of COMMAND, to the `exp:NAME` ones."""
        self.commands = json.dumps(sorted(commands))

    def scope_ids(self, scope: str) -> list[str]:
        """The runs of a scope."""
        sql = f"SELECT s.id FROM flow_runs AS s WHERE {_in_scope(scope)}"
        return [r[0] for r in self.db.execute(sql, (self.commands, scope[4:]))]

    def param_rows(self) -> tuple[list[tuple[Any, ...]], set[str]]:
        """Per scope, param and JSON type: (scope, param, type, value or NULL for numbers,
        distinct numbers, lowest, highest), and the scopes SQLite cannot read (a record holding
        NaN is not valid JSON to it), left out of the rows."""
        rows: list[tuple[Any, ...]] = []
        unreadable: set[str] = set()
        for part in _PARTS if self.commands != "[]" else ["exp:"]:
            args = (self.commands,) if part == "cmd:" else ()
            try:
                rows += self.db.execute(_summary(part, _PARAMS), args).fetchall()
            except sqlite3.OperationalError:  # malformed JSON: read around what SQLite cannot
                name, where = _PARTS[part]
                found = self.db.execute(
                    f"SELECT DISTINCT '{part}' || {name} FROM {_FROM} "
                    f"WHERE {where} AND NOT json_valid(x.record)",
                    args,
                )
                unreadable |= {r[0] for r in found}
                every = self.db.execute(_summary(part, _CHECKED), args).fetchall()
                rows += [r for r in every if r[0] not in unreadable]
        return rows, unreadable

    def distinct_values(self, scope: str, param: str) -> Iterator[tuple[str, Any]]:
        """(JSON type, value) of each distinct value of `param` in `scope`."""
        yield from self.db.execute(
            f"SELECT DISTINCT j.type, j.value FROM {_FROM}, {_CHECKED} "
            f"WHERE {_in_scope(scope)} AND j.key = ?3",
            (self.commands, scope[4:], param),
        )


def json_list(text: str) -> list[str]:
    """The experiments of a `joined` column."""
    return list(json.loads(text)) if text else []
