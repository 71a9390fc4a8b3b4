"""A SOQL subset: tokenizer, recursive-descent parser and a compiler to Python predicates.

Supported: `SELECT` fields (case-insensitive, parent relationships such as `Owner.Name`, `COUNT()`,
the aggregates `COUNT(field)`, `MAX`, `MIN`, `SUM`, `AVG` (without GROUP BY: one AggregateResult row;
SUM and AVG on number fields only), `FIELDS(ALL|STANDARD|CUSTOM)`), `FROM` one object, `WHERE` with AND / OR / NOT and
parentheses (mixing AND and OR without parentheses is refused, as Salesforce does), the comparison
operators, `IN` / `NOT IN`, `LIKE`, `null`, booleans, numbers, string literals with SOQL escapes,
date and datetime literals and relative date literals (`TODAY`, `LAST_N_DAYS:n`, ...), `WITH
SECURITY_ENFORCED`, `ORDER BY` with ASC/DESC and NULLS FIRST/LAST, `LIMIT` and `OFFSET`.

A query is evaluated once against the store; callers slice the returned rows into pages. Errors carry
Salesforce's codes (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE, INVALID_QUERY_FILTER_OPERATOR) and
its `ERROR at Row:r:Column:c` message layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .clock import format_date, format_datetime, parse_date, parse_datetime
from .errors import ApiError
from .ids import normalize_id
from .schema import FIELD_TYPES, NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef, Schema
from .store import Store
from .values import to_csv, to_json

Row = dict[str, Any]
Getter = Callable[[Row], Any]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),:])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {
    "n": "\n",
    "N": "\n",
    "r": "\r",
    "R": "\r",
    "t": "\t",
    "T": "\t",
    "b": "\b",
    "B": "\b",
    "f": "\f",
    "F": "\f",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "%": "%",
    "_": "_",
}
_KEYWORDS = frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "NULL",
        "TRUE",
        "FALSE",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "INCLUDES",
        "EXCLUDES",
        "TYPEOF",
    ]
)
_RANGE_LITERALS = frozenset(
    [
        "TODAY",
        "YESTERDAY",
        "TOMORROW",
        "THIS_WEEK",
        "LAST_WEEK",
        "NEXT_WEEK",
        "THIS_MONTH",
        "LAST_MONTH",
        "NEXT_MONTH",
        "THIS_YEAR",
        "LAST_YEAR",
        "NEXT_YEAR",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
    ]
)
_N_LITERALS = frozenset(
    ["LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO", "LAST_N_WEEKS", "NEXT_N_WEEKS", "LAST_N_MONTHS"]
)
MAX_OFFSET = 2000


# -- tokens and errors ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def _error(query: str, pos: int, code: str, text: str) -> ApiError:
    """Salesforce points at the offending spot: the line, a caret, `ERROR at Row:r:Column:c`, a reason."""
    row = query.count("\n", 0, pos) + 1
    line_start = query.rfind("\n", 0, pos) + 1
    line_end = query.find("\n", pos)
    line = query[line_start : line_end if line_end >= 0 else len(query)]
    column = pos - line_start + 1
    return ApiError(400, code, f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{text}")


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if match is None:
            if query[pos] == "'":
                raise _error(query, pos, "MALFORMED_QUERY", "unterminated string literal")
            raise _error(
                query, pos, "MALFORMED_QUERY", f"line 1:{pos} no viable alternative at character '{query[pos]}'"
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", len(query)))
    return tokens


def decode_string(body: str, query: str, pos: int) -> str:
    """A string literal's value; `\\%` and `\\_` stay literal characters."""
    out: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        escape = body[index + 1] if index + 1 < len(body) else ""
        if escape in ("u", "U") and re.fullmatch(r"[0-9a-fA-F]{4}", body[index + 2 : index + 6]):
            out.append(chr(int(body[index + 2 : index + 6], 16)))
            index += 6
            continue
        if escape not in _ESCAPES:
            raise _error(
                query,
                pos,
                "MALFORMED_QUERY",
                f"Invalid string literal '{body}'. Illegal character sequence '\\{escape}' in string literal.",
            )
        out.append(_ESCAPES[escape])
        index += 2
    return "".join(out)


