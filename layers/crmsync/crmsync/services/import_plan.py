"""An import sync checked against the CRM's own schema, before any data moves (SPEC I2, I5, S3).

The configuration was validated without the CRM; here every field name, type, filter and sort column
is checked against the object's description, and the result - canonical names and types - is what the
page steps use, so they never describe the object again.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter

from ..config import ImportSync
from ..connectors.port import ObjectDescription, RecordQuery
from ..connectors.rules import crm_rules
from ..domain.filters import (
    RULE_NULL_OR_NUMBER,
    AllOf,
    AnyOf,
    Condition,
    Filter,
    NotOf,
    OrderBy,
    filter_conditions,
)
from ..domain.mapping import RecordMapper, ResolvedField
from ..domain.types import DATE_LIKE, NUMERIC_FILTERABLE, Conversion, CrmFieldType, is_compatible
from ..errors import ConfigurationError
from .local_deletions import LocalTarget

_filter_adapter: TypeAdapter[Filter] = TypeAdapter(AllOf | AnyOf | NotOf | Condition)


@dataclass(frozen=True)
class ImportPlan:
    object: str
    id_field: str
    watermark_field: str
    fields: tuple[ResolvedField, ...]
    filter: Filter | None
    order_by: tuple[OrderBy, ...]
    field_types: dict[str, CrmFieldType]
    page_size: int
    target_kind: str
    resource: str | None
    timezone: str
    key_attribute: str | None
    case_insensitive: bool
    route_rejects: bool
    change_tracking: bool = False
    """Read Dynamics change tracking (delta links) instead of a window on the watermark field."""

    @property
    def query_fields(self) -> tuple[str, ...]:
        names = [self.id_field, self.watermark_field, *(f.remote for f in self.fields)]
        return tuple(dict.fromkeys(names))

    def query(self, **window: Any) -> RecordQuery:
        return RecordQuery(
            object=self.object,
            fields=self.query_fields,
            filter=self.filter,
            order_by=self.order_by,
            page_size=self.page_size,
            field_types=self.field_types,
            labels=tuple(f.remote for f in self.fields if f.label),
            **window,
        )

    def target(self, connection: str) -> LocalTarget:
        """Where the sync's records live locally: profiles linked to the connection's object, or a resource."""
        kind: Literal["profiles", "resource"] = "resource" if self.target_kind == "resource" else "profiles"
        return LocalTarget(connection, self.object, kind, self.resource)

    def mapper(self) -> RecordMapper:
        return RecordMapper(list(self.fields), self.id_field, self.watermark_field, self.timezone)

    def to_state(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "id_field": self.id_field,
            "watermark_field": self.watermark_field,
            "fields": [f.to_state() for f in self.fields],
            "filter": None if self.filter is None else self.filter.model_dump(by_alias=True, exclude_none=True),
            "order_by": [o.model_dump() for o in self.order_by],
            "field_types": {k: v.value for k, v in self.field_types.items()},
            "page_size": self.page_size,
            "target_kind": self.target_kind,
            "resource": self.resource,
            "timezone": self.timezone,
            "key_attribute": self.key_attribute,
            "case_insensitive": self.case_insensitive,
            "route_rejects": self.route_rejects,
            "change_tracking": self.change_tracking,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ImportPlan:
        return cls(
            object=data["object"],
            id_field=data["id_field"],
            watermark_field=data["watermark_field"],
            fields=tuple(ResolvedField.from_state(f) for f in data["fields"]),
            filter=None if data.get("filter") is None else _filter_adapter.validate_python(data["filter"]),
            order_by=tuple(OrderBy.model_validate(o) for o in data.get("order_by") or []),
            field_types={k: CrmFieldType(v) for k, v in (data.get("field_types") or {}).items()},
            page_size=int(data["page_size"]),
            target_kind=data["target_kind"],
            resource=data.get("resource"),
            timezone=data["timezone"],
            key_attribute=data.get("key_attribute"),
            case_insensitive=bool(data.get("case_insensitive", True)),
            route_rejects=bool(data.get("route_rejects", True)),
            change_tracking=bool(data.get("change_tracking", False)),
        )


def unknown_field(kind: str, name: str, description: ObjectDescription) -> str:
    """The problem line for a field the object lacks, with the closest real name as a hint."""
    names = [f.name for f in description.fields.values()]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{kind}: {description.name} has no field {name!r}{hint}"


def resolve_import_plan(sync: ImportSync, description: ObjectDescription, crm_kind: str) -> ImportPlan:
    """Check the sync against the object's schema; every problem is one line of a ConfigurationError."""
    problems: list[str] = []
    where = f"sync {sync.id}"
    rules = crm_rules(crm_kind)
    # The CRM's own type of every column read: connectors render names and literals from it.
    field_types: dict[str, CrmFieldType] = {description.id_field: CrmFieldType.ID}

    resolved: list[ResolvedField] = []
    for index, mapping in enumerate(sync.fields):
        found = description.field(mapping.remote)
        if found is None:
            problems.append(f"{where}: " + unknown_field(f"fields[{index}].remote", mapping.remote, description))
            continue
        field_types[found.name] = found.crm_type
        crm_type = CrmFieldType.STRING if mapping.label else found.crm_type  # a label is text
        if mapping.conversion in (Conversion.DATE_ONLY, Conversion.NO_OFFSET) and crm_type not in DATE_LIKE:
            problems.append(
                f"{where}: fields[{index}].conversion: {mapping.conversion.value} applies to date and date-time "
                f"fields; {found.name} is {crm_type.value}"
            )
            continue
        field = ResolvedField.resolve(mapping, found.name, crm_type)
        if mapping.type is not None and not is_compatible(
            crm_type, mapping.type, mapping.conversion, bool(mapping.replace)
        ):
            problems.append(
                f"{where}: fields[{index}]: {found.name} ({crm_type.value}) cannot be mapped onto "
                f"{mapping.local} ({mapping.type.value}); the types are incompatible (rule S3)"
            )
            continue
        resolved.append(field)

    watermark_name = sync.watermark.field or rules.watermark_field
    watermark = description.field(watermark_name)
    if watermark is None:
        problems.append(f"{where}: " + unknown_field("watermark.field", watermark_name, description))
    elif watermark.crm_type is not CrmFieldType.DATETIME:
        problems.append(
            f"{where}: watermark.field: {watermark.name} is {watermark.crm_type.value}, not a date-time"
        )
    else:
        field_types[watermark.name] = watermark.crm_type

    if sync.filter is not None:
        for condition in filter_conditions(sync.filter):
            found = description.field(condition.field)
            if found is None:
                problems.append(f"{where}: " + unknown_field("filter", condition.field, description))
                continue
            if not found.filterable:
                problems.append(f"{where}: filter: {found.name} cannot be filtered on in {description.name}")
            if condition.value is not None and found.crm_type not in NUMERIC_FILTERABLE:
                problems.append(
                    f"{where}: filter: {found.name} is {found.crm_type.value}; comparisons are only against "
                    f"null or numbers ({RULE_NULL_OR_NUMBER})"
                )
            if (
                found.crm_type is CrmFieldType.BOOLEAN
                and condition.value is not None
                and (condition.value not in (0, 1) or condition.op not in ("eq", "ne"))
            ):
                problems.append(f"{where}: filter: {found.name} is a boolean; compare it with eq/ne and 1 or 0")
            field_types[found.name] = found.crm_type

    order_by: list[OrderBy] = []
    for index, order in enumerate(sync.order_by):
        found = description.field(order.field)
        if found is None:
            problems.append(f"{where}: " + unknown_field(f"order_by[{index}]", order.field, description))
        elif not found.sortable:
            problems.append(f"{where}: order_by[{index}]: {found.name} cannot be sorted on")
        else:
            order_by.append(OrderBy(field=found.name, direction=order.direction))

    change_tracking = _reads_change_tracking(sync, description, problems)
    if problems:
        raise ConfigurationError(problems)
    assert watermark is not None
    filter_tree = _canonical_filter(sync.filter, description) if sync.filter is not None else None
    return ImportPlan(
        object=description.name,
        id_field=description.id_field,
        watermark_field=watermark.name,
        fields=tuple(resolved),
        filter=filter_tree,
        order_by=tuple(order_by),
        field_types=field_types,
        page_size=min(sync.page_size or rules.max_page_size, rules.max_page_size),
        target_kind=sync.target.kind,
        resource=sync.target.resource,
        timezone=sync.target.timezone,
        key_attribute=sync.reconciliation.key,
        case_insensitive=sync.reconciliation.case_insensitive,
        route_rejects=sync.rejects.route,
        change_tracking=change_tracking,
    )


