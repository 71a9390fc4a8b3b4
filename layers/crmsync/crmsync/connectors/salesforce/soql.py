"""SOQL rendering. Every literal goes through an escaping function; field names are checked identifiers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime

from ...domain.filters import Condition, Filter, OrderBy
from ...domain.types import CrmFieldType
from ...errors import ConfigurationError
from ..port import RecordQuery
from ..query_text import comparison_value, datetime_literal, render_filter_tree

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_OPERATORS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
MAX_SOQL_LENGTH = 100_000
# A query travels in the URL of a GET; Salesforce refuses URIs over 16,384 bytes, escapes included.
LOOKUP_QUERY_CHARS = 8_000


def identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(f"{name!r} is not a Salesforce field or object name")
    return name


def string_literal(value: str) -> str:
    """A SOQL string literal; quotes, backslashes and control characters are escaped as Salesforce documents."""
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def is_salesforce_id(value: str) -> bool:
    return bool(_SALESFORCE_ID.match(value))


def _condition(node: Condition, field_types: dict[str, CrmFieldType]) -> str:
    name = identifier(node.field)
    if node.op == "is_empty":
        return f"{name} = null"
    if node.op == "is_not_empty":
        return f"{name} != null"
    return f"{name} {_OPERATORS[node.op]} {comparison_value(node, field_types.get(name))}"


def render_filter(node: Filter, field_types: dict[str, CrmFieldType] | None = None) -> str:
    types = field_types or {}
    return render_filter_tree(node, lambda c: _condition(c, types), and_="AND", or_="OR", not_="NOT")


def render_order_by(order_by: Iterable[OrderBy]) -> str:
    return ", ".join(f"{identifier(o.field)} {o.direction.upper()}" for o in order_by)


def _where(query: RecordQuery) -> str:
    """` WHERE <window or ids> AND (<filter>)`, or nothing."""
    clauses: list[str] = []
    if query.window_field:
        field = identifier(query.window_field)
        if query.window_start is not None:
            clauses.append(f"{field} >= {datetime_literal(query.window_start)}")
        if query.window_end is not None:
            clauses.append(f"{field} < {datetime_literal(query.window_end)}")
    if query.ids:
        clauses.append("Id IN (" + ", ".join(string_literal(i) for i in query.ids) + ")")
    if query.filter is not None:
        clauses.append(render_filter(query.filter, query.field_types))
    return " WHERE " + " AND ".join(clauses) if clauses else ""


def _checked_length(soql: str) -> str:
    if len(soql) > MAX_SOQL_LENGTH:
        raise ConfigurationError(f"the SOQL query is {len(soql)} characters, over Salesforce's {MAX_SOQL_LENGTH}")
    return soql


def render_query(query: RecordQuery) -> str:
    """SELECT … FROM … WHERE <window or ids> AND (<filter>) ORDER BY …"""
    fields = ", ".join(identifier(f) for f in query.fields)
    soql = f"SELECT {fields} FROM {identifier(query.object)}{_where(query)}"  # noqa: S608 - identifiers checked, literals escaped
    order = list(query.order_by)
    if not order and query.window_field:
        order = [OrderBy(field=query.window_field), OrderBy(field="Id")]
    if order:
        soql += " ORDER BY " + render_order_by(order)
    return _checked_length(soql)


def render_count(query: RecordQuery) -> str:
    """`SELECT COUNT() FROM … WHERE …`: how many records `query` selects (its fields and order left out)."""
    return _checked_length(f"SELECT COUNT() FROM {identifier(query.object)}{_where(query)}")  # noqa: S608 - identifiers checked, literals escaped


def render_value_lookups(
    object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
) -> Iterator[str]:
    """`SELECT … FROM … WHERE field IN (…)` queries covering `values`, each short enough for a URL."""
    columns = ", ".join(identifier(f) for f in dict.fromkeys([*fields, field]))
    head = f"SELECT {columns} FROM {identifier(object_name)} WHERE {identifier(field)} IN ("  # noqa: S608 - identifiers checked, literals escaped
    literals: list[str] = []
    size = len(head) + 1
    for value in dict.fromkeys(values):
        literal = string_literal(value)
        if literals and size + len(literal) + 2 > LOOKUP_QUERY_CHARS:
            yield head + ", ".join(literals) + ")"
            literals, size = [], len(head) + 1
        literals.append(literal)
        size += len(literal) + 2
    if literals:
        yield head + ", ".join(literals) + ")"


def history_object(object_name: str) -> tuple[str, str]:
    """The field-history object of an object and its parent-id field: ContactHistory / ContactId,
    LeadHistory / LeadId, Thing__History / ParentId for a custom object."""
    name = identifier(object_name)
    if name.endswith("__c"):
        return name[: -len("__c")] + "__History", "ParentId"
    return f"{name}History", f"{name}Id"


def render_history_query(object_name: str, fields: Iterable[str], start: datetime | None, end: datetime) -> str:
    """The history rows of `fields` created in [start, end). OldValue/NewValue cannot be filtered:
    the window and the field names select the rows."""
    history, parent = history_object(object_name)
    names = ", ".join(string_literal(identifier(f)) for f in fields)
    clauses = [f"Field IN ({names})", f"CreatedDate < {datetime_literal(end)}"]
    if start is not None:
        clauses.append(f"CreatedDate >= {datetime_literal(start)}")
    return (
        f"SELECT {parent}, Field, NewValue, CreatedDate, CreatedById FROM {history} "  # noqa: S608 - identifiers checked, literals escaped
        f"WHERE {' AND '.join(clauses)} ORDER BY CreatedDate, Id"
    )


def render_field_definitions(object_name: str, fields: Iterable[str]) -> str:
    """Whether field history tracks each of `fields` (FieldDefinition.IsFieldHistoryTracked)."""
    names = ", ".join(string_literal(identifier(f)) for f in fields)
    return (
        "SELECT QualifiedApiName, IsFieldHistoryTracked FROM FieldDefinition "  # noqa: S608 - literals escaped
        f"WHERE EntityDefinitionId = {string_literal(identifier(object_name))} AND QualifiedApiName IN ({names})"
    )


def render_all_ids(object_name: str) -> str:
    """`SELECT Id FROM <Type>`: every live id of an object, for the id-set comparison (SPEC D1)."""
    return f"SELECT Id FROM {identifier(object_name)}"  # noqa: S608 - the identifier is checked