def like_regex(body: str) -> re.Pattern[str]:
    """`%` any run, `_` any one character, escapes literal; case-insensitive like Salesforce."""
    parts: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            escape = body[index + 1]
            if escape in ("u", "U") and re.fullmatch(r"[0-9a-fA-F]{4}", body[index + 2 : index + 6]):
                parts.append(re.escape(chr(int(body[index + 2 : index + 6], 16))))
                index += 6
                continue
            parts.append(re.escape(_ESCAPES.get(escape, escape)))
            index += 2
            continue
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


# -- syntax tree ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    kind: str  # string | number | date | datetime | boolean | null | range
    value: Any
    token: Token
    raw: str = ""


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]
    token: Token


@dataclass
class Comparison:
    ref: FieldRef
    op: str  # = != < <= > >= IN NOTIN LIKE
    values: list[Literal]


@dataclass
class BoolOp:
    op: str  # AND | OR | NOT
    children: list[Any]


@dataclass
class SelectItem:
    kind: str  # field | count | fields
    token: Token
    ref: FieldRef | None = None
    alias: str | None = None  # COUNT(x) / MAX(x) ... alias, or the FIELDS() scope
    function: str = "COUNT"  # for kind "count": COUNT, MAX, MIN, SUM or AVG


@dataclass
class OrderItem:
    ref: FieldRef
    descending: bool
    nulls_first: bool


@dataclass
class ParsedQuery:
    text: str
    select: list[SelectItem]
    sobject: Token
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


class Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0

    # helpers
    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_keyword(self, *words: str) -> bool:
        return self.current.kind == "ident" and self.current.upper in words

    def expect_keyword(self, word: str) -> Token:
        if not self.is_keyword(word):
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> Token:
        if self.current.kind != "punct" or self.current.text != char:
            raise self.unexpected()
        return self.advance()

    def unexpected(self, token: Token | None = None) -> ApiError:
        token = token or self.current
        return _error(self.query, token.pos, "MALFORMED_QUERY", f"unexpected token: '{token.text}'")

    def integer(self) -> int:
        token = self.current
        if token.kind != "number" or not re.fullmatch(r"\d+", token.text):
            raise self.unexpected()
        self.advance()
        return int(token.text)

    # grammar
    def parse(self) -> ParsedQuery:
        self.expect_keyword("SELECT")
        select = self.select_list()
        self.expect_keyword("FROM")
        sobject = self.current
        if sobject.kind != "ident" or sobject.upper in _KEYWORDS:
            raise self.unexpected()
        self.advance()
        parsed = ParsedQuery(self.query, select, sobject)
        if self.is_keyword("WHERE"):
            self.advance()
            parsed.where = self.condition()
        if self.is_keyword("WITH"):
            self.advance()
            if not (
                self.current.kind == "ident"
                and self.current.upper in ("SECURITY_ENFORCED", "USER_MODE", "SYSTEM_MODE")
            ):
                raise self.unexpected()
            self.advance()
        if self.is_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            parsed.order = self.order_list()
        if self.is_keyword("LIMIT"):
            self.advance()
            parsed.limit = self.integer()
        if self.is_keyword("OFFSET"):
            self.advance()
            token = self.current
            parsed.offset = self.integer()
            if parsed.offset > MAX_OFFSET:
                raise _error(
                    self.query,
                    token.pos,
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                )
        if self.current.kind != "eof":
            raise self.unexpected()
        return parsed

    def field_ref(self) -> FieldRef:
        token = self.current
        if token.kind != "ident" or token.upper in _KEYWORDS:
            raise self.unexpected()
        self.advance()
        return FieldRef(tuple(token.text.split(".")), token)

    def select_list(self) -> list[SelectItem]:
        items = [self.select_item()]
        while self.current.kind == "punct" and self.current.text == ",":
            self.advance()
            items.append(self.select_item())
        return items

    def select_item(self) -> SelectItem:
        token = self.current
        next_is_paren = self.tokens[self.index + 1].text == "("
        if token.kind == "ident" and token.upper in AGGREGATE_FUNCTIONS and next_is_paren:
            self.advance()
            self.expect_punct("(")
            ref = None if self.current.text == ")" and token.upper == "COUNT" else self.field_ref()
            self.expect_punct(")")
            alias = None
            if self.current.kind == "ident" and self.current.upper not in _KEYWORDS:
                alias = self.advance().text
            return SelectItem("count", token, ref, alias, token.upper)
        if token.kind == "ident" and token.upper == "FIELDS" and next_is_paren:
            self.advance()
            self.expect_punct("(")
            scope = self.current
            if scope.kind != "ident" or scope.upper not in ("ALL", "STANDARD", "CUSTOM"):
                raise self.unexpected()
            self.advance()
            self.expect_punct(")")
            return SelectItem("fields", token, alias=scope.upper)
        return SelectItem("field", token, self.field_ref())

    def order_list(self) -> list[OrderItem]:
        items = []
        while True:
            ref = self.field_ref()
            descending = False
            if self.is_keyword("ASC", "DESC"):
                descending = self.advance().upper == "DESC"
            nulls_first = not descending
            if self.is_keyword("NULLS"):
                self.advance()
                if not self.is_keyword("FIRST", "LAST"):
                    raise self.unexpected()
                nulls_first = self.advance().upper == "FIRST"
            items.append(OrderItem(ref, descending, nulls_first))
            if not (self.current.kind == "punct" and self.current.text == ","):
                return items
            self.advance()

    def condition(self) -> Any:
        """A run of terms joined by one kind of operator; mixing AND and OR needs parentheses."""
        first = self.term()
        operator: str | None = None
        children = [first]
        while self.is_keyword("AND", "OR"):
            word = self.current.upper
            if operator is not None and word != operator:
                raise self.unexpected()
            operator = word
            self.advance()
            children.append(self.term())
        return first if operator is None else BoolOp(operator, children)

    def term(self) -> Any:
        if self.is_keyword("NOT"):
            self.advance()
            return BoolOp("NOT", [self.term()])
        if self.current.kind == "punct" and self.current.text == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        ref = self.field_ref()
        if self.current.kind == "op":
            op = self.advance().text
            return Comparison(ref, "!=" if op == "<>" else op, [self.literal()])
        if self.is_keyword("LIKE"):
            self.advance()
            literal = self.literal()
            if literal.kind != "string":
                raise self.unexpected(literal.token)
            return Comparison(ref, "LIKE", [literal])
        negate = False
        if self.is_keyword("NOT"):
            self.advance()
            negate = True
            if not self.is_keyword("IN"):
                raise self.unexpected()
        if self.is_keyword("IN"):
            self.advance()
            self.expect_punct("(")
            if self.is_keyword("SELECT"):
                raise _error(
                    self.query,
                    self.current.pos,
                    "MALFORMED_QUERY",
                    "semi-join sub-selects are not supported by this emulator",
                )
            values = [self.literal()]
            while self.current.kind == "punct" and self.current.text == ",":
                self.advance()
                values.append(self.literal())
            self.expect_punct(")")
            return Comparison(ref, "NOTIN" if negate else "IN", values)
        if self.is_keyword("INCLUDES", "EXCLUDES"):
            raise _error(
                self.query,
                self.current.pos,
                "MALFORMED_QUERY",
                "INCLUDES/EXCLUDES (multi-select picklists) are not supported by this emulator",
            )
        raise self.unexpected()

    def literal(self) -> Literal:
        token = self.current
        if token.kind == "string":
            self.advance()
            body = token.text[1:-1]
            return Literal("string", decode_string(body, self.query, token.pos), token, body)
        if token.kind == "number":
            self.advance()
            number: float | int = float(token.text) if "." in token.text else int(token.text)
            return Literal("number", number, token)
        if token.kind == "date":
            self.advance()
            day = parse_date(token.text)
            if day is None:
                raise _error(self.query, token.pos, "MALFORMED_QUERY", f"invalid date: {token.text}")
            return Literal("date", day, token)
        if token.kind == "datetime":
            self.advance()
            moment = parse_datetime(token.text)
            if moment is None:
                raise _error(self.query, token.pos, "MALFORMED_QUERY", f"invalid datetime: {token.text}")
            return Literal("datetime", moment, token)
        if token.kind == "ident":
            word = token.upper
            if word in ("TRUE", "FALSE"):
                self.advance()
                return Literal("boolean", word == "TRUE", token)
            if word == "NULL":
                self.advance()
                return Literal("null", None, token)
            if word in _RANGE_LITERALS:
                self.advance()
                return Literal("range", (word, 0), token)
            if word in _N_LITERALS:
                self.advance()
                self.expect_punct(":")
                return Literal("range", (word, self.integer()), token)
        raise self.unexpected()


def parse(query: str) -> ParsedQuery:
    return Parser(query).parse()


