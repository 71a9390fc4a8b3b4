"""Structured import filters and the CRM connector rules they must follow (SPEC I5).

A filter is a tree: a *level* is `all` (AND), `any` (OR) or `not`; a leaf is a condition on one field.
The rules come from the CRM connector the product was specified from:

- one operator type per level (no AND mixed with OR on a level);
- no AND NOT, at any depth: a `not` wrapped in one-item levels under an `all` is still AND NOT;
- comparisons only against null (is empty / is not empty) or numbers;
- the value side is an evaluated expression that must give a number;
- no joins;
- the left side is a single field.

Each rule is enforced here, at validation, with a message naming it. Values are numbers by
construction, and field names are plain identifiers, so a filter cannot carry query text; the
connectors still render through their escaping functions.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

RULE_ONE_OPERATOR = "rule I5: one operator type per level"
RULE_NO_AND_NOT = "rule I5: no AND NOT"
RULE_NULL_OR_NUMBER = "rule I5: comparisons only against null or numbers"
RULE_NUMERIC_EXPRESSION = "rule I5: the value side must evaluate to a number"
RULE_NO_JOINS = "rule I5: no joins"
RULE_SINGLE_FIELD = "rule I5: the left side must be a single field"

ComparisonOp = Literal["eq", "ne", "lt", "le", "gt", "ge"]
NullOp = Literal["is_empty", "is_not_empty"]

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate_numeric_expression(expression: str) -> int | float:
    """Evaluate an arithmetic expression (numbers, + - * / // %, parentheses) to a number.

    Anything else - names, strings, calls, attribute access - is refused: the value side of a
    filter must give a number, and nothing a user types is ever executed.
    """
    if len(expression) > 200:
        raise ValueError(f"the value expression is longer than 200 characters ({RULE_NUMERIC_EXPRESSION})")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(
            f"the value {expression!r} is not a number or an arithmetic expression; text comparisons are "
            f"not supported ({RULE_NUMERIC_EXPRESSION})"
        ) from None

    def walk(node: ast.AST) -> int | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
                raise ValueError(f"the value {expression!r} divides by zero ({RULE_NUMERIC_EXPRESSION})")
            return _BINARY[type(node.op)](left, right)  # type: ignore[no-any-return]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))  # type: ignore[no-any-return]
        raise ValueError(
            f"the value {expression!r} must give a number: text comparisons are not supported and only "
            f"numbers, + - * / // % and parentheses are allowed ({RULE_NUMERIC_EXPRESSION})"
        )

    result = walk(tree)
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueError(f"the value {expression!r} does not give a finite number ({RULE_NUMERIC_EXPRESSION})")
    if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
        return int(result)
    return result


def check_field_name(name: str) -> str:
    if "." in name:
        raise ValueError(f"{name!r} reaches another object; joins are not supported ({RULE_NO_JOINS})")
    if not FIELD_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a field name; the left side must be one field, not an expression, a number "
            f"or several fields ({RULE_SINGLE_FIELD})"
        )
    return name


class Condition(BaseModel):
    """`field op value`: a comparison with a number, or an emptiness test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    op: ComparisonOp | NullOp
    value: int | float | str | None = None

    _check_field = field_validator("field")(check_field_name)

    @field_validator("value", mode="before")
    @classmethod
    def _value_gives_a_number(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError(f"the value {value!r} is a boolean; compare with 1 or 0 ({RULE_NULL_OR_NUMBER})")
        if isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"the value must be a finite number ({RULE_NULL_OR_NUMBER})")
            return value
        if isinstance(value, str):
            return evaluate_numeric_expression(value)
        raise ValueError(f"the value must be a number or null ({RULE_NULL_OR_NUMBER})")

    @model_validator(mode="after")
    def _operator_matches_value(self) -> Condition:
        if self.op in ("is_empty", "is_not_empty"):
            if self.value is not None:
                raise ValueError(f"'{self.op}' takes no value")
        elif self.value is None:
            hint = "is_empty" if self.op == "eq" else "is_not_empty" if self.op == "ne" else None
            raise ValueError(
                f"'{self.op}' needs a numeric value"
                + (f"; to compare with null use op '{hint}'" if hint else "")
                + f" ({RULE_NULL_OR_NUMBER})"
            )
        return self


def _node_tag(raw: Any) -> str | None:
    """Which kind of node a raw filter level is; None when it mixes kinds (pydantic reports it)."""
    if isinstance(raw, BaseModel):
        return {AllOf: "all", AnyOf: "any", NotOf: "not", Condition: "condition"}.get(type(raw))
    if not isinstance(raw, dict):
        return None
    kinds = [k for k in ("all", "any", "not") if k in raw] + (["condition"] if "field" in raw else [])
    return kinds[0] if len(kinds) == 1 else None


FilterNode = Annotated[
    Annotated["AllOf", Tag("all")]
    | Annotated["AnyOf", Tag("any")]
    | Annotated["NotOf", Tag("not")]
    | Annotated[Condition, Tag("condition")],
    Discriminator(
        _node_tag,
        custom_error_type="filter_level",
        custom_error_message=(
            "a filter level is exactly one of 'all' (AND), 'any' (OR), 'not', or a condition with 'field'; "
            f"AND and OR cannot be mixed on one level ({RULE_ONE_OPERATOR})"
        ),
    ),
]


class AllOf(BaseModel):
    """AND of its children."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    all: list[FilterNode] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_and_not(cls, raw: Any) -> Any:
        children = raw.get("all") if isinstance(raw, dict) else None
        for index, child in enumerate(children if isinstance(children, list) else []):
            where = _and_not_path(child, f"all[{index}]")
            if where is not None:
                raise ValueError(
                    f"{where}: a 'not' ANDed with the other items of an 'all' level is AND NOT, which is not "
                    f"supported ({RULE_NO_AND_NOT}); negate the conditions themselves (eq -> ne, lt -> ge …)"
                )
        return raw


def _and_not_path(child: Any, where: str) -> str | None:
    """Where a child of an `all` level is, in effect, a `not`; None when it is not one.

    A one-item `all` or `any` level is no level at all (`A AND (NOT B)` is `A AND NOT B`), so it is
    looked through, however deep the wrapping goes; a level of several items is a real OR or AND.
    """
    while True:
        if isinstance(child, NotOf) or (isinstance(child, dict) and "not" in child and "field" not in child):
            return where
        items: Any = None
        key = ""
        if isinstance(child, AllOf | AnyOf):
            key = "all" if isinstance(child, AllOf) else "any"
            items = getattr(child, key)
        elif isinstance(child, dict) and "field" not in child and len(child) == 1:
            key = next(iter(child))
            items = child[key] if key in ("all", "any") else None
        if not isinstance(items, list) or len(items) != 1:
            return None
        child, where = items[0], f"{where}.{key}[0]"


class AnyOf(BaseModel):
    """OR of its children."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    any: list[FilterNode] = Field(min_length=1)


class NotOf(BaseModel):
    """Negation of one child (never directly under an AND level)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    not_: FilterNode = Field(alias="not")


AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()

Filter = AllOf | AnyOf | NotOf | Condition


def filter_fields(node: Filter) -> Iterator[str]:
    """Every field a filter reads, for checking them against the CRM's schema."""
    if isinstance(node, Condition):
        yield node.field
    elif isinstance(node, AllOf):
        for child in node.all:
            yield from filter_fields(child)
    elif isinstance(node, AnyOf):
        for child in node.any:
            yield from filter_fields(child)
    else:
        yield from filter_fields(node.not_)


def filter_conditions(node: Filter) -> Iterator[Condition]:
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, AllOf):
        for child in node.all:
            yield from filter_conditions(child)
    elif isinstance(node, AnyOf):
        for child in node.any:
            yield from filter_conditions(child)
    else:
        yield from filter_conditions(node.not_)


class OrderBy(BaseModel):
    """One sort column on a remote field (SPEC I6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str
    direction: Literal["asc", "desc"] = "asc"

    _check_field = field_validator("field")(check_field_name)
