"""The query language of `gittrack ls --where`, compiled to parameterised SQL over the index.

Grammar (keywords are case-insensitive; docs/query.md has examples)::

    query      := or_expr END
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | comparison
    comparison := field op value
                | field ["not"] "in" "(" value ("," value)* ")"
                | field ["not"] "like" string
    field      := "id" | "name" | "status" | "command" | "experiment" | "rerun_of"
                | "started" | "finished" | "duration_s" | "tags" | "code.commit"
                | family "." key
    family     := "params" | "metrics" | "env"
    key        := part ("." part)*          part: letters, digits, _ and -, or "double quoted"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    value      := number | string | "true" | "false"   string: 'single' or "double" quoted

Values of params, metrics and env are indexed twice: as a number when they are one (an int, a
float, a bool as 1/0, or a string that reads as a number) and as text (their TOML spelling). A
number on the right compares the numeric form, a string the text form. User text never enters
the SQL: every value and key is a bound parameter. `experiment` matches every experiment a run
is a member of (the one it was recorded in and those that reused it, from the `members` table).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import QueryError
from ..model.values import FAMILIES

COLUMNS_TEXT = ("id", "name", "status", "command", "experiment", "rerun_of")
COLUMNS_NUMBER = ("duration_s",)
COLUMNS_DATE = ("started", "finished")
FIELDS_HINT = (
    "a field: id, name, status, command, experiment, rerun_of, started, finished, duration_s, "
    "tags, code.commit, params.X, metrics.X or env.X"
)
OPERATORS = {
    "=": "=",
    "==": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
KEYWORDS = {"and", "or", "not", "in", "like", "true", "false"}
MAX_NESTING = 100  # parentheses and 'not's inside each other; deeper is surely a mistake
INT64 = (-(2**63), 2**63 - 1)  # what TOML, and so a record, can hold

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
  | (?P<name>[A-Za-z_]\w*(?:\.(?:[\w-]+|"[^"]*"))*)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<op><=|>=|==|!=|<>|[=<>])
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass
class Token:
    kind: str  # number, name, keyword, string, op, punct, end, bad
    text: str
    pos: int
    value: Any = None


def tokenize(query: str) -> list[Token]:
    """The tokens of `query`; an unknown character becomes a `bad` token the parser reports."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None and query[pos] in "'\"":
            raise QueryError(query, pos, f"a closing {query[pos]} for the text that starts here")
        if match is None:
            tokens.append(Token("bad", query[pos], pos))
            pos += 1
            continue
        kind, text = match.lastgroup or "", match.group()
        if kind == "number":
            tokens.append(Token(kind, text, pos, number_value(query, text, pos)))
        elif kind == "string":
            quote = text[0]
            tokens.append(Token(kind, text, pos, text[1:-1].replace(quote * 2, quote)))
        elif kind == "name" and text.lower() in KEYWORDS:
            tokens.append(Token("keyword", text.lower(), pos))
        elif kind != "ws":
            tokens.append(Token(kind, text, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(query)))
    return tokens


def number_value(query: str, text: str, pos: int) -> int | float:
    """A number literal's value; integers beyond 64 bits and infinite floats fail at `pos`."""
    if re.fullmatch(r"[-+]?\d+", text):
        if len(text.lstrip("+-").lstrip("0")) <= 19 and INT64[0] <= int(text) <= INT64[1]:
            return int(text)
        raise QueryError(query, pos, "a whole number between -2**63 and 2**63-1")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise QueryError(query, pos, "a number small enough to be a float (at most 1.8e308)")
    return value


# -- syntax tree ----------------------------------------------------------------------------


@dataclass
class Field:
    family: str  # "" for run columns, "params"/"metrics"/"env", or "tags"
    key: str
    pos: int

    @property
    def label(self) -> str:
        return f"{self.family}.{self.key}" if self.family in FAMILIES else self.key


