"""Request bodies: JSON parsing with Salesforce's JSON_PARSER_ERROR, record bodies to typed field values,
and records back to JSON.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request

from .errors import ApiError
from .schema import ObjectDef
from .values import JsonTypeError, from_json, to_json


def json_body(request: Request) -> Any:
    """The decoded JSON body, or the 400 JSON_PARSER_ERROR Salesforce answers for malformed JSON."""
    raw = request.get_data(as_text=True)
    if not raw.strip():
        raise ApiError(400, "JSON_PARSER_ERROR", "No content to map due to end-of-input at [line:1, column:0]")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        char = raw[exc.pos] if exc.pos < len(raw) else ""
        reason = f"Unexpected character ('{char}' (code {ord(char)}))" if char else "Unexpected end-of-input"
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"{reason}: expected a valid value (JSON String, Number, Array, Object or token 'null', 'true' or "
            f"'false') at [line:{exc.lineno}, column:{exc.colno}]",
        ) from exc


def record_values(definition: ObjectDef, body: Any) -> dict[str, Any]:
    """A JSON record as typed values keyed by canonical field names.

    Unknown fields answer 400 INVALID_FIELD and values of the wrong JSON type 400 JSON_PARSER_ERROR: both
    fail the whole request, because Salesforce rejects the body before looking at any record.
    """
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {definition.name} from {_token(body)} value or request may be "
            "missing a required field",
        )
    values: dict[str, Any] = {}
    for name, raw in body.items():
        if name == "attributes":
            continue
        field_def = definition.field(name)
        if field_def is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {definition.name}")
        try:
            values[field_def.name] = from_json(field_def, raw)
        except JsonTypeError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", str(exc)) from exc
    return values


def _token(value: Any) -> str:
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, str):
        return "VALUE_STRING"
    return "VALUE_NUMBER_INT" if isinstance(value, (int, float)) else "VALUE_NULL"


def render_record(
    definition: ObjectDef, row: dict[str, Any], version: str, fields: list[str] | None = None
) -> dict[str, Any]:
    """A record as GET /sobjects/{T}/{id} returns it: attributes, then every (or every requested) field."""
    record: dict[str, Any] = {
        "attributes": {
            "type": definition.name,
            "url": f"/services/data/v{version}/sobjects/{definition.name}/{row['Id']}",
        }
    }
    names = fields if fields is not None else list(definition.fields)
    for name in names:
        field_def = definition.fields[name]
        record[name] = field_def.compound_value(row) if field_def.components else to_json(row.get(name))
    return record


def field_list(definition: ObjectDef, spec: str | None) -> list[str] | None:
    """The `fields=` parameter, resolved to canonical names (400 INVALID_FIELD for unknown ones)."""
    if spec is None or not spec.strip():
        return None
    names = []
    for raw in spec.split(","):
        raw = raw.strip()
        if not raw:
            continue
        field_def = definition.field(raw)
        if field_def is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{raw}' on sobject of type {definition.name}")
        names.append(field_def.name)
    return names