# -- relative date literals -----------------------------------------------------------------------------
def _month_start(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def date_range(name: str, n: int, today: date) -> tuple[date, date]:
    """[start, end) in days for a relative date literal (the org runs in GMT)."""
    week = today - timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday
    one = timedelta(days=1)
    ranges = {
        "TODAY": (today, today + one),
        "YESTERDAY": (today - one, today),
        "TOMORROW": (today + one, today + 2 * one),
        "THIS_WEEK": (week, week + 7 * one),
        "LAST_WEEK": (week - 7 * one, week),
        "NEXT_WEEK": (week + 7 * one, week + 14 * one),
        "THIS_MONTH": (_month_start(today, 0), _month_start(today, 1)),
        "LAST_MONTH": (_month_start(today, -1), _month_start(today, 0)),
        "NEXT_MONTH": (_month_start(today, 1), _month_start(today, 2)),
        "THIS_YEAR": (date(today.year, 1, 1), date(today.year + 1, 1, 1)),
        "LAST_YEAR": (date(today.year - 1, 1, 1), date(today.year, 1, 1)),
        "NEXT_YEAR": (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)),
        "LAST_90_DAYS": (today - 90 * one, today + one),
        "NEXT_90_DAYS": (today + one, today + 91 * one),
        "LAST_N_DAYS": (today - n * one, today + one),
        "NEXT_N_DAYS": (today + one, today + (n + 1) * one),
        "N_DAYS_AGO": (today - n * one, today - (n - 1) * one),
        "LAST_N_WEEKS": (week - 7 * n * one, week),
        "NEXT_N_WEEKS": (week + 7 * one, week + 7 * (n + 1) * one),
        "LAST_N_MONTHS": (_month_start(today, -n), _month_start(today, 0)),
    }
    return ranges[name]


# -- compilation ----------------------------------------------------------------------------------------------
@dataclass
class Column:
    """One selected field: where it goes in the JSON record and how to read it."""

    name: str  # output name, canonical case; "Owner.Name" for a parent field
    relationship: str | None  # canonical relationship name, or None
    target: ObjectDef | None
    field_def: FieldDef
    getter: Getter
    parent_of: Callable[[Row], Row | None] | None = None
    # How a non-null value of this field becomes JSON; None when it already is.
    to_json: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.field_def.type == "datetime":
            self.to_json = format_datetime
        elif self.field_def.type == "date":
            self.to_json = format_date


@dataclass
class CompiledQuery:
    definition: ObjectDef
    columns: list[Column]
    predicate: Callable[[Row], bool] | None
    order: list[tuple[Getter, bool, bool]]
    limit: int | None
    offset: int | None
    count_only: bool = False
    aggregates: list[Aggregate] = field(default_factory=list)

    def run(self, store: Store, *, include_deleted: bool) -> list[Row]:
        """Matching rows in result order, after OFFSET and LIMIT."""
        table = store.table(self.definition)
        rows = table.records.values() if include_deleted else table.live()
        predicate = self.predicate
        matched = [r for r in rows if predicate(r)] if predicate is not None else list(rows)
        for getter, descending, nulls_first in reversed(self.order):
            null_rank = 0 if nulls_first != descending else 2

            def key(row: Row, getter: Getter = getter, null_rank: int = null_rank) -> tuple[Any, ...]:
                value = getter(row)
                return (null_rank,) if value is None else (1, value)

            matched.sort(key=key, reverse=descending)
        start = self.offset or 0
        end = start + self.limit if self.limit is not None else None
        return matched[start:end]

    def aggregate_row(self, rows: list[Row]) -> Row:
        record: Row = {"attributes": {"type": "AggregateResult"}}
        for position, aggregate in enumerate(self.aggregates):
            record[aggregate.alias or f"expr{position}"] = aggregate.value(rows)
        return record

    def render(self, row: Row, version: str) -> Row:
        """The JSON record, as the query resource returns it (the hot path of paging: keep it lean)."""
        name = self.definition.name
        record: Row = {
            "attributes": {"type": name, "url": f"/services/data/v{version}/sobjects/{name}/{row['Id']}"}
        }
        parents: dict[str, Row | None] = {}
        for column in self.columns:
            if column.relationship is None:
                value = row.get(column.field_def.name) if not column.field_def.components else column.getter(row)
                record[column.field_def.name] = (
                    column.to_json(value) if value is not None and column.to_json is not None else value
                )
                continue
            if column.relationship not in parents:
                parent = column.parent_of(row) if column.parent_of is not None else None
                parents[column.relationship] = (
                    None
                    if parent is None or column.target is None
                    else {
                        "attributes": {
                            "type": column.target.name,
                            "url": f"/services/data/v{version}/sobjects/{column.target.name}/{parent['Id']}",
                        }
                    }
                )
                record[column.relationship] = parents[column.relationship]
            nested = parents[column.relationship]
            if nested is not None:
                nested[column.field_def.name] = to_json(column.getter(row))
        return record

    def csv_header(self) -> list[str]:
        return [column.name for column in self.columns]

    def csv_row(self, row: Row) -> list[str]:
        return [to_csv(column.getter(row)) for column in self.columns]


