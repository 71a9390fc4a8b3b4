"""The OData v4 subset Dataverse accepts: `$filter`, `$orderby`, `$select`, `$expand` option lists, key
segments and the `Prefer` header.

`$filter` is tokenized and parsed into a small tree, then compiled into a Python predicate so that paging
through 100,000 rows stays fast. Semantics follow "Filter rows using OData": comparisons on strings are
case-insensitive, `contains/startswith/endswith` use SQL LIKE wildcards (`%`, `_`, `[]`), `''` escapes a
quote, `ne` never matches NULL (Dataverse turns it into SQL `<>`), and the `Microsoft.Dynamics.CRM.*`
query functions take named parameters (`PropertyName='x'`) whose values may be parameter aliases (`@p1`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from . import errors
from .clock import parse_instant, utc_iso

Row = dict[str, Any]
Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID_RE = re.compile(rf"^{_GUID}$")
_TOKEN_RES: list[tuple[str, re.Pattern[str]]] = [
    ("GUID", re.compile(rf"{_GUID}(?![\w-])")),
    ("DATETIME", re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?(?![\w:])")),
    ("DATE", re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:-])")),
    ("NUMBER", re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDlLfF]?(?![\w.])")),
    ("IDENT", re.compile(r"[A-Za-z_@$][\w.]*")),
]
_PUNCTUATION = set("(),[]=/")
_COMPARISONS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
_NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"}


@dataclass
class Token:
    kind: str
    value: Any
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        if char == "'":
            value, i = _read_quoted(text, i)
            tokens.append(Token("STRING", value, i))
            continue
        if char == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                raise errors.unterminated_literal(len(text), text)
            tokens.append(Token("STRING", json.loads(text[i : end + 1]), i))
            i = end + 1
            continue
        if char in _PUNCTUATION:
            tokens.append(Token(char, char, i))
            i += 1
            continue
        for kind, pattern in _TOKEN_RES:
            match = pattern.match(text, i)
            if match:
                raw = match.group(0)
                if kind == "IDENT" and match.end() < len(text) and text[match.end()] == "'":
                    value, end = _read_quoted(text, match.end())
                    tokens.append(Token("ENUM", value, i))
                    i = end
                else:
                    tokens.append(Token(kind, raw, i))
                    i = match.end()
                break
        else:
            raise errors.syntax_error(i, text)
    tokens.append(Token("END", None, len(text)))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """A single-quoted literal with `''` escapes; the documented error when it never closes."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "'":
            if i + 1 < len(text) and text[i + 1] == "'":
                chars.append("'")
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(text[i])
        i += 1
    raise errors.unterminated_literal(len(text), text)  # the lexer reports where it ran out of input


# -- literals ---------------------------------------------------------------------------------------------
@dataclass
class Literal:
    edm: str  # "null" for null
    value: Any


def literal_from_token(token: Token, text: str) -> Literal:
    kind, raw = token.kind, token.value
    if kind == "STRING" or kind == "ENUM":
        return Literal("Edm.String", raw)
    if kind == "GUID":
        return Literal("Edm.Guid", raw.lower())
    if kind == "DATETIME":
        return Literal("Edm.DateTimeOffset", utc_iso(parse_instant(raw)))
    if kind == "DATE":
        return Literal("Edm.Date", raw)
    if kind == "NUMBER":
        number = raw.rstrip("mMdDlLfF")
        if re.fullmatch(r"-?\d+", number):
            value = int(number)
            return Literal("Edm.Int32" if -(2**31) <= value < 2**31 else "Edm.Int64", value)
        return Literal("Edm.Decimal", float(number))
    if kind == "IDENT" and raw in {"true", "false"}:
        return Literal("Edm.Boolean", raw == "true")
    if kind == "IDENT" and raw == "null":
        return Literal("null", None)
    raise errors.syntax_error(token.pos, text)


