"""Literals both query languages write the same way: SOQL and OData numbers and UTC date-times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal


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