def parse_field(text: str, pos: int, query: str) -> Field:
    """A field token -> Field; unknown names and families fail at their position."""
    head, _, rest = text.partition(".")
    lowered = head.lower()
    if lowered == "code" and rest.lower() == "commit":
        return Field("code", "commit", pos)
    if not rest:
        if lowered in (*COLUMNS_TEXT, *COLUMNS_NUMBER, *COLUMNS_DATE):
            return Field("", lowered, pos)
        if lowered == "tags":
            return Field("tags", "tags", pos)
        if lowered in FAMILIES:
            raise QueryError(query, pos + len(head), f"a key after '{head}', e.g. {lowered}.temp")
    elif lowered in FAMILIES:
        parts = re.findall(r'"([^"]*)"|([^."]+)', rest)
        key = ".".join(quoted or plain for quoted, plain in parts)
        if key:
            return Field(lowered, key, pos)
        raise QueryError(query, pos + len(head) + 1, f"a key after '{head}.'")
    hint = f", found '{text}'"
    close = difflib.get_close_matches(
        lowered,
        [*COLUMNS_TEXT, *COLUMNS_NUMBER, *COLUMNS_DATE, "tags", *FAMILIES],
        n=1,
        cutoff=0.75,
    )
    if close and close[0] in FAMILIES and rest:
        hint += f" (did you mean {close[0]}.{rest}?)"
    elif close and not rest and close[0] not in FAMILIES:
        hint += f" (did you mean {close[0]}?)"
    elif not rest:
        hint += f" (did you mean params.{text} or metrics.{text}?)"
    raise QueryError(query, pos, FIELDS_HINT + hint)


@dataclass
class Compare:
    field: Field
    op: str  # = != < <= > >= in like
    values: list[Token]
    negate: bool = False


@dataclass
class BoolOp:
    op: str  # and / or
    items: list[Node]


@dataclass
class Not:
    item: Node


Node = Compare | BoolOp | Not