AGGREGATE_FUNCTIONS = frozenset({"COUNT", "MAX", "MIN", "SUM", "AVG"})


@dataclass(frozen=True)
class Aggregate:
    """One aggregate of the SELECT list. Nulls are ignored; MAX/MIN/SUM/AVG over no value are null."""

    function: str
    alias: str
    getter: Getter | None  # None for COUNT()
    to_json: Callable[[Any], Any] | None = None

    def value(self, rows: list[Row]) -> Any:
        if self.getter is None:
            return len(rows)
        values = [v for r in rows if (v := self.getter(r)) is not None]
        if self.function == "COUNT":
            return len(values)
        if not values:
            return None
        if self.function == "SUM":
            return sum(values)
        if self.function == "AVG":
            return sum(values) / len(values)
        chosen = max(values) if self.function == "MAX" else min(values)
        return self.to_json(chosen) if self.to_json is not None else chosen


class _ParentGetter:
    """Reads a field of the parent record a reference field points to (`Owner.Name`)."""

    def __init__(self, store: Store, reference: FieldDef, target: ObjectDef, field_def: FieldDef) -> None:
        self.table = store.table(target)
        self.reference = reference.name
        self.read = _field_getter(field_def)

    def parent(self, row: Row) -> Row | None:
        parent_id = row.get(self.reference)
        return self.table.records.get(parent_id) if parent_id is not None else None

    def __call__(self, row: Row) -> Any:
        parent = self.parent(row)
        return self.read(parent) if parent is not None else None