def coerce(literal: Literal, edm: str | None, position: int, text: str, operator: str = "Equal") -> Any:
    """The literal's value in the stored representation of a property of type `edm` (None = dynamic)."""
    if literal.edm == "null":
        return None
    value = literal.value
    if edm is None:
        return value.casefold() if isinstance(value, str) else value
    if edm == "Edm.String":
        if literal.edm not in {"Edm.String", "Edm.Guid"}:
            raise errors.incompatible_operands(edm, literal.edm, operator)
        return str(value).casefold()
    if edm == "Edm.Guid":
        # Dataverse's own examples compare lookups with quoted GUIDs, so strings holding a GUID are accepted.
        if literal.edm == "Edm.Guid" or (literal.edm == "Edm.String" and GUID_RE.match(str(value))):
            return str(value).lower()
        raise errors.incompatible_operands(edm, literal.edm, operator)
    if edm in _NUMERIC:
        if literal.edm in _NUMERIC:
            return value
        if literal.edm == "Edm.String" and re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
            return float(value) if "." in str(value) else int(value)
        raise errors.incompatible_operands(edm, literal.edm, operator)
    if edm == "Edm.Boolean":
        if literal.edm == "Edm.Boolean":
            return value
        raise errors.incompatible_operands(edm, literal.edm, operator)
    if edm == "Edm.DateTimeOffset":
        if literal.edm == "Edm.DateTimeOffset":
            return value
        if literal.edm in {"Edm.Date", "Edm.String"}:
            return _instant_text(str(value), position, text)
        raise errors.incompatible_operands(edm, literal.edm, operator)
    if edm == "Edm.Date":
        if literal.edm == "Edm.Date":
            return value
        if literal.edm in {"Edm.DateTimeOffset", "Edm.String"}:
            return _instant_text(str(value), position, text)[:10]
        raise errors.incompatible_operands(edm, literal.edm, operator)
    return value


def _instant_text(value: str, position: int, text: str) -> str:
    try:
        return utc_iso(parse_instant(value))
    except ValueError as exc:
        raise errors.syntax_error(position, text) from exc


# -- schema: how property names become getters --------------------------------------------------------------
class Schema(Protocol):
    def resolve(self, path: str) -> tuple[Getter, str | None]:
        """A getter for the property path and its Edm type (None when the type is only known at run time)."""

    def now(self) -> datetime:
        """The instant relative date functions (LastXDays, Today, …) count from."""


