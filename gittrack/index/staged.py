"""Queries over the runs staged locally (running, or died and not committed yet).

Those runs are in no lookup table until they are committed; the few there are go through an
in-memory table of the same schema, so that `--where` and `--sort` mean the same for them as for
recorded runs (`ls --where "status = 'running'"` finds the run that is running).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..model.record import RunRecord
from . import edges
from .build import Loader
from .tables import SCHEMA_SQL, statements


def matching(
    records: Sequence[RunRecord],
    where_sql: str = "",
    params: Iterable[Any] = (),
    order_sql: str = "runs.started_ts DESC, runs.id",
    order_params: Iterable[Any] = (),
) -> list[int]:
    """The positions in `records` of those matching an SQL condition (compiled by compiler.py),
    in the order `order_sql` gives."""
    if not records:
        return []
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statement in statements(SCHEMA_SQL):
            db.execute(statement)
        loader = Loader(db, {}, edges.Derived(db, True), len(records))
        for record in records:
            loader.add(record.id, "", record.to_toml().encode())
        loader.flush()
        where = f" WHERE {where_sql}" if where_sql else ""
        sql = f"SELECT id FROM run_fields AS runs{where} ORDER BY {order_sql}"
        found = [r[0] for r in db.execute(sql, [*params, *order_params])]
    finally:
        db.close()
    position = {record.id: i for i, record in enumerate(records)}
    return [position[run_id] for run_id in found if run_id in position]
