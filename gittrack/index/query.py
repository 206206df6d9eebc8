"""The query language of `gittrack ls --where`: tokens, grammar and syntax tree (compiler.py
turns the tree into parameterised SQL over the index).

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

import re
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
    import difflib  # only for a field that does not parse

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