class Parser:
    """Recursive descent over the tokens; every failure names its position and expectation."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.i = 0
        self.depth = 0  # how many '(' and 'not' enclose the current token

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, tok: Token | None = None) -> QueryError:
        tok = tok or self.tok
        found = "the end of the query" if tok.kind == "end" else repr(tok.text)
        return QueryError(self.query, tok.pos, f"{expected}, found {found}")

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        tok = self.tok
        if tok.kind == kind and (text is None or tok.text == text):
            self.i += 1
            return tok
        return None

    def expect(self, kind: str, text: str, expected: str) -> Token:
        tok = self.accept(kind, text)
        if tok is None:
            raise self.fail(expected)
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.fail('a condition such as "params.temp >= 200"')
        node = self.or_expr()
        if self.tok.kind != "end":
            expected = "'and', 'or' or the end of the query"
            if self.tok.text == ")":
                expected = "'and', 'or' or the end of the query (this ')' has no '(')"
            raise self.fail(expected)
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.accept("keyword", "or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", items)

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.accept("keyword", "and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else BoolOp("and", items)

    def not_expr(self) -> Node:
        if self.tok.text in ("not", "(") and self.tok.kind in ("keyword", "punct"):
            if self.depth >= MAX_NESTING:
                raise self.fail(f"at most {MAX_NESTING} parentheses or 'not's inside each other")
            self.depth += 1
            try:
                return self.nested()
            finally:
                self.depth -= 1
        return self.comparison()

    def nested(self) -> Node:
        """A 'not' or a parenthesised expression, one level deeper."""
        if self.accept("keyword", "not"):
            return Not(self.not_expr())
        open_ = self.expect("punct", "(", "'('")
        node = self.or_expr()
        if not self.accept("punct", ")"):
            raise self.fail(f"')' to close the '(' at position {open_.pos + 1}")
        return node

    def comparison(self) -> Compare:
        tok = self.tok
        if tok.kind != "name":
            raise self.fail(FIELDS_HINT)
        self.i += 1
        field = parse_field(tok.text, tok.pos, self.query)
        negate = bool(self.accept("keyword", "not"))
        if self.accept("keyword", "in"):
            self.expect("punct", "(", "'(' after 'in'")
            values = [self.value()]
            while self.accept("punct", ","):
                values.append(self.value())
            self.expect("punct", ")", "',' or ')' in the list of values")
            return Compare(field, "in", values, negate)
        if self.accept("keyword", "like"):
            pattern = self.value()
            if pattern.kind != "string":
                raise self.fail("a quoted pattern after 'like', e.g. 'scan-%'", pattern)
            return Compare(field, "like", [pattern], negate)
        if negate:
            raise self.fail("'in' or 'like' after 'not'")
        if self.tok.kind != "op":
            raise self.fail("an operator (=, !=, <, <=, >, >=, in, like)")
        op = OPERATORS[self.tok.text]
        self.i += 1
        return Compare(field, op, [self.value()])

    def value(self) -> Token:
        tok = self.tok
        if tok.kind in ("number", "string") or (
            tok.kind == "keyword" and tok.text in ("true", "false")
        ):
            self.i += 1
            if tok.kind == "keyword":
                tok = Token("number", tok.text, tok.pos, 1 if tok.text == "true" else 0)
            return tok
        raise self.fail("a value (a number, 'text', true or false)")


def parse(query: str) -> Node:
    """The syntax tree of `query`; raises QueryError naming the position and what was expected."""
    return Parser(query).parse()


# -- SQL generation -------------------------------------------------------------------------

KEY_ID = "(SELECT key_id FROM keys WHERE family = ? AND key = ?)"
# `+` keeps SQLite from driving the query by a (possibly huge) list of matching runs: it walks
# the runs in the asked order and probes each list, so `--limit 20` stops after 20 matches
IN_RUNS = "+runs.rid IN"


class Compiler:
    """Turns a syntax tree into an SQL condition over `runs` with bound parameters."""

    def __init__(self, query: str) -> None:
        self.query = query
        self.params: list[Any] = []

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
        select = f"SELECT run FROM kv WHERE key_id = {KEY_ID}"
        if c.op == "like":
            self.params += [*fam_key, c.values[0].value]
            return f"{IN_RUNS} ({select} AND text LIKE ?)"
        if c.op in ("=", "in"):
            return f"{IN_RUNS} ({select} AND {self.kv_match(c.values, fam_key)})"
        if c.op == "!=":  # has a value, and not an equal one
            self.params += fam_key
            has = f"{IN_RUNS} ({select})"
            equal = f"{IN_RUNS} ({select} AND {self.kv_match(c.values, fam_key)})"
            return f"({has} AND NOT {equal})"
        tok = c.values[0]
        column = "num" if tok.kind == "number" else "text"
        self.params += [*fam_key, tok.value]
        return f"{IN_RUNS} ({select} AND {column} {c.op} ?)"

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
        select = "SELECT run FROM members WHERE experiment"
        if c.op == "like":
            self.params.append(c.values[0].value)
            return f"{IN_RUNS} ({select} LIKE ?)"
        values = [self.text_of(v, c.field) for v in c.values]
        named = [v for v in values if v]
        parts = []
        if named:
            self.params += named
            parts.append(f"{IN_RUNS} ({select} IN ({', '.join('?' * len(named))}))")
        if len(named) < len(values):  # '' stands for "in no experiment"
            parts.append(f"(NOT {IN_RUNS} (SELECT run FROM members))")
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
            return f"{IN_RUNS} (SELECT run FROM tags WHERE tag LIKE ?)"
        sql = f"{IN_RUNS} (SELECT run FROM tags WHERE tag IN ({', '.join('?' * len(values))}))"
        return f"(NOT {sql})" if c.op == "!=" else sql


def compile_where(query: str) -> tuple[str, list[Any]]:
    """`query` as an SQL condition over the index's `runs` table, and its bound parameters."""
    compiler = Compiler(query)
    sql = compiler.node(parse(query))
    return sql, compiler.params


