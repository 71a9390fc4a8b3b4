"""Reading create/update bodies into row values, and writing rows back as Web API JSON.

Reading enforces what Dataverse enforces on a write: unknown properties, `_x_value` lookups written
directly, JSON values of the wrong type, strings over MaxLength, option values outside the option set,
lookups bound (`nav@odata.bind`) to missing records. Writing applies `$select` and the annotations asked
for with `Prefer: odata.include-annotations` (formatted values of option sets, booleans, lookups, dates
and numbers; the lookup's logical name and navigation property).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import errors
from .clock import parse_instant, utc_iso
from .metadata import MULTI_SELECT, OPTION_TYPES, AttributeDef, EntityDef, MetadataRegistry
from .odata import GUID_RE, Literal, coerce, parse_key_segment
from .store import LOOKUP_TYPE, RecordStore, Row

FORMATTED = "OData.Community.Display.V1.FormattedValue"
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
ASSOCIATED_NAVIGATION = "Microsoft.Dynamics.CRM.associatednavigationproperty"
_REFERENCE_RE = re.compile(r"^(?P<set>[A-Za-z_]\w*)\((?P<key>.+)\)$")
_IGNORED_ANNOTATIONS = ("@odata.type", "@odata.context", "@odata.etag", "@odata.id")


class PayloadReader:
    def __init__(self, registry: MetadataRegistry, store: RecordStore) -> None:
        self.registry = registry
        self.store = store

    def read(self, entity: EntityDef, body: Any, *, creating: bool, trusted: bool = False) -> Row:
        """Row values from a JSON body. `trusted` (control API seeding) also accepts read-only columns and
        `_x_value` lookups, which the Web API refuses or ignores."""
        if not isinstance(body, dict):
            raise errors.payload_error(entity.entity_set_name, "The request body must be a JSON object.")
        values: Row = {}
        for name, value in body.items():
            if name in _IGNORED_ANNOTATIONS or (name.startswith("@") and "." in name):
                continue
            if name.endswith("@odata.bind"):
                self._bind(entity, name.removesuffix("@odata.bind"), value, values)
                continue
            if name.endswith(LOOKUP_TYPE) and trusted:
                values[name] = value
                continue
            attribute = entity.properties.get(name)
            if attribute is None:
                raise errors.payload_property_unknown(name, entity.entity_set_name, entity.logical_name)
            if attribute.is_lookup:
                if not trusted:
                    raise errors.lookup_value_not_writable()
                self._trusted_lookup(attribute, value, body, values)
                continue
            writable = attribute.valid_for_create if creating else attribute.valid_for_update
            if not writable and not attribute.is_primary_id and not trusted:
                continue  # Dataverse ignores read-only columns (createdon, fullname, versionnumber…)
            values[name] = self.coerce(entity, attribute, value)
        return values

    def coerce(self, entity: EntityDef, attribute: AttributeDef, value: Any) -> Any:
        """A JSON value as stored for this attribute, or the error Dataverse gives for it."""
        if value is None:
            return None
        kind = attribute.attribute_type
        entity_set = entity.entity_set_name
        if kind in {"String", "Memo"}:
            if not isinstance(value, str):
                raise errors.payload_type_mismatch(entity_set, value, "Edm.String")
            if attribute.max_length is not None and len(value) > attribute.max_length:
                raise errors.max_length(attribute.logical_name, entity.logical_name, attribute.max_length)
            return value
        if kind in {"Integer", "BigInt"} or kind in OPTION_TYPES:
            if isinstance(value, bool) or not isinstance(value, int):
                raise errors.payload_type_mismatch(entity_set, value, attribute.edm_type)
            if kind in OPTION_TYPES and attribute.option_set is not None:
                allowed = attribute.option_set.values()
                if value not in allowed:
                    raise errors.picklist_out_of_range(value, attribute.logical_name, entity.logical_name, allowed)
            bounded = attribute.min_value is not None and attribute.max_value is not None
            if bounded and not attribute.min_value <= value <= attribute.max_value:  # type: ignore[operator]
                raise errors.invalid_value(
                    f"A validation error occurred. The value {value} of '{attribute.logical_name}' on record of "
                    f"type '{entity.logical_name}' is outside the valid range({attribute.min_value} to "
                    f"{attribute.max_value})."
                )
            return value
        if kind in {"Decimal", "Double", "Money"}:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise errors.payload_type_mismatch(entity_set, value, attribute.edm_type)
            return value
        if kind == "Boolean":
            if not isinstance(value, bool):
                raise errors.payload_type_mismatch(entity_set, value, "Edm.Boolean")
            return value
        if kind == MULTI_SELECT:
            if not isinstance(value, str):
                raise errors.payload_type_mismatch(entity_set, value, "Edm.String")
            allowed = attribute.option_set.values() if attribute.option_set is not None else []
            chosen: list[int] = []
            for part in (p.strip() for p in value.split(",") if p.strip()):
                if not re.fullmatch(r"-?\d+", part) or int(part) not in allowed:
                    raise errors.picklist_out_of_range(part, attribute.logical_name, entity.logical_name, allowed)
                chosen.append(int(part))
            return ",".join(str(v) for v in chosen) or None
        if kind == "DateTime":
            return self._date_value(attribute, value, entity_set)
        if kind == "Uniqueidentifier":
            if not isinstance(value, str) or not GUID_RE.match(value):
                raise errors.payload_type_mismatch(entity_set, value, "Edm.Guid")
            return value.lower()
        return value

    @staticmethod
    def _date_value(attribute: AttributeDef, value: Any, entity_set: str) -> str:
        if not isinstance(value, str):
            raise errors.payload_type_mismatch(entity_set, value, attribute.edm_type)
        if attribute.is_date_only:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise errors.payload_type_mismatch(entity_set, value, "Edm.Date")
            try:
                datetime.strptime(value, "%Y-%m-%d")
            except ValueError as exc:
                raise errors.payload_type_mismatch(entity_set, value, "Edm.Date") from exc
            return value
        try:
            return utc_iso(parse_instant(value))
        except ValueError as exc:
            raise errors.payload_type_mismatch(entity_set, value, "Edm.DateTimeOffset") from exc

    def _bind(self, entity: EntityDef, navigation: str, value: Any, values: Row) -> None:
        target_info = entity.navigations.get(navigation)
        if target_info is None:
            raise errors.undeclared_navigation(entity.entity_set_name, f"{navigation}@odata.bind")
        attribute, target_logical = target_info
        prop = attribute.property_name
        if not attribute.valid_for_create and not attribute.valid_for_update:
            return  # createdby, modifiedby: read-only, ignored as Dataverse ignores read-only columns
        if value is None:
            values[prop] = None
            values[prop + LOOKUP_TYPE] = None
            return
        target = self.registry.entity(target_logical)
        reference = self.resolve_reference(str(value))
        if target is None or reference is None or reference[0] is not target:
            raise errors.bad_request(
                f"The value '{value}' of '{navigation}@odata.bind' is not a reference to a {target_logical} record."
            )
        values[prop] = reference[1]
        values[prop + LOOKUP_TYPE] = target_logical

    def resolve_reference(self, reference: str) -> tuple[EntityDef, str] | None:
        """`/accounts(<id>)`, `accounts(<id>)`, an absolute URL or `accounts(accountnumber='x')` -> (table, id)."""
        path = reference.split("/api/data/v9.2/", 1)[-1].lstrip("/")
        match = _REFERENCE_RE.match(path)
        if match is None:
            return None
        target = self.registry.entity_for_set(match.group("set"))
        if target is None:
            raise errors.segment_not_found(match.group("set"))
        key = parse_key_segment(match.group("key"))
        if isinstance(key, str):
            if self.store.get(target, key) is None:
                raise errors.record_not_found(target.logical_name, key)
            return target, key
        row = find_by_alternate_key(self.store, target, key)
        if row is None:
            raise errors.key_not_found(target.logical_name)
        return target, row[target.primary_id]

    def _trusted_lookup(self, attribute: AttributeDef, value: Any, body: dict[str, Any], values: Row) -> None:
        prop = attribute.property_name
        if value is None:
            values[prop] = None
            values[prop + LOOKUP_TYPE] = None
            return
        if not isinstance(value, str) or not GUID_RE.match(value):
            raise errors.payload_type_mismatch(attribute.entity_logical_name, value, "Edm.Guid")
        record_id = value.lower()
        target = body.get(prop + LOOKUP_TYPE)
        if target is None:
            target = next(
                (t for t in attribute.targets if (e := self.registry.entity(t)) and self.store.get(e, record_id)),
                attribute.targets[0],
            )
        values[prop] = record_id
        values[prop + LOOKUP_TYPE] = target


def find_by_alternate_key(store: RecordStore, entity: EntityDef, key: dict[str, Literal]) -> Row | None:
    """The row an alternate-key segment names; 400 when the columns are not one of the table's keys."""
    by_logical: dict[str, Any] = {}
    for prop, literal in key.items():
        attribute = entity.properties.get(prop)
        if attribute is None:
            raise errors.property_not_found(prop, entity.logical_name)
        by_logical[attribute.logical_name] = coerce(literal, attribute.edm_type, 0, prop)
    alternate = entity.key_for(set(by_logical))
    if alternate is None:
        raise errors.bad_request(
            f"The key specified for the entity '{entity.logical_name}' is not a primary key or an alternate key "
            f"defined for it: {', '.join(sorted(by_logical))}."
        )
    return store.find_by_key(entity, alternate, by_logical)