class DictSchema:
    """Free-form objects (metadata): any property path, types taken from the values."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now

    def resolve(self, path: str) -> tuple[Getter, str | None]:
        parts = path.split("/")

        def get(obj: Any) -> Any:
            for part in parts:
                if not isinstance(obj, dict):
                    return None
                obj = obj.get(part)
            return obj

        return get, None

    def now(self) -> datetime:
        return self._now()


# -- parser ---------------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str, aliases: dict[str, str]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.aliases = aliases

    @property
    def current(self) -> Token:
        return self.tokens[self.pos]

    def take(self, kind: str | None = None, value: str | None = None) -> Token:
        token = self.current
        if (kind is not None and token.kind != kind) or (value is not None and token.value != value):
            raise errors.syntax_error(token.pos, self.text)
        self.pos += 1
        return token

    def at_word(self, *words: str) -> bool:
        return self.current.kind == "IDENT" and self.current.value in words

    def parse(self) -> tuple[Any, ...]:
        node = self.parse_or()
        if self.current.kind != "END":
            raise errors.syntax_error(self.current.pos, self.text)
        return node

    def parse_or(self) -> tuple[Any, ...]:
        node = self.parse_and()
        while self.at_word("or"):
            self.pos += 1
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> tuple[Any, ...]:
        node = self.parse_unary()
        while self.at_word("and"):
            self.pos += 1
            node = ("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> tuple[Any, ...]:
        if self.at_word("not"):
            self.pos += 1
            return ("not", self.parse_unary())
        return self.parse_comparison()

    def parse_comparison(self) -> tuple[Any, ...]:
        left = self.parse_primary()
        if self.current.kind == "IDENT" and self.current.value in _COMPARISONS:
            op_token = self.take()
            right = self.parse_primary()
            return ("cmp", op_token.value, left, right, op_token.pos)
        return left

    def parse_primary(self) -> tuple[Any, ...]:
        token = self.current
        if token.kind == "(":
            self.pos += 1
            node = self.parse_or()
            self.take(")")
            return node
        if token.kind == "IDENT" and token.value.startswith("@"):
            self.pos += 1
            return ("lit", self.alias_literal(token), token.pos)
        if token.kind == "IDENT" and token.value not in {"true", "false", "null"}:
            if self.tokens[self.pos + 1].kind == "(":
                return self.parse_call()
            return ("prop", self.parse_path(), token.pos)
        self.pos += 1
        return ("lit", literal_from_token(token, self.text), token.pos)

    def parse_path(self) -> str:
        parts = [self.take("IDENT").value]
        while self.current.kind == "/":
            self.pos += 1
            parts.append(self.take("IDENT").value)
        return "/".join(parts)

    def parse_call(self) -> tuple[Any, ...]:
        name_token = self.take("IDENT")
        self.take("(")
        if name_token.value.startswith("Microsoft.Dynamics.CRM."):
            named: dict[str, Any] = {}
            while self.current.kind != ")":
                key = self.take("IDENT").value
                self.take("=")
                named[key] = self.parse_value()
                if self.current.kind == ",":
                    self.pos += 1
            self.take(")")
            return ("crm", name_token.value.removeprefix("Microsoft.Dynamics.CRM."), named, name_token.pos)
        args = [self.parse_or()]
        while self.current.kind == ",":
            self.pos += 1
            args.append(self.parse_or())
        self.take(")")
        return ("call", name_token.value, args, name_token.pos)

    def parse_value(self) -> Literal | list[Literal]:
        token = self.current
        if token.kind == "[":
            self.pos += 1
            values: list[Literal] = []
            while self.current.kind != "]":
                values.append(literal_from_token(self.take(), self.text))
                if self.current.kind == ",":
                    self.pos += 1
            self.take("]")
            return values
        if token.kind == "IDENT" and token.value.startswith("@"):
            self.pos += 1
            return self.alias_value(token)
        self.pos += 1
        return literal_from_token(token, self.text)

    def alias_literal(self, token: Token) -> Literal:
        value = self.alias_value(token)
        if isinstance(value, list):
            raise errors.syntax_error(token.pos, self.text)
        return value

    def alias_value(self, token: Token) -> Literal | list[Literal]:
        if token.value not in self.aliases:
            raise errors.bad_request(f"The parameter alias '{token.value}' was not found in the request.")
        sub = _Parser(self.aliases[token.value], {})
        value = sub.parse_value()
        if sub.current.kind != "END":
            raise errors.syntax_error(sub.current.pos, sub.text)
        return value


def parse_filter(text: str, aliases: dict[str, str] | None = None) -> tuple[Any, ...]:
    return _Parser(text, aliases or {}).parse()


# -- compiler -------------------------------------------------------------------------------------------------
class FilterCompiler:
    def __init__(self, schema: Schema, text: str) -> None:
        self.schema = schema
        self.text = text

    def compile(self, node: tuple[Any, ...]) -> Predicate:
        kind = node[0]
        if kind == "and":
            left, right = self.compile(node[1]), self.compile(node[2])
            return lambda row: left(row) and right(row)
        if kind == "or":
            left, right = self.compile(node[1]), self.compile(node[2])
            return lambda row: left(row) or right(row)
        if kind == "not":
            inner = self.compile(node[1])
            return lambda row: not inner(row)
        if kind == "cmp":
            return self.comparison(node)
        if kind == "call":
            return self.string_function(node)
        if kind == "crm":
            return self.crm_function(node)
        if kind == "prop":
            getter, _ = self.schema.resolve(node[1])
            return lambda row: getter(row) is True
        if kind == "lit" and node[1].edm == "Edm.Boolean":
            constant = bool(node[1].value)
            return lambda row: constant
        raise errors.syntax_error(node[-1], self.text)

    def operand(self, node: tuple[Any, ...]) -> tuple[Getter | None, str | None, Literal | None]:
        if node[0] == "prop":
            getter, edm = self.schema.resolve(node[1])
            return getter, edm, None
        if node[0] == "lit":
            return None, None, node[1]
        raise errors.syntax_error(node[-1], self.text)

    def comparison(self, node: tuple[Any, ...]) -> Predicate:
        _, op, left_node, right_node, position = node
        left_get, left_edm, left_lit = self.operand(left_node)
        right_get, right_edm, right_lit = self.operand(right_node)
        if left_get is None and right_get is not None:  # literal on the left: mirror the operator
            op = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}.get(op, op)
            left_get, left_edm, right_get, right_edm = right_get, right_edm, None, None
            left_lit, right_lit = None, left_lit
        if left_get is None:
            raise errors.syntax_error(position, self.text)
        operator = _COMPARISONS[op]
        normalize = _normalizer(left_edm)
        if right_get is None:
            assert right_lit is not None
            expected = coerce(right_lit, left_edm, position, self.text, operator)
            return _compare_constant(op, left_get, normalize, expected)
        if left_edm and right_edm and _family(left_edm) != _family(right_edm):
            raise errors.incompatible_operands(left_edm, right_edm, operator)
        right_normalize = _normalizer(right_edm)
        test = _OPERATORS[op]

        def column_compare(row: Any) -> bool:
            a, b = normalize(left_get(row)), right_normalize(right_get(row))
            if a is None or b is None:
                return op == "eq" and a is None and b is None
            return test(a, b)

        return column_compare

    def string_function(self, node: tuple[Any, ...]) -> Predicate:
        _, name, args, position = node
        if name not in {"contains", "startswith", "endswith"}:
            raise errors.bad_request(
                f"An unknown function with name '{name}' was found. This may also be a function import or a key "
                "lookup on a navigation property, which is not allowed."
            )
        if len(args) != 2 or args[0][0] != "prop" or args[1][0] != "lit":
            raise errors.syntax_error(position, self.text)
        getter, edm = self.schema.resolve(args[0][1])
        literal = args[1][1]
        if edm not in {None, "Edm.String"} or literal.edm != "Edm.String":
            raise errors.bad_request(
                f"No function signature for the function with name '{name}' matches the specified arguments."
            )
        pattern = like_pattern(str(literal.value), prefix=name != "startswith", suffix=name != "endswith")

        def matches(row: Any) -> bool:
            value = getter(row)
            return isinstance(value, str) and pattern.match(value) is not None

        return matches

    def crm_function(self, node: tuple[Any, ...]) -> Predicate:
        _, name, named, position = node
        handler = _CRM_FUNCTIONS.get(name)
        if handler is None:
            raise errors.bad_request(
                f"An unknown function with name 'Microsoft.Dynamics.CRM.{name}' was found. This may also be a "
                "function import or a key lookup on a navigation property, which is not allowed."
            )
        property_literal = named.get("PropertyName")
        if not isinstance(property_literal, Literal) or property_literal.edm != "Edm.String":
            raise errors.bad_request(f"Microsoft.Dynamics.CRM.{name} needs a PropertyName parameter.")
        getter, edm = self.schema.resolve(str(property_literal.value))
        return handler(self, getter, edm, named, position)


def like_pattern(text: str, *, prefix: bool, suffix: bool) -> re.Pattern[str]:
    """SQL LIKE semantics of Dataverse string functions: `%`, `_` and `[...]` are wildcards."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[" and "]" in text[i + 1 :]:
            end = text.index("]", i + 1)
            body = text[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + re.escape(body).replace("\\-", "-") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    core = "".join(out)
    return re.compile(("(?s).*" if prefix else "(?s)") + core + (".*" if suffix else "") + r"\Z", re.IGNORECASE)


def _family(edm: str) -> str:
    if edm in _NUMERIC:
        return "number"
    if edm in {"Edm.DateTimeOffset", "Edm.Date"}:
        return "date"
    return edm


def _normalizer(edm: str | None) -> Callable[[Any], Any]:
    if edm == "Edm.String" or edm is None:
        return lambda v: v.casefold() if isinstance(v, str) else v
    if edm == "Edm.Guid":
        return lambda v: v.lower() if isinstance(v, str) else v
    return lambda v: v


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _compare_constant(op: str, getter: Getter, normalize: Callable[[Any], Any], expected: Any) -> Predicate:
    if expected is None:
        if op == "eq":
            return lambda row: getter(row) is None
        if op == "ne":
            return lambda row: getter(row) is not None
        return lambda row: False
    test = _OPERATORS[op]

    def compare(row: Any) -> bool:
        value = getter(row)
        if value is None:
            return False
        try:
            return test(normalize(value), expected)
        except TypeError:
            return False

    return compare


# -- Microsoft.Dynamics.CRM query functions ---------------------------------------------------------------
def _values(
    compiler: FilterCompiler, named: dict[str, Any], key: str, edm: str | None, position: int
) -> list[Any]:
    raw = named.get(key)
    if raw is None:
        raise errors.bad_request(f"The required parameter '{key}' is missing.")
    literals = raw if isinstance(raw, list) else [raw]
    return [coerce(_as_typed(lit, edm), edm, position, compiler.text) for lit in literals]


def _as_typed(literal: Literal, edm: str | None) -> Literal:
    """PropertyValues are written as strings (`["5","2000"]`); read them as the property's type."""
    if literal.edm != "Edm.String" or edm in {None, "Edm.String"}:
        return literal
    text = str(literal.value)
    if edm == "Edm.Boolean" and text.lower() in {"true", "false"}:
        return Literal("Edm.Boolean", text.lower() == "true")
    return literal


def _in(
    compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
) -> Predicate:
    allowed = set(_values(compiler, named, "PropertyValues", edm, position))
    normalize = _normalizer(edm)
    return lambda row: (v := getter(row)) is not None and normalize(v) in allowed


def _not_in(
    compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
) -> Predicate:
    inside = _in(compiler, getter, edm, named, position)
    return lambda row: getter(row) is not None and not inside(row)


def _between(
    compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
) -> Predicate:
    values = _values(compiler, named, "PropertyValues", edm, position)
    if len(values) != 2:
        raise errors.bad_request("Microsoft.Dynamics.CRM.Between needs exactly two PropertyValues.")
    low, high = values
    normalize = _normalizer(edm)
    return lambda row: (v := getter(row)) is not None and low <= normalize(v) <= high


def _not_between(
    compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
) -> Predicate:
    inside = _between(compiler, getter, edm, named, position)
    return lambda row: getter(row) is not None and not inside(row)


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) else None