def family_keys(
    query: str | None = None, sort: str | None = None, columns: list[str] | None = None
) -> list[str]:
    """The `params.X` / `metrics.X` / `env.X` names a query, sort spec and columns refer to."""
    found: list[str] = []

    def walk(node: Node) -> None:
        if isinstance(node, Compare):
            if node.field.family in FAMILIES:
                found.append(node.field.label)
        elif isinstance(node, BoolOp):
            for item in node.items:
                walk(item)
        else:
            walk(node.item)

    if query and query.strip():
        walk(parse(query))
    for part in (sort or "").split(","):
        name = part.strip().lstrip("-+")
        if name.partition(".")[0] in FAMILIES and name.partition(".")[2]:
            found.append(name)
    found += [c for c in columns or [] if c.partition(".")[0] in FAMILIES and not c.endswith(".*")]
    return list(dict.fromkeys(found))


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


# -- dates ----------------------------------------------------------------------------------

_DATE_FORMATS: list[tuple[str, Callable[[dt.datetime], dt.timedelta]]] = [
    (r"\d{4}", lambda d: dt.timedelta(days=366 if d.year % 4 == 0 else 365)),
    (r"\d{4}-\d{2}", lambda d: dt.timedelta(days=31)),
    (r"\d{4}-\d{2}-\d{2}", lambda d: dt.timedelta(days=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}", lambda d: dt.timedelta(hours=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", lambda d: dt.timedelta(minutes=1)),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}", lambda d: dt.timedelta(seconds=1)),
]


def date_span(text: str) -> tuple[float, float] | None:
    """[start, end) of a date literal in epoch seconds; dates without a zone are local time.

    A literal is as wide as its precision: '2024-05-01' is that whole day, '2024-05' the month,
    so `started = '2024-05-01'` finds the runs started that day. Also 'today', 'yesterday', 'now'.
    """
    text = text.strip()
    word = text.lower()
    now = dt.datetime.now().astimezone()
    if word in ("today", "yesterday"):
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if word == "yesterday":
            day = (day - dt.timedelta(days=1)).replace(hour=0)
        return day.timestamp(), (day + dt.timedelta(days=1)).timestamp()
    if word == "now":
        return now.timestamp(), now.timestamp()
    body, zone = text, ""
    zmatch = re.search(r"(Z|[+-]\d{2}:?\d{2})$", text) if len(text) > 10 else None
    if zmatch:
        body, zone = text[: zmatch.start()], zmatch.group()
    try:
        return _span(text, body, zone)
    except (ValueError, OverflowError, OSError):  # '2024-13-45', year 0 or beyond 9999
        return None


def _span(text: str, body: str, zone: str) -> tuple[float, float] | None:
    """date_span() of a literal split into its body and zone; raises ValueError when invalid."""
    for pattern, width in _DATE_FORMATS:
        if re.fullmatch(pattern, body):
            padded = body.replace(" ", "T")
            if len(padded) == 4:
                padded += "-01-01"
            elif len(padded) == 7:
                padded += "-01"
            elif len(padded) == 13:
                padded += ":00"
            start = _localise(
                dt.datetime.fromisoformat(padded + ("+00:00" if zone == "Z" else zone))
            )
            if width(start) == dt.timedelta(days=31):  # a month: up to the next month's first day
                nxt = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                return start.timestamp(), nxt.timestamp()
            return start.timestamp(), (start + width(start)).timestamp()
    exact = _localise(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
    return exact.timestamp(), exact.timestamp() + 0.001


def _localise(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.astimezone()


def timestamp(iso: str | None) -> float | None:
    """Epoch seconds of an ISO 8601 time as records store it (None when empty)."""
    if not iso:
        return None
    try:
        return _localise(dt.datetime.fromisoformat(iso)).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
