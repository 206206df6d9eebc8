"""The lookup table's SQL schema: one row a run, its values by key, tags, memberships, notes.

A run's params, metrics and env values are read through the view `kv` (run, key_id, num,
text): each distinct value of a key is stored once in `vals` and a run points at its values in
`run_vals`, so the values most runs share (env, the params of a sweep) cost a pair of integers
a run, not a row in two text indexes.
"""

from __future__ import annotations

import re

INDEX_VERSION = "8"  # 8: each distinct value stored once (vals), runs point at theirs

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS run_fields (
    rid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    status TEXT,
    command TEXT,
    experiment TEXT,
    started TEXT,
    finished TEXT,
    duration_s REAL,
    commit_sha TEXT,
    problem TEXT,
    started_ts REAL,
    finished_ts REAL,
    tags TEXT,
    note TEXT,
    rerun_of TEXT,
    joined TEXT,
    exact INTEGER,
    shape INTEGER,
    code_commit TEXT
);
CREATE TABLE IF NOT EXISTS shapes (shape INTEGER PRIMARY KEY, keys TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS records (rid INTEGER PRIMARY KEY, record TEXT);
CREATE VIEW IF NOT EXISTS runs AS
    SELECT f.*, r.record AS record FROM run_fields AS f LEFT JOIN records AS r ON r.rid = f.rid;
CREATE TABLE IF NOT EXISTS keys (
    key_id INTEGER PRIMARY KEY, family TEXT NOT NULL, key TEXT NOT NULL, UNIQUE (family, key)
);
CREATE TABLE IF NOT EXISTS vals (
    val INTEGER PRIMARY KEY, key_id INTEGER NOT NULL, num REAL, text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_vals (
    run INTEGER NOT NULL, val INTEGER NOT NULL, PRIMARY KEY (run, val)
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS kv AS
    SELECT rv.run AS run, v.key_id AS key_id, v.num AS num, v.text AS text
    FROM run_vals AS rv JOIN vals AS v ON v.val = rv.val;
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (tag, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    experiment TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (experiment, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (object TEXT PRIMARY KEY, run_id TEXT, content TEXT);
CREATE INDEX IF NOT EXISTS notes_run ON notes(run_id);
"""

# secondary indexes: dropped during a full build and created after it (much faster);
# run_vals is stored in run order, so a run's values need no index of their own
INDEXES_SQL = """
CREATE INDEX IF NOT EXISTS runs_name ON run_fields(name);
CREATE INDEX IF NOT EXISTS runs_started ON run_fields(started_ts);
CREATE INDEX IF NOT EXISTS runs_commit ON run_fields(substr(commit_sha, 1, 8));
CREATE INDEX IF NOT EXISTS runs_code_commit ON run_fields(code_commit);
CREATE INDEX IF NOT EXISTS vals_num ON vals(key_id, num) WHERE num IS NOT NULL;
CREATE INDEX IF NOT EXISTS vals_text ON vals(key_id, text);
CREATE INDEX IF NOT EXISTS run_vals_val ON run_vals(val);
CREATE INDEX IF NOT EXISTS tags_run ON tags(run);
CREATE INDEX IF NOT EXISTS members_run ON members(run);
"""
INDEX_NAMES = re.findall(r"EXISTS (\w+) ON", INDEXES_SQL)
TABLES = ("run_fields", "records", "vals", "run_vals", "tags", "members", "shapes")

RUN_COLUMNS = (
    "rid, id, name, status, command, experiment, started, finished, duration_s, commit_sha, "
    "problem, started_ts, finished_ts, tags, note, rerun_of, joined, exact, shape, code_commit"
)


def statements(sql: str) -> list[str]:
    """The statements of an SQL script, one by one."""
    return [s for s in sql.split(";") if s.strip()]
