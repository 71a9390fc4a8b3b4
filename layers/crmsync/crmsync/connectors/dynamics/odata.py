"""OData query text for the Dataverse Web API. Every literal goes through an escaping function; every
name is a checked identifier; the query string is percent-encoded by us, never by string pasting.

Lookups are named by their logical name in configuration (`parentcustomerid`) and read through their
Web API property (`_parentcustomerid_value`), which is what Dataverse accepts in `$select`, `$filter`
and `$orderby`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import quote

from ...domain.filters import Condition, Filter, OrderBy
from ...domain.types import CrmFieldType
from ...errors import ConfigurationError
from ..port import RecordQuery
from ..query_text import comparison_value, datetime_literal, render_filter_tree

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LOOKUP_PROPERTY = re.compile(r"^_([a-z0-9_]+)_value$")
_OPERATORS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
_SAFE = "$(),'=:@/*"  # OData punctuation stays readable; spaces, quotes' neighbours, & and # are encoded
MAX_URL_LENGTH = 32_768
VALUES_BUDGET = 24_000
"""Characters of an `In` value list; the rest of a 32,768-character URL is left to the path and $select."""
MAX_VALUES_PER_QUERY = 1000


def identifier(name: str) -> str:
    """A table or column logical name; anything else could carry query text and is refused."""
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(f"{name!r} is not a Dataverse table or column name")
    return name


def string_literal(value: str) -> str:
    """An OData string literal: single quotes, a quote inside doubled ("Filter rows using OData")."""
    return "'" + value.replace("'", "''") + "'"


def is_guid(value: str) -> bool:
    return bool(_GUID.match(value))


def guid(value: str) -> str:
    if not is_guid(value):
        raise ConfigurationError(f"{value!r} is not a Dataverse record id (a GUID)")
    return value.lower()


def property_name(field: str, field_types: Mapping[str, CrmFieldType]) -> str:
    """The Web API property of a column: `_x_value` for a lookup, the logical name otherwise."""
    name = identifier(field)
    return f"_{name}_value" if field_types.get(field) is CrmFieldType.REFERENCE else name


def column_of(property_: str) -> str:
    """The logical name behind a Web API property (`_x_value` -> `x`)."""
    match = _LOOKUP_PROPERTY.match(property_)
    return match.group(1) if match else property_


def _condition(node: Condition, field_types: Mapping[str, CrmFieldType]) -> str:
    prop = property_name(node.field, field_types)
    if node.op == "is_empty":
        return f"{prop} eq null"
    if node.op == "is_not_empty":
        return f"{prop} ne null"
    if node.op not in _OPERATORS:
        raise ConfigurationError(f"filter on {node.field}: {node.op!r} is not a comparison (rule I5)")
    return f"{prop} {node.op} {comparison_value(node, field_types.get(node.field))}"


def render_filter(node: Filter, field_types: Mapping[str, CrmFieldType] | None = None) -> str:
    types = field_types or {}
    return render_filter_tree(node, lambda c: _condition(c, types), and_="and", or_="or", not_="not")


def render_order_by(order_by: Iterable[OrderBy], field_types: Mapping[str, CrmFieldType]) -> str:
    return ",".join(f"{property_name(o.field, field_types)} {o.direction}" for o in order_by)


def values_in(field: str, values: Iterable[str]) -> str:
    """`Microsoft.Dynamics.CRM.In` over text values, each written as an escaped string literal."""
    listed = ",".join(string_literal(v) for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName={string_literal(identifier(field))},PropertyValues=[{listed}])"


def ids_in(id_field: str, ids: Iterable[str]) -> str:
    """`Microsoft.Dynamics.CRM.In` over record ids, each one checked and written as a string literal."""
    return values_in(id_field, (guid(i) for i in ids))


def value_chunks(values: Iterable[str]) -> Iterator[list[str]]:
    """Values in chunks whose `In` list stays well inside the URL length limit, at most
    `MAX_VALUES_PER_QUERY` each: a lookup of many values costs a few calls, never one per value."""
    chunk: list[str] = []
    length = 0
    for value in values:
        size = len(quote(string_literal(value), safe=_SAFE)) + 1
        if chunk and (length + size > VALUES_BUDGET or len(chunk) == MAX_VALUES_PER_QUERY):
            yield chunk
            chunk, length = [], 0
        chunk.append(value)
        length += size
    if chunk:
        yield chunk


def select(query: RecordQuery) -> str:
    return ",".join(dict.fromkeys(property_name(f, query.field_types) for f in query.fields))


def query_options(query: RecordQuery, id_field: str) -> dict[str, str]:
    """`$select`, `$filter` (window or ids, and the sync's filter) and `$orderby` of a record query."""
    options = {"$select": select(query)}
    clauses: list[str] = []
    if query.window_field:
        window = property_name(query.window_field, query.field_types)
        if query.window_start is not None:
            clauses.append(f"{window} ge {datetime_literal(query.window_start)}")
        if query.window_end is not None:
            clauses.append(f"{window} lt {datetime_literal(query.window_end)}")
    if query.ids:
        clauses.append(ids_in(id_field, query.ids))
    if query.filter is not None:
        clauses.append(render_filter(query.filter, query.field_types))
    if clauses:
        options["$filter"] = " and ".join(clauses)
    order = list(query.order_by)
    if not order and query.window_field:
        order = [OrderBy(field=query.window_field), OrderBy(field=id_field)]
    if order:
        options["$orderby"] = render_order_by(order, query.field_types)
    return options


def encode(options: Mapping[str, str]) -> str:
    """The query string, percent-encoded (spaces as %20: OData does not read `+` as a space everywhere)."""
    text = "&".join(f"{name}={quote(value, safe=_SAFE)}" for name, value in options.items())
    if len(text) > MAX_URL_LENGTH:
        raise ConfigurationError(f"the OData query is {len(text)} characters, over Dataverse's {MAX_URL_LENGTH}")
    return text
