"""What a CRM field is, for the mapping between it and a marketing attribute (SPEC S1-S3).

Three things live here, all pure:
- the *kind* of a CRM field, finer than its `CrmFieldType` where the mapping cares: a Dataverse option
  set is an integer on the wire but an enumeration to a person, a multi-select is never a scalar;
- the compatibility table, both ways (CRM -> attribute for imports, attribute -> CRM for exports), each
  refusal with the rule it breaks; `docs/schema.md` publishes this very table;
- schema snapshots: an `ObjectDescription` as JSON, so configuration can be checked without the CRM.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Literal

from ..connectors.port import FieldDescription, ObjectDescription, PicklistValue
from .types import AttributeType, Conversion, CrmFieldType

SNAPSHOT_FORMAT = 1


class FieldKind(StrEnum):
    """A CRM field as the compatibility table sees it."""

    TEXT = "text"
    ID = "id"
    REFERENCE = "reference"
    PICKLIST = "picklist"
    """Salesforce picklist: one text value from a list."""
    OPTION_SET = "option set"
    """Dataverse choice (Picklist, State, Status): one integer value from a list of labelled options."""
    MULTI_SELECT = "multi-select"
    """Salesforce multi-select picklist, Dataverse multi-select choice: several values at once."""
    BOOLEAN = "boolean"
    INTEGER = "integer"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    COMPOUND = "compound"
    """Salesforce address / name / geolocation: read and written through its parts."""
    OTHER = "other"


OPTION_SET_TYPES = frozenset({"Picklist", "State", "Status"})


def field_kind(field: FieldDescription) -> FieldKind:
    if field.raw_type in ("address", "location"):  # a person's compound Name is also plain text
        return FieldKind.COMPOUND
    if field.crm_type is CrmFieldType.MULTIPICKLIST:
        return FieldKind.MULTI_SELECT
    if field.raw_type in OPTION_SET_TYPES:
        return FieldKind.OPTION_SET
    return {
        CrmFieldType.STRING: FieldKind.TEXT,
        CrmFieldType.ID: FieldKind.ID,
        CrmFieldType.REFERENCE: FieldKind.REFERENCE,
        CrmFieldType.PICKLIST: FieldKind.PICKLIST,
        CrmFieldType.BOOLEAN: FieldKind.BOOLEAN,
        CrmFieldType.INTEGER: FieldKind.INTEGER,
        CrmFieldType.NUMBER: FieldKind.NUMBER,
        CrmFieldType.DATE: FieldKind.DATE,
        CrmFieldType.DATETIME: FieldKind.DATETIME,
        CrmFieldType.TIME: FieldKind.TIME,
    }.get(field.crm_type, FieldKind.OTHER)


ENUMERABLE = frozenset({FieldKind.PICKLIST, FieldKind.OPTION_SET, FieldKind.BOOLEAN})
"""Kinds an enumeration sync reads (Boolean: Dataverse's Yes/No labels)."""

A = AttributeType
K = FieldKind
RULE_SCALAR_ONTO_LIST = "a multi-select holds several values: only a text or list attribute takes it (rule S2)"
RULE_ENUMERATION = "an enumeration attribute takes picklist / option-set values only (rule S2)"
RULE_NARROWING = "the attribute cannot hold every value of the field (rule S3)"
RULE_DATES = "dates and date-times map onto dates, date-times or text only (rule S3)"
RULE_TEXT = "text holds any value, but no other type holds any text (rule S3)"

# CRM field kind -> attribute types an import may put its values in.
IMPORT_COMPATIBLE: dict[FieldKind, frozenset[AttributeType]] = {
    K.TEXT: frozenset({A.STRING}),
    K.ID: frozenset({A.STRING}),
    K.REFERENCE: frozenset({A.STRING}),
    K.TIME: frozenset({A.STRING}),
    K.OTHER: frozenset({A.STRING}),
    K.COMPOUND: frozenset(),
    K.PICKLIST: frozenset({A.STRING, A.ENUMERATION, A.LIST}),
    K.OPTION_SET: frozenset({A.INTEGER, A.NUMBER, A.STRING, A.ENUMERATION, A.LIST}),
    K.MULTI_SELECT: frozenset({A.STRING, A.LIST}),
    K.BOOLEAN: frozenset({A.BOOLEAN, A.INTEGER, A.STRING}),
    K.INTEGER: frozenset({A.INTEGER, A.NUMBER, A.STRING}),
    K.NUMBER: frozenset({A.NUMBER, A.STRING}),
    K.DATE: frozenset({A.DATE, A.STRING}),
    K.DATETIME: frozenset({A.DATETIME, A.DATE, A.STRING}),
}

# Attribute type -> CRM field kinds an export may write its values to.
EXPORT_COMPATIBLE: dict[AttributeType, frozenset[FieldKind]] = {
    A.STRING: frozenset({K.TEXT, K.ID, K.REFERENCE, K.PICKLIST, K.MULTI_SELECT, K.TIME, K.OTHER}),
    A.ENUMERATION: frozenset({K.PICKLIST, K.OPTION_SET, K.TEXT}),
    A.LIST: frozenset({K.MULTI_SELECT, K.TEXT}),
    A.INTEGER: frozenset({K.INTEGER, K.NUMBER, K.OPTION_SET, K.TEXT}),
    A.NUMBER: frozenset({K.NUMBER, K.TEXT}),
    A.BOOLEAN: frozenset({K.BOOLEAN, K.TEXT}),
    A.DATE: frozenset({K.DATE, K.DATETIME, K.TEXT}),
    A.DATETIME: frozenset({K.DATETIME, K.DATE, K.TEXT}),
}


def refusal_rule(kind: FieldKind, attribute: AttributeType, direction: Literal["import", "export"]) -> str:
    """Which rule a refused pair breaks, in words."""
    if kind is K.COMPOUND:
        return "a compound field is read and written through its parts (map MailingCity, not MailingAddress)"
    if kind is K.MULTI_SELECT or (direction == "export" and attribute is A.LIST):
        return RULE_SCALAR_ONTO_LIST
    if attribute is A.ENUMERATION:
        return RULE_ENUMERATION
    if K.DATE in (kind,) or kind is K.DATETIME or attribute in (A.DATE, A.DATETIME):
        return RULE_DATES
    if kind in (K.TEXT, K.PICKLIST) or attribute is A.STRING:
        return RULE_TEXT
    return RULE_NARROWING


def mapping_problem(
    field: FieldDescription,
    attribute: AttributeType,
    direction: Literal["import", "export"],
    *,
    conversion: Conversion = Conversion.DEFAULT,
    replacements: bool = False,
    label: bool = False,
    enumeration: str | None = None,
) -> str | None:
    """None when the pair may be mapped, else the rule it breaks. `raw` gives text; replacement rules and
    an enumeration conversion turn values into the attribute's type one by one (checked per value)."""
    kind = FieldKind.TEXT if label else field_kind(field)
    if kind is K.COMPOUND:
        return refusal_rule(kind, attribute, direction)
    if enumeration is not None:
        if kind not in ENUMERABLE:
            return (
                f"the enumeration conversion needs a picklist, option set or Boolean, not a {kind.value} (rule S2)"
            )
        return None if attribute in (A.STRING, A.ENUMERATION) else RULE_ENUMERATION
    if replacements:
        return None
    if conversion is Conversion.RAW and direction == "import":
        return None if attribute in (A.STRING, A.ENUMERATION) else "raw gives text: the attribute must be a string"
    allowed = (
        attribute in IMPORT_COMPATIBLE[kind] if direction == "import" else kind in EXPORT_COMPATIBLE[attribute]
    )
    return None if allowed else refusal_rule(kind, attribute, direction)


def attribute_type_of(field: FieldDescription, conversion: Conversion = Conversion.DEFAULT) -> AttributeType:
    """The attribute type a field's values take when nothing is declared (what `schema mapping` writes)."""
    kind = field_kind(field)
    if conversion is Conversion.RAW:
        return A.STRING
    if conversion is Conversion.DATE_ONLY and kind is K.DATETIME:
        return A.DATE
    return {
        K.PICKLIST: A.ENUMERATION,
        K.OPTION_SET: A.ENUMERATION,
        K.MULTI_SELECT: A.LIST,
        K.BOOLEAN: A.BOOLEAN,
        K.INTEGER: A.INTEGER,
        K.NUMBER: A.NUMBER,
        K.DATE: A.DATE,
        K.DATETIME: A.DATETIME,
    }.get(kind, A.STRING)


def same_values(first: AttributeType, second: AttributeType) -> bool:
    """Whether two mappings of one undeclared attribute agree on its type (integer widens to number; an
    enumeration is stored as text)."""
    groups = [{A.STRING, A.ENUMERATION}, {A.INTEGER, A.NUMBER}]
    return first == second or any(first in g and second in g for g in groups)


def compatibility_markdown() -> str:
    """The compatibility table as `docs/schema.md` publishes it (a test keeps the two equal)."""
    kinds = [k for k in FieldKind if k is not K.COMPOUND]
    attributes = list(AttributeType)
    lines = [
        "| CRM field \\ attribute | " + " | ".join(a.value for a in attributes) + " |",
        "|---|" + "---|" * len(attributes),
    ]
    for kind in kinds:
        cells = []
        for attribute in attributes:
            imports = attribute in IMPORT_COMPATIBLE[kind]
            exports = kind in EXPORT_COMPATIBLE[attribute]
            cells.append(
                {(True, True): "both", (True, False): "import", (False, True): "export"}.get(
                    (imports, exports), "-"
                )
            )
        lines.append(f"| {kind.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- snapshots
def description_to_json(description: ObjectDescription) -> dict[str, Any]:
    """A description as a snapshot file holds it (sorted, stable: snapshots diff well in review)."""
    body = asdict(description)
    body["fields"] = [asdict(f) for f in sorted(description.fields.values(), key=lambda f: f.name.lower())]
    for field in body["fields"]:
        field["crm_type"] = str(field["crm_type"])
        for key in ("picklist_values", "compound_of"):
            field[key] = list(field[key])
        field["picklist"] = [asdict(p) for p in _picklist(field["picklist"])]
    body["record_types"] = [list(r) for r in description.record_types]
    body.pop("last_modified", None)
    return {"format": SNAPSHOT_FORMAT, **body}


def _picklist(values: Any) -> list[PicklistValue]:
    return [v if isinstance(v, PicklistValue) else PicklistValue(**v) for v in values]


def description_from_json(data: dict[str, Any]) -> ObjectDescription:
    if data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a crmsync schema snapshot of format {SNAPSHOT_FORMAT}")
    fields: dict[str, FieldDescription] = {}
    for raw in data["fields"]:
        field = FieldDescription(
            **{
                **raw,
                "crm_type": CrmFieldType(raw["crm_type"]),
                "picklist_values": tuple(raw.get("picklist_values") or ()),
                "picklist": tuple(_picklist(raw.get("picklist") or ())),
                "compound_of": tuple(raw.get("compound_of") or ()),
            }
        )
        fields[field.name.lower()] = field
    return ObjectDescription(
        name=data["name"],
        id_field=data["id_field"],
        fields=fields,
        label=data.get("label", ""),
        custom=bool(data.get("custom", False)),
        entity_set=data.get("entity_set"),
        change_tracking=bool(data.get("change_tracking", False)),
        key_prefix=data.get("key_prefix"),
        record_types=tuple((str(i), str(n)) for i, n in data.get("record_types") or ()),
    )


@dataclass(frozen=True)
class Drift:
    """How an object's schema changed between two descriptions (SPEC S3, drift on every run)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()
    """(field, type before, type now)."""


def type_label(field: FieldDescription) -> str:
    return field.raw_type or field.crm_type.value


def compare(before: ObjectDescription, now: ObjectDescription) -> Drift:
    added = tuple(sorted(f.name for key, f in now.fields.items() if key not in before.fields))
    removed = tuple(sorted(f.name for key, f in before.fields.items() if key not in now.fields))
    retyped = tuple(
        sorted(
            (f.name, type_label(before.fields[key]), type_label(f))
            for key, f in now.fields.items()
            if key in before.fields
            and (before.fields[key].crm_type, field_kind(before.fields[key])) != (f.crm_type, field_kind(f))
        )
    )
    return Drift(added=added, removed=removed, retyped=retyped)


# ------------------------------------------------------------------------------------- local names
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+")


def suggested_local_name(remote: str) -> str:
    """`MailingCity` -> `mailingCity`, `Opted_In_At__c` -> `optedInAt`, `emailaddress1` -> `emailaddress1`."""
    stem = re.sub(r"__c$", "", remote)
    stem = re.sub(r"^[a-z]{2,8}_(?=[a-z])", "", stem) if "_" in stem and stem == stem.lower() else stem
    words = [w for w in _WORDS.findall(stem.replace("_", " ").replace(" ", "_")) if w]
    if not words:
        return "field"
    head, *tail = words
    name = head.lower() + "".join(w[:1].upper() + w[1:].lower() for w in tail)
    return name if name[:1].isalpha() else f"f{name}"