def _reads_change_tracking(sync: ImportSync, description: ObjectDescription, problems: list[str]) -> bool:
    """Change tracking reads every change of a table, without $filter or $orderby (Dataverse refuses them
    on tracked queries); `auto` uses it only where both hold, `change_tracking` insists on it."""
    mode = sync.watermark.mode
    if mode == "modified":
        return False
    reasons = []
    if not description.change_tracking:
        reasons.append(f"{description.name} has no change tracking in the CRM")
    if sync.filter is not None:
        reasons.append("the sync has a filter")
    if sync.order_by:
        reasons.append("the sync has an order_by")
    if reasons and mode == "change_tracking":
        problems.append(
            f"sync {sync.id}: watermark.mode: change_tracking cannot be used: {'; '.join(reasons)} "
            "(use mode auto or modified)"
        )
    return not reasons


def _canonical_filter(node: Filter, description: ObjectDescription) -> Filter:
    """The same filter with field names spelled as the CRM spells them."""
    if isinstance(node, Condition):
        found = description.field(node.field)
        return node.model_copy(update={"field": found.name if found else node.field})
    if isinstance(node, AllOf):
        return AllOf(all=[_canonical_filter(c, description) for c in node.all])
    if isinstance(node, AnyOf):
        return AnyOf(any=[_canonical_filter(c, description) for c in node.any])
    return NotOf.model_validate({"not": _canonical_filter(node.not_, description)})