def _date_compare(test: Callable[[str, str], bool]) -> Callable[..., Predicate]:
    def build(
        compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
    ) -> Predicate:
        (day,) = [v[:10] for v in _values(compiler, named, "PropertyValue", "Edm.Date", position)]
        return lambda row: (d := _day(getter(row))) is not None and test(d, day)

    return build


def _relative(unit: str, direction: str) -> Callable[..., Predicate]:
    """LastX*/NextX*/OlderThanX* functions, counted from the emulator clock."""

    def build(
        compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
    ) -> Predicate:
        (amount,) = _values(compiler, named, "PropertyValue", "Edm.Int32", position)
        now = compiler.schema.now()
        span = timedelta(hours=int(amount)) if unit == "hours" else timedelta(days=int(amount))
        if unit == "days" and direction != "older":
            start_of_today = now.replace(hour=0, minute=0, second=0, microsecond=0)
            low = utc_iso(start_of_today - span) if direction == "last" else utc_iso(now)
            high = utc_iso(now) if direction == "last" else utc_iso(start_of_today + span + timedelta(days=1))
        elif direction == "last":
            low, high = utc_iso(now - span), utc_iso(now)
        elif direction == "next":
            low, high = utc_iso(now), utc_iso(now + span)
        else:
            cutoff = utc_iso(now - span)
            return lambda row: isinstance(v := getter(row), str) and _as_instant(v) < cutoff
        return lambda row: isinstance(v := getter(row), str) and low <= _as_instant(v) <= high

    return build


