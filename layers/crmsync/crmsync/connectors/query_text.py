"""What SOQL and OData write the same way: numbers, UTC date-times, and the levels of a filter tree.

Each connector renders a condition's field and operator in its own language; the value side always goes
through `comparison_value`, so a filter can only ever compare with a number or a boolean literal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from ..domain.filters import AllOf, AnyOf, Condition, Filter, NotOf
from ..domain.types import CrmFieldType
from ..errors import ConfigurationError


def datetime_literal(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("query date-times must be time-zone aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def number_literal(value: int | float) -> str:
    if isinstance(value, bool):
        raise ValueError("booleans are rendered by the field's type")
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(value)).normalize(), "f")


def comparison_value(node: Condition, crm_type: CrmFieldType | None) -> str:
    """The literal a condition compares with: a number, or `true`/`false` for a boolean field (rule I5)."""
    value = node.value
    if value is None or isinstance(value, str | bool):
        raise ConfigurationError(f"filter on {node.field}: the value must be a number (rule I5)")
    if crm_type is CrmFieldType.BOOLEAN:
        if value not in (0, 1) or node.op not in ("eq", "ne"):
            raise ConfigurationError(
                f"filter on {node.field}: a boolean field is compared with eq/ne and 1 or 0 (rule I5)"
            )
        return "true" if value == 1 else "false"
    return number_literal(value)


def render_filter_tree(
    node: Filter, condition: Callable[[Condition], str], *, and_: str, or_: str, not_: str
) -> str:
    """A filter's levels, parenthesised, in the words of a query language; leaves rendered by `condition`."""

    def render(level: Filter) -> str:
        if isinstance(level, Condition):
            return condition(level)
        if isinstance(level, AllOf):
            return "(" + f" {and_} ".join(render(child) for child in level.all) + ")"
        if isinstance(level, AnyOf):
            return "(" + f" {or_} ".join(render(child) for child in level.any) + ")"
        if isinstance(level, NotOf):
            return f"({not_} {render(level.not_)})"
        raise TypeError(f"not a filter node: {level!r}")

    return render(node)
