"""The SQL of a parsed `--where` query and `--sort` spec: parameterised conditions over the
index's `runs` view, never a user's text pasted in (query.py parses, this compiles)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import QueryError
from ..model.values import FAMILIES
from .dates import date_span
from .query import (
    COLUMNS_DATE,
    COLUMNS_NUMBER,
    BoolOp,
    Compare,
    Field,
    Node,
    Not,
    Token,
    parse,
    parse_field,
)

# -- conditions -----------------------------------------------------------------------------

KEY_ID = "(SELECT key_id FROM keys WHERE family = ? AND key = ?)"


class Compiler:
    """Turns a syntax tree into an SQL condition over `runs` with bound parameters.

    A condition on a table of values by run (kv, tags, members) is a list of the matching
    runs, built once (`+` keeps SQLite from driving the query by it: it walks the runs in the
    asked order and looks each up), or with `probe` a look-up of each run walked in that
    table's run index: no list, so a walk that stops early (`--limit 20` in the index's order)
    costs only the runs it walks, however many match in all.
    """

    def __init__(self, query: str, probe: bool = False) -> None:
        self.query = query
        self.params: list[Any] = []
        self.probe = probe

    def runs_in(self, table: str, condition: str = "") -> str:
        """The runs with a row in `table` (kv, tags, members) meeting `condition`."""
        if self.probe:
            where = f"{table}.run = runs.rid" + (f" AND {condition}" if condition else "")
            return f"EXISTS (SELECT 1 FROM {table} WHERE {where})"
        return f"+runs.rid IN (SELECT run FROM {table}" + (
            f" WHERE {condition})" if condition else ")"
        )

    def node(self, node: Node) -> str:
        if isinstance(node, BoolOp):
            return self.join(node.op.upper(), [self.node(i) for i in node.items])
        if isinstance(node, Not):
            return f"(NOT {self.node(node.item)})"
        sql = self.compare(node)
        return f"(NOT {sql})" if node.negate else sql

    @classmethod
    def join(cls, op: str, parts: list[str]) -> str:
        """`a OP b OP ...` as a balanced tree: SQLite refuses expressions over 1000 deep."""
        if len(parts) <= 8:
            return "(" + f" {op} ".join(parts) + ")"
        half = len(parts) // 2
        return f"({cls.join(op, parts[:half])} {op} {cls.join(op, parts[half:])})"

    def compare(self, c: Compare) -> str:
        family = c.field.family
        if family in FAMILIES:
            return self.kv(c)
        if family == "tags":
            return self.tags(c)
        if family == "code":
            return self.code_commit(c)
        if c.field.key in COLUMNS_DATE:
            return self.date(c)
        if c.field.key == "experiment" and c.op in ("=", "!=", "in", "like"):
            return self.experiment(c)
        column = f"runs.{c.field.key}"
        number = c.field.key in COLUMNS_NUMBER
        convert = self.number_of if number else self.text_of
        if c.op == "like":
            if number:
                raise QueryError(
                    self.query,
                    c.values[0].pos,
                    f"a number: {c.field.label} is numeric, 'like' compares text",
                )
            self.params.append(c.values[0].value)
            return f"({column} LIKE ?)"
        values = [convert(v, c.field) for v in c.values]
        self.params.extend(values)
        if c.op == "in":
            return f"({column} IN ({', '.join('?' * len(values))}))"
        return f"({column} {c.op} ?)"

    def code_commit(self, c: Compare) -> str:
        """`code.commit = 'abc1234'`: the commit the run executed, a prefix of 4+ hex digits."""
        column = "runs.code_commit"
        if c.op == "like":
            self.params.append(c.values[0].value)
            return f"({column} LIKE ?)"
        if c.op not in ("=", "!=", "in"):
            raise QueryError(
                self.query, c.values[0].pos, "=, != or in for code.commit (it is a commit id)"
            )
        parts = []
        for tok in c.values:
            prefix = str(tok.value).strip().lower()
            if tok.kind != "string" or not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
                raise QueryError(
                    self.query,
                    tok.pos,
                    "a quoted commit id of at least 4 hex digits, e.g. 'abc1234'",
                )
            self.params += [prefix, prefix + "g"]  # every id with the prefix sorts in between
            parts.append(f"({column} >= ? AND {column} < ?)")
        inside = "(" + " OR ".join(parts) + ")"
        return f"(NOT {inside})" if c.op == "!=" else inside

    def number_of(self, tok: Token, field: Field) -> float | int:
        if tok.kind == "number":
            return tok.value  # type: ignore[no-any-return]
        try:
            return float(tok.value)
        except ValueError:
            raise QueryError(
                self.query, tok.pos, f"a number, as {field.label} is numeric"
            ) from None

    @staticmethod
    def text_of(tok: Token, field: Field) -> str:
        return str(tok.value) if tok.kind == "string" else tok.text

    def date(self, c: Compare) -> str:
        column = f"runs.{c.field.key}_ts"
        if c.op == "like":
            self.params.append(c.values[0].value)
            return f"(runs.{c.field.key} LIKE ?)"
        spans = [self.date_span(v, c.field) for v in c.values]
        if c.op == "in":
            parts = []
            for lo, hi in spans:
                self.params.extend([lo, hi])
                parts.append(f"({column} >= ? AND {column} < ?)")
            return "(" + " OR ".join(parts) + ")"
        lo, hi = spans[0]
        if c.op in ("=", "!="):
            self.params.extend([lo, hi])
            inside = f"({column} >= ? AND {column} < ?)"
            return inside if c.op == "=" else f"({column} IS NOT NULL AND NOT {inside})"
        bound = {"<": lo, "<=": hi, ">": hi, ">=": lo}[c.op]
        self.params.append(bound)
        op = {"<": "<", "<=": "<", ">": ">=", ">=": ">="}[c.op]
        return f"({column} {op} ?)"

    def date_span(self, tok: Token, field: Field) -> tuple[float, float]:
        """[start, end) in epoch seconds of a date literal, as wide as its precision."""
        span = date_span(str(tok.value)) if tok.kind == "string" else None
        if span is None:
            raise QueryError(
                self.query,
                tok.pos,
                f"a date such as '2024-05-01' or '2024-05-01 14:30' for {field.label}",
            )
        return span

    def kv(self, c: Compare) -> str:
        fam_key = [c.field.family, c.field.key]
        key = f"key_id = {KEY_ID}"
        if c.op == "like":
            self.params += [*fam_key, c.values[0].value]
            return self.runs_in("kv", f"{key} AND text LIKE ?")
        if c.op in ("=", "in"):
            return self.runs_in("kv", f"{key} AND {self.kv_match(c.values, fam_key)}")
        if c.op == "!=":  # has a value, and not an equal one
            self.params += fam_key
            has = self.runs_in("kv", key)
            equal = self.runs_in("kv", f"{key} AND {self.kv_match(c.values, fam_key)}")
            return f"({has} AND NOT {equal})"
        tok = c.values[0]
        column = "num" if tok.kind == "number" else "text"
        self.params += [*fam_key, tok.value]
        return self.runs_in("kv", f"{key} AND {column} {c.op} ?")

    def kv_match(self, values: list[Token], fam_key: list[str]) -> str:
        self.params += fam_key
        numbers = [v.value for v in values if v.kind == "number"]
        texts = [v.value for v in values if v.kind == "string"]
        parts = []
        if numbers:
            parts.append(f"num IN ({', '.join('?' * len(numbers))})")
            self.params += numbers
        if texts:
            parts.append(f"text IN ({', '.join('?' * len(texts))})")
            self.params += texts
        return "(" + " OR ".join(parts) + ")"

    def experiment(self, c: Compare) -> str:
        """Membership: the run was recorded in the experiment or reused by it."""
        if c.op == "like":
            self.params.append(c.values[0].value)
            return self.runs_in("members", "members.experiment LIKE ?")
        values = [self.text_of(v, c.field) for v in c.values]
        named = [v for v in values if v]
        parts = []
        if named:
            self.params += named
            marks = ", ".join("?" * len(named))
            parts.append(self.runs_in("members", f"members.experiment IN ({marks})"))
        if len(named) < len(values):  # '' stands for "in no experiment"
            parts.append(f"(NOT {self.runs_in('members')})")
        sql = "(" + " OR ".join(parts) + ")"
        return f"(NOT {sql})" if c.op == "!=" else sql

    def tags(self, c: Compare) -> str:
        if c.op not in ("=", "!=", "in", "like"):
            raise QueryError(
                self.query,
                c.field.pos,
                "=, !=, in or like after 'tags' (a run carries a tag or not)",
            )
        values = [self.text_of(v, c.field) for v in c.values]
        self.params += values
        if c.op == "like":
            return self.runs_in("tags", "tag LIKE ?")
        sql = self.runs_in("tags", f"tag IN ({', '.join('?' * len(values))})")
        return f"(NOT {sql})" if c.op == "!=" else sql


def compile_where(query: str, *, probe: bool = False) -> tuple[str, list[Any]]:
    """`query` as an SQL condition over the index's `runs` table, and its bound parameters.

    `probe` (see Compiler) suits a walk in the index's order that stops early: a limit
    without a sort; without it, each value condition lists its matching runs first.
    """
    compiler = Compiler(query, probe)
    sql = compiler.node(parse(query))
    return sql, compiler.params


# -- sorting --------------------------------------------------------------------------------


def sort_expressions(field: Field) -> tuple[list[str], list[Any]]:
    """SQL expressions to sort by one field: numbers first by value, then text."""
    if field.family in FAMILIES:
        sub = f"(SELECT {{}} FROM kv WHERE kv.run = runs.rid AND key_id = {KEY_ID} LIMIT 1)"
        return [sub.format("num"), sub.format("text")], [field.family, field.key] * 2
    if field.key in COLUMNS_DATE:
        return [f"runs.{field.key}_ts"], []
    return [f"runs.{field.key}"], []


def compile_order(spec: str) -> tuple[str, list[Any]]:
    """`-metrics.energy,params.temp` as an SQL ORDER BY clause and its bound parameters.

    A leading `-` sorts descending; runs without the field come last either way; ties fall
    back to the newest run first.
    """
    parts: list[str] = []
    params: list[Any] = []
    pos = 0
    for item in spec.split(","):
        text = item.strip()
        start = pos + len(item) - len(item.lstrip())
        pos += len(item) + 1
        if not text:
            raise QueryError(spec, start, "a field to sort by, e.g. -metrics.energy")
        descending = text.startswith("-")
        text = text.lstrip("-+").strip()
        offset = start + len(item.strip()) - len(text)
        if not re.fullmatch(r'[A-Za-z_]\w*(?:\.(?:[\w-]+|"[^"]*"))*', text):
            raise QueryError(spec, offset, "a field to sort by, e.g. -metrics.energy")
        field = parse_field(text, offset, spec)
        if field.family == "tags":
            raise QueryError(spec, offset, "a field other than tags to sort by")
        exprs, args = sort_expressions(field)
        direction = "DESC" if descending else "ASC"
        parts += [f"{e} {direction} NULLS LAST" for e in exprs]
        params += args
    parts += ["runs.started_ts DESC", "runs.id"]
    return ", ".join(parts), params