def _as_instant(value: str) -> str:
    return value if len(value) > 10 else value + "T00:00:00Z"


def _day_offset(offset: int) -> Callable[..., Predicate]:
    def build(
        compiler: FilterCompiler, getter: Getter, edm: str | None, named: dict[str, Any], position: int
    ) -> Predicate:
        day = (compiler.schema.now() + timedelta(days=offset)).strftime("%Y-%m-%d")
        return lambda row: _day(getter(row)) == day

    return build


_CRM_FUNCTIONS: dict[str, Callable[..., Predicate]] = {
    "In": _in,
    "NotIn": _not_in,
    "Between": _between,
    "NotBetween": _not_between,
    "On": _date_compare(lambda d, day: d == day),
    "NotOn": _date_compare(lambda d, day: d != day),
    "OnOrAfter": _date_compare(lambda d, day: d >= day),
    "OnOrBefore": _date_compare(lambda d, day: d <= day),
    "LastXHours": _relative("hours", "last"),
    "NextXHours": _relative("hours", "next"),
    "OlderThanXHours": _relative("hours", "older"),
    "LastXDays": _relative("days", "last"),
    "NextXDays": _relative("days", "next"),
    "OlderThanXDays": _relative("days", "older"),
    "Today": _day_offset(0),
    "Yesterday": _day_offset(-1),
    "Tomorrow": _day_offset(1),
}


