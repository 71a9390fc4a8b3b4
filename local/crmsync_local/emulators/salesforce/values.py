"""Field values in and out: JSON bodies and Bulk API CSV cells to typed Python values, and back.

Stored values are typed (str, bool, int, float, date, datetime in UTC) so SOQL compares dates as dates
and datetimes as instants; they are rendered the way Salesforce renders them only on the way out.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

from .clock import format_date, format_datetime, format_datetime_csv, parse_date, parse_datetime, truncate_ms
from .schema import COMPOUND_TYPES, NUMBER_TYPES, STRING_TYPES, FieldDef

# Bulk API: a cell with this value sets the field to null (an empty cell leaves it unchanged).
CSV_NULL = "#N/A"


class JsonTypeError(ValueError):
    """The JSON value cannot become the field's type: Salesforce answers JSON_PARSER_ERROR for the request."""


class CellTypeError(ValueError):
    """A CSV cell cannot become the field's type: that row fails with INVALID_TYPE_ON_FIELD_IN_RECORD."""


def _json_token(value: Any) -> str:
    if isinstance(value, bool):
        return "VALUE_TRUE" if value else "VALUE_FALSE"
    if isinstance(value, int):
        return "VALUE_NUMBER_INT"
    if isinstance(value, float):
        return "VALUE_NUMBER_FLOAT"
    if isinstance(value, dict):
        return "START_OBJECT"
    if isinstance(value, list):
        return "START_ARRAY"
    return "VALUE_STRING"


def _jackson_error(type_name: str, value: Any) -> JsonTypeError:
    if isinstance(value, (dict, list)):
        shown = ""
    elif isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = str(value)
    return JsonTypeError(
        f"Cannot deserialize instance of {type_name} from {_json_token(value)} value {shown} "
        "or request may be missing a required field"
    )


def from_json(definition: FieldDef, value: Any) -> Any:
    """A JSON value for `definition`, typed; None stays None (the caller decides whether null is allowed)."""
    if value is None:
        return None
    kind = definition.type
    if kind in STRING_TYPES:
        if isinstance(value, (dict, list)):
            raise _jackson_error("string", value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _jackson_error("boolean", value)
    if kind in NUMBER_TYPES:
        number = _number(value)
        if number is None:
            raise _jackson_error("int" if kind == "int" else "double", value)
        if kind == "int":
            if not float(number).is_integer():
                raise _jackson_error("int", value)
            return int(number)
        return float(number)
    if kind == "date":
        if isinstance(value, str):
            parsed = parse_date(value) or _date_of(parse_datetime(value))
            if parsed is not None:
                return parsed
        raise _jackson_error("date", value)
    if kind == "datetime":
        if isinstance(value, str):
            parsed_moment = parse_datetime(value)
            if parsed_moment is not None:
                return parsed_moment
        elif isinstance(value, int) and not isinstance(value, bool):
            return truncate_ms(datetime.fromtimestamp(value / 1000, UTC))
        raise _jackson_error("datetime", value)
    if kind in COMPOUND_TYPES:
        return value  # read-only: the write is refused as INVALID_FIELD_FOR_INSERT_UPDATE further on
    raise _jackson_error(kind, value)


def from_csv(definition: FieldDef, cell: str) -> Any:
    """A Bulk API CSV cell, typed. `#N/A` means null; empty cells are filtered out before this."""
    if cell == CSV_NULL:
        return None
    kind = definition.type
    if kind in STRING_TYPES:
        return cell
    error = CellTypeError(f"{definition.label}: value not of required type: {cell}")
    if kind == "boolean":
        lowered = cell.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise error
    if kind in NUMBER_TYPES:
        number = _number(cell)
        if number is None or (kind == "int" and not float(number).is_integer()):
            raise error
        return int(number) if kind == "int" else float(number)
    if kind == "date":
        parsed = parse_date(cell) or _date_of(parse_datetime(cell))
        if parsed is None:
            raise error
        return parsed
    if kind == "datetime":
        moment = parse_datetime(cell)
        if moment is None:
            raise error
        return moment
    raise error


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if not (isinstance(value, float) and not math.isfinite(value)) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _date_of(moment: datetime | None) -> date | None:
    return moment.date() if moment is not None else None


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_date(value)
    return value


def to_csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_datetime_csv(value)
    if isinstance(value, date):
        return format_date(value)
    return str(value)


def typed_for_control(definition: FieldDef, value: Any) -> Any:
    """The control API's back door accepts JSON values of the right shape, rendered strings included."""
    if value is None:
        return None
    if isinstance(value, str) and definition.type not in STRING_TYPES:
        return from_csv(definition, value) if value != "" else None
    return from_json(definition, value)