class Compiler:
    def __init__(self, parsed: ParsedQuery, schema: Schema, store: Store, now: datetime) -> None:
        self.parsed = parsed
        self.query = parsed.text
        self.schema = schema
        self.store = store
        self.today = now.astimezone(UTC).date()
        definition = schema.get(parsed.sobject.text)
        if definition is None or not definition.queryable:
            raise _error(
                self.query,
                parsed.sobject.pos,
                "INVALID_TYPE",
                f"sObject type '{parsed.sobject.text}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. Please reference your WSDL or the "
                "describe call for the appropriate names.",
            )
        self.definition = definition

    def compile(self) -> CompiledQuery:
        columns: list[Column] = []
        aggregates: list[Aggregate] = []
        count_only = False
        seen: set[str] = set()
        for item in self.parsed.select:
            if item.kind == "count":
                if item.ref is None:
                    count_only = True
                else:
                    aggregates.append(self._aggregate(item))
                continue
            expanded = self._fields_scope(item) if item.ref is None else [self.resolve(item.ref)]
            for column in expanded:
                if column.name.lower() in seen:
                    raise _error(
                        self.query, item.token.pos, "MALFORMED_QUERY", f"duplicate field selected: {column.name}"
                    )
                seen.add(column.name.lower())
                columns.append(column)
        if count_only and len(self.parsed.select) > 1:
            raise _error(
                self.query,
                self.parsed.select[1].token.pos,
                "MALFORMED_QUERY",
                "COUNT() must be the only element in the SELECT list",
            )
        if aggregates and columns:
            bad = next(i for i in self.parsed.select if i.kind != "count")
            raise _error(
                self.query,
                bad.token.pos,
                "MALFORMED_QUERY",
                f"Field must be grouped or aggregated: {columns[0].field_def.name}",
            )
        return CompiledQuery(
            definition=self.definition,
            columns=columns,
            predicate=self.predicate(self.parsed.where) if self.parsed.where is not None else None,
            order=[
                (self._sort_getter(self.resolve(o.ref)), o.descending, o.nulls_first) for o in self.parsed.order
            ],
            limit=self.parsed.limit,
            offset=self.parsed.offset,
            count_only=count_only,
            aggregates=aggregates,
        )

    def _aggregate(self, item: SelectItem) -> Aggregate:
        assert item.ref is not None
        column = self.resolve(item.ref)
        kind = column.field_def.type
        allowed = (
            NUMBER_TYPES
            if item.function in ("SUM", "AVG")
            else FIELD_TYPES - {"textarea"}
            if item.function == "COUNT"
            else FIELD_TYPES - {"textarea", "boolean"}
        )
        if kind not in allowed:
            raise _error(
                self.query,
                item.token.pos,
                "INVALID_FIELD",
                f"field {column.field_def.name} does not support aggregate operator {item.function}",
            )
        return Aggregate(item.function, item.alias or "", column.getter, column.to_json)

    def _fields_scope(self, item: SelectItem) -> list[Column]:
        if item.alias in ("ALL", "CUSTOM") and (self.parsed.limit is None or self.parsed.limit > 200):
            raise _error(
                self.query,
                item.token.pos,
                "MALFORMED_QUERY",
                "The SOQL FIELDS function must have a LIMIT of at most 200",
            )
        chosen = [
            f
            for f in self.definition.fields.values()
            if item.alias == "ALL" or (f.custom == (item.alias == "CUSTOM"))
        ]
        return [Column(f.name, None, None, f, _field_getter(f)) for f in chosen]

    def resolve(self, ref: FieldRef) -> Column:
        path = list(ref.path)
        if len(path) > 1 and path[0].lower() == self.definition.name.lower():
            path = path[1:]  # `Contact.Email` in a query FROM Contact
        if len(path) == 1:
            field_def = self.definition.field(path[0])
            if field_def is None:
                raise self._no_such_column(ref, path[0], self.definition)
            return Column(field_def.name, None, None, field_def, _field_getter(field_def))
        if len(path) > 2:
            raise _error(
                self.query,
                ref.token.pos,
                "MALFORMED_QUERY",
                "only one level of parent relationship is supported by this emulator",
            )
        reference = self.definition.relationship(path[0])
        if reference is None:
            raise _error(
                self.query,
                ref.token.pos,
                "INVALID_FIELD",
                f"Didn't understand relationship '{path[0]}' in field path. If you are attempting to use a custom "
                "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
                "your WSDL or the describe call for the appropriate names.",
            )
        target = self.schema.get(reference.reference_to[0])
        assert target is not None
        field_def = target.field(path[1])
        if field_def is None:
            raise self._no_such_column(ref, path[1], target)
        getter = _ParentGetter(self.store, reference, target, field_def)
        relationship = reference.relationship_name or path[0]
        return Column(f"{relationship}.{field_def.name}", relationship, target, field_def, getter, getter.parent)

    def _no_such_column(self, ref: FieldRef, name: str, definition: ObjectDef) -> ApiError:
        return _error(
            self.query,
            ref.token.pos,
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{definition.name}'. If you are attempting to use a custom field, "
            "be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe "
            "call for the appropriate names.",
        )

    @staticmethod
    def _sort_getter(column: Column) -> Getter:
        getter = column.getter
        if column.field_def.type in STRING_TYPES and column.field_def.type not in ("id", "reference"):
            return lambda row: _fold(getter(row))
        return getter

    # predicates
    def predicate(self, node: Any) -> Callable[[Row], bool]:
        if isinstance(node, BoolOp):
            parts = [self.predicate(child) for child in node.children]
            if node.op == "AND":
                return lambda row: all(p(row) for p in parts)
            if node.op == "OR":
                return lambda row: any(p(row) for p in parts)
            inner = parts[0]
            return lambda row: not inner(row)
        return self.comparison(node)

    def comparison(self, node: Comparison) -> Callable[[Row], bool]:
        column = self.resolve(node.ref)
        field_def = column.field_def
        getter = column.getter
        folded = field_def.type in STRING_TYPES and field_def.type not in ("id", "reference")
        if folded:
            raw_getter = getter

            def getter(row: Row) -> Any:
                return _fold(raw_getter(row))

        op = node.op
        if op == "LIKE":
            if field_def.type not in STRING_TYPES:
                raise _error(
                    self.query, node.ref.token.pos, "INVALID_FIELD", f"invalid operator on field: {field_def.name}"
                )
            pattern = like_regex(node.values[0].raw)
            plain = column.getter
            return lambda row: (value := plain(row)) is not None and pattern.fullmatch(value) is not None

        if op in ("IN", "NOTIN"):
            values = {self.coerce(field_def, literal) for literal in node.values}
            if folded:
                values = {_fold(v) for v in values}
            if op == "IN":
                return lambda row: getter(row) in values
            return lambda row: getter(row) not in values

        literal = node.values[0]
        if literal.kind == "range" and field_def.type in ("date", "datetime"):
            return self._range_predicate(field_def, getter, op, literal)
        value = self.coerce(field_def, literal)
        if value is None and op not in ("=", "!="):
            raise _error(self.query, literal.token.pos, "MALFORMED_QUERY", f"invalid operator for null: {op}")
        if folded:
            value = _fold(value)
        return _compare(getter, op, value)

    def _range_predicate(
        self, field_def: FieldDef, getter: Getter, op: str, literal: Literal
    ) -> Callable[[Row], bool]:
        name, n = literal.value
        start: Any
        end: Any
        start, end = date_range(name, n, self.today)
        if field_def.type == "datetime":
            start = datetime.combine(start, time(0), UTC)
            end = datetime.combine(end, time(0), UTC)
        if op == "=":
            return lambda row: (v := getter(row)) is not None and start <= v < end
        if op == "!=":
            return lambda row: (v := getter(row)) is None or not (start <= v < end)
        if op == "<":
            return lambda row: (v := getter(row)) is not None and v < start
        if op == "<=":
            return lambda row: (v := getter(row)) is not None and v < end
        if op == ">":
            return lambda row: (v := getter(row)) is not None and v >= end
        return lambda row: (v := getter(row)) is not None and v >= start

    def coerce(self, field_def: FieldDef, literal: Literal) -> Any:
        """The literal as the field's type, or Salesforce's complaint about the mismatch."""
        kind = literal.kind
        if kind == "null":
            return None
        expected = field_def.type
        if expected in ("id", "reference"):
            if kind != "string":
                raise self._type_error(field_def, literal, "reference", quoted=True)
            normalized = normalize_id(literal.value)
            if normalized is None:
                raise _error(
                    self.query,
                    literal.token.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {literal.value}",
                )
            return normalized
        if expected in STRING_TYPES:
            if kind != "string":
                raise self._type_error(field_def, literal, "string", quoted=True)
            return literal.value
        if expected == "boolean":
            if kind != "boolean":
                raise self._type_error(field_def, literal, "boolean", quoted=False)
            return literal.value
        if expected in ("double", "currency", "percent", "int"):
            if kind != "number":
                raise self._type_error(field_def, literal, "double" if expected != "int" else "int", quoted=False)
            return literal.value
        if expected == "date":
            if kind != "date":
                raise self._type_error(field_def, literal, "date", quoted=False)
            return literal.value
        if expected == "datetime":
            if kind != "datetime":
                raise self._type_error(field_def, literal, "dateTime", quoted=False)
            return literal.value
        raise self._type_error(field_def, literal, expected, quoted=False)

    def _type_error(self, field_def: FieldDef, literal: Literal, type_name: str, *, quoted: bool) -> ApiError:
        advice = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return _error(
            self.query,
            literal.token.pos,
            "INVALID_FIELD",
            f"value of filter criterion for field '{field_def.name}' must be of type {type_name} and {advice}",
        )


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _field_getter(field_def: FieldDef) -> Getter:
    """How a stored row gives this field's value: compound fields are built from their components."""
    if field_def.components:
        return field_def.compound_value
    name = field_def.name
    return lambda row: row.get(name)


def _compare(getter: Getter, op: str, value: Any) -> Callable[[Row], bool]:
    if op == "=":
        return lambda row: getter(row) == value
    if op == "!=":
        return lambda row: getter(row) != value
    if op == "<":
        return lambda row: (v := getter(row)) is not None and v < value
    if op == "<=":
        return lambda row: (v := getter(row)) is not None and v <= value
    if op == ">":
        return lambda row: (v := getter(row)) is not None and v > value
    return lambda row: (v := getter(row)) is not None and v >= value


def compile_query(query: str, schema: Schema, store: Store, now: datetime) -> CompiledQuery:
    if not query or not query.strip():
        raise ApiError(400, "MALFORMED_QUERY", "A query string must be provided.")
    return Compiler(parse(query), schema, store, now).compile()