def compile_filter(text: str, schema: Schema, aliases: dict[str, str] | None = None) -> Predicate:
    return FilterCompiler(schema, text).compile(parse_filter(text, aliases))


# -- $orderby, $select, $expand ---------------------------------------------------------------------------
@dataclass
class OrderItem:
    path: str
    descending: bool


def parse_orderby(text: str) -> list[OrderItem]:
    items: list[OrderItem] = []
    for part in split_top_level(text):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in {"asc", "desc"}):
            raise errors.syntax_error(text.find(part), text)
        items.append(OrderItem(words[0], len(words) == 2 and words[1].lower() == "desc"))
    return items


def parse_select(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_expand(text: str) -> list[tuple[str, dict[str, str]]]:
    """`Attributes($select=a,b;$filter=x eq 1),Keys` -> [("Attributes", {"$select": "a,b", …}), ("Keys", {})]."""
    result: list[tuple[str, dict[str, str]]] = []
    for part in split_top_level(text):
        name, _, rest = part.partition("(")
        options: dict[str, str] = {}
        if rest:
            if not rest.endswith(")"):
                raise errors.syntax_error(text.find(part), text)
            for option in split_top_level(rest[:-1], ";"):
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
        result.append((name.strip(), options))
    return result


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on `separator` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return [part for part in parts if part]


# -- sort keys ----------------------------------------------------------------------------------------------
class Descending:
    """Inverts the order of a sort key component, so one key function serves asc and desc together."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: Descending) -> bool:
        return bool(other.key < self.key)

    def __gt__(self, other: Descending) -> bool:
        return bool(other.key > self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def sort_key_function(columns: list[tuple[Getter, bool, bool]]) -> Callable[[Any], tuple[Any, ...]]:
    """Key for (getter, descending, case_insensitive) columns; NULL sorts first ascending, as in SQL."""

    def component(value: Any, insensitive: bool) -> tuple[Any, ...]:
        if value is None:
            return (False,)
        return (True, value.casefold() if insensitive and isinstance(value, str) else value)

    if not any(descending for _, descending, _ in columns):
        return lambda row: tuple(component(get(row), ci) for get, _, ci in columns)
    return lambda row: tuple(
        Descending(component(get(row), ci)) if desc else component(get(row), ci) for get, desc, ci in columns
    )


# -- key segments and Prefer ----------------------------------------------------------------------------------
def parse_key_segment(text: str) -> str | dict[str, Literal]:
    """`<guid>` -> the id; `emailaddress1='a@b.c'` or `a='x',b=1` -> alternate key values."""
    stripped = text.strip()
    if GUID_RE.match(stripped):
        return stripped.lower()
    tokens = tokenize(stripped)
    values: dict[str, Literal] = {}
    i = 0
    while tokens[i].kind != "END":
        if tokens[i].kind != "IDENT" or tokens[i + 1].kind != "=":
            raise errors.bad_request(f"Bad Request - Error in query syntax: the key '{text}' is not valid.")
        values[tokens[i].value] = literal_from_token(tokens[i + 2], stripped)
        i += 3
        if tokens[i].kind == ",":
            i += 1
    if not values:
        raise errors.bad_request(f"Bad Request - Error in query syntax: the key '{text}' is not valid.")
    return values


def parse_prefer(values: Iterable[str]) -> dict[str, str]:
    """`Prefer` header values (possibly several headers) -> {preference: value or ""}."""
    prefs: dict[str, str] = {}
    for header in values:
        for part in split_top_level(header.replace('"', "'"), ","):
            name, _, value = part.partition("=")
            prefs[name.strip().lower()] = value.strip().strip("'")
    return prefs


def annotation_matcher(spec: str) -> Callable[[str], bool]:
    """`odata.include-annotations` patterns: `*`, `Namespace.*`, exact names, `-excluded`."""
    include: list[str] = []
    exclude: list[str] = []
    for pattern in (p.strip() for p in spec.split(",")):
        if pattern:
            (exclude if pattern.startswith("-") else include).append(pattern.lstrip("-"))

    def matches(pattern: str, name: str) -> bool:
        if pattern == "*":
            return True
        if pattern.endswith(".*"):
            return name.startswith(pattern[:-1])
        return pattern == name

    return lambda name: any(matches(p, name) for p in include) and not any(matches(p, name) for p in exclude)
