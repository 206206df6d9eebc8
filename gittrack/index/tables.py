"""The lookup table's SQL schema: one row a run, its values by key, tags, memberships, notes."""

from __future__ import annotations

import re

INDEX_VERSION = "7"  # 7: kv clustered by run (WITHOUT ROWID), compact JSON text

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
CREATE TABLE IF NOT EXISTS kv (
    run INTEGER NOT NULL, key_id INTEGER NOT NULL, num REAL, text TEXT NOT NULL,
    PRIMARY KEY (run, key_id, text)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (tag, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    experiment TEXT NOT NULL, run INTEGER NOT NULL, PRIMARY KEY (experiment, run)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notes (object TEXT PRIMARY KEY, run_id TEXT, content TEXT);
CREATE INDEX IF NOT EXISTS notes_run ON notes(run_id);
"""

# secondary indexes: dropped during a full build and created after it (much faster); kv is
# stored in run order, so a run's values need no index of their own
INDEXES_SQL = """
CREATE INDEX IF NOT EXISTS runs_name ON run_fields(name);
CREATE INDEX IF NOT EXISTS runs_started ON run_fields(started_ts);
CREATE INDEX IF NOT EXISTS runs_commit ON run_fields(commit_sha);
CREATE INDEX IF NOT EXISTS runs_code_commit ON run_fields(code_commit);
CREATE INDEX IF NOT EXISTS kv_num ON kv(key_id, num) WHERE num IS NOT NULL;
CREATE INDEX IF NOT EXISTS kv_text ON kv(key_id, text);
CREATE INDEX IF NOT EXISTS tags_run ON tags(run);
CREATE INDEX IF NOT EXISTS members_run ON members(run);
"""
INDEX_NAMES = re.findall(r"EXISTS (\w+) ON", INDEXES_SQL)
TABLES = ("run_fields", "records", "kv", "tags", "members", "shapes")

RUN_COLUMNS = (
    "rid, id, name, status, command, experiment, started, finished, duration_s, commit_sha, "
    "problem, started_ts, finished_ts, tags, note, rerun_of, joined, exact, shape, code_commit"
)


def statements(sql: str) -> list[str]:
    """The statements of an SQL script, one by one."""
    return [s for s in sql.split(";") if s.strip()]