def key_values_as_row(entity: EntityDef, key: dict[str, Literal]) -> Row:
    """Alternate-key values from the URL, as row values for an upsert that creates."""
    values: Row = {}
    for prop, literal in key.items():
        attribute = entity.properties[prop]
        if attribute.is_lookup:
            values[prop] = str(literal.value).lower()
            values[prop + LOOKUP_TYPE] = attribute.targets[0]
        elif attribute.edm_type == "Edm.String":
            values[prop] = literal.value
        else:
            values[prop] = coerce(literal, attribute.edm_type, 0, prop)
    return values


# -- representation -----------------------------------------------------------------------------------------
def _format_number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def _format_datetime(value: str, date_only: bool) -> str:
    if date_only:
        moment = datetime.strptime(value[:10], "%Y-%m-%d")
        return f"{moment.month}/{moment.day}/{moment.year}"
    moment = parse_instant(value)
    hour = moment.hour % 12 or 12
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


class Representer:
    """Rows as Web API JSON objects for one response (one `$select`, one set of annotations)."""

    def __init__(self, store: RecordStore, wants_annotation: Callable[[str], bool] | None) -> None:
        self.store = store
        wants = wants_annotation or (lambda name: False)
        self.formatted = wants(FORMATTED)
        self.lookup_names = wants(LOOKUP_LOGICAL_NAME)
        self.navigation = wants(ASSOCIATED_NAVIGATION)
        self.any = self.formatted or self.lookup_names or self.navigation

    def represent(self, entity: EntityDef, row: Row, props: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row.get("versionnumber")}"'}
        if not self.any:
            for prop in props:
                out[prop] = row.get(prop)
        else:
            for prop in props:
                self._annotated(entity, row, prop, out)
        if entity.primary_id not in out:
            out[entity.primary_id] = row[entity.primary_id]
        return out

    def _annotated(self, entity: EntityDef, row: Row, prop: str, out: dict[str, Any]) -> None:
        value = row.get(prop)
        attribute = entity.properties[prop]
        if value is not None:
            if self.formatted:
                text = self.format(attribute, row, value)
                if text is not None:
                    out[f"{prop}@{FORMATTED}"] = text
            if attribute.is_lookup:
                target = row.get(prop + LOOKUP_TYPE)
                if self.navigation and target:
                    out[f"{prop}@{ASSOCIATED_NAVIGATION}"] = attribute.navigation.get(target)
                if self.lookup_names and target:
                    out[f"{prop}@{LOOKUP_LOGICAL_NAME}"] = target
        out[prop] = value

    def format(self, attribute: AttributeDef, row: Row, value: Any) -> str | None:
        kind = attribute.attribute_type
        if attribute.option_set is not None and kind in OPTION_TYPES:
            return attribute.option_set.label_of(value)
        if kind == "Boolean":
            return attribute.true_label if value else attribute.false_label
        if kind == MULTI_SELECT and attribute.option_set is not None and isinstance(value, str):
            return "; ".join(attribute.option_set.label_of(int(v)) or v for v in value.split(",") if v)
        if attribute.is_lookup:
            target = row.get(attribute.property_name + LOOKUP_TYPE)
            return self.store.primary_name(target, value) if target else None
        if kind == "DateTime":
            return _format_datetime(value, attribute.is_date_only)
        if kind == "Money":
            return f"${value:,.2f}"
        if kind in {"Integer", "BigInt", "Decimal", "Double"}:
            return _format_number(value)
        return None
