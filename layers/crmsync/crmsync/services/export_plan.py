"""An export sync checked against the CRM's own schema, before any data moves (SPEC E1-E6, S3, M5).

Every mapped field must exist on its object and be writable the way the sync writes; the correlation
field must take text and be searchable; the upsert key must be an external id; lead-or-contact routing
and owner sync need their CRM fields. The result - canonical names and types per object - is what the
batch steps use, so they never describe an object again. A resumed run resolves its plan again, so a
fixed configuration fixes the resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..config import PROFILE_ID, ExportSync, FieldMapping, LeadOrContact
from ..connectors.port import ObjectDescription
from ..connectors.rules import CRM_RULES, CrmRules, CrmVocabulary, crm_rules
from ..domain.mapping import PayloadMapper, ResolvedField
from ..domain.routing import WriteMode
from ..domain.types import DATE_LIKE, Conversion, CrmFieldType, is_compatible
from ..errors import ConfigurationError
from .import_plan import unknown_field

TEXT_TYPES = frozenset({CrmFieldType.STRING, CrmFieldType.OTHER})


@dataclass(frozen=True)
class ObjectTarget:
    """One CRM object an export writes, with its resolved field mapping."""

    object: str
    id_field: str
    fields: tuple[ResolvedField, ...]
    correlation: bool
    owner: bool
    email_field: str | None = None
    converted_field: str | None = None
    timeline: bool = False
    """The object has the timeline-link field (SPEC M5): the link is written with the record."""

    def to_state(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "timeline": self.timeline,
            "id_field": self.id_field,
            "fields": [f.to_state() for f in self.fields],
            "correlation": self.correlation,
            "owner": self.owner,
            "email_field": self.email_field,
            "converted_field": self.converted_field,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ObjectTarget:
        return cls(
            object=data["object"],
            id_field=data["id_field"],
            fields=tuple(ResolvedField.from_state(f) for f in data["fields"]),
            correlation=bool(data["correlation"]),
            owner=bool(data["owner"]),
            email_field=data.get("email_field"),
            converted_field=data.get("converted_field"),
            timeline=bool(data.get("timeline", False)),
        )


@dataclass(frozen=True)
class ExportPlan:
    connection: str
    crm_kind: str
    primary: ObjectTarget
    contact: ObjectTarget | None
    write: WriteMode
    external_id_field: str | None
    external_id_local: str | None
    correlation_field: str | None
    match_attribute: str | None
    owner_local: str | None
    owner_by: str | None
    timezone: str
    route_rejects: bool
    batch_size: int
    bulk_threshold: int
    bulk_batch_size: int
    max_concurrency: int
    timeline_field: str | None = None
    timeline_url: str | None = None
    """The export writes the link to the profile's timeline (SPEC M5): `timeline_url` with {profileId}."""

    @property
    def targets(self) -> tuple[ObjectTarget, ...]:
        return (self.primary,) if self.contact is None else (self.primary, self.contact)

    def target(self, object_name: str) -> ObjectTarget:
        for target in self.targets:
            if target.object == object_name:
                return target
        raise KeyError(object_name)

    def mapper(self, target: ObjectTarget) -> PayloadMapper:
        return PayloadMapper(target.fields, self.timezone)

    @property
    def rules(self) -> CrmRules:
        return crm_rules(self.crm_kind)

    @property
    def bulk_api(self) -> bool:
        return self.rules.bulk_api

    @property
    def vocabulary(self) -> CrmVocabulary:
        """The CRM's names for routing and owner sync (a sync that uses them is refused where it has none)."""
        if self.rules.vocabulary is None:
            raise KeyError(self.crm_kind)
        return self.rules.vocabulary

    @property
    def local_attributes(self) -> frozenset[str]:
        """The attributes a snapshot keeps: what the mappings, routing, owner and key read."""
        names = {f.local for t in self.targets for f in t.fields}
        names |= {n for n in (self.match_attribute, self.owner_local, self.external_id_local) if n}
        return frozenset(names - {PROFILE_ID})

    def to_state(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "crm_kind": self.crm_kind,
            "primary": self.primary.to_state(),
            "contact": None if self.contact is None else self.contact.to_state(),
            "write": self.write,
            "external_id_field": self.external_id_field,
            "external_id_local": self.external_id_local,
            "correlation_field": self.correlation_field,
            "match_attribute": self.match_attribute,
            "owner_local": self.owner_local,
            "owner_by": self.owner_by,
            "timezone": self.timezone,
            "route_rejects": self.route_rejects,
            "batch_size": self.batch_size,
            "bulk_threshold": self.bulk_threshold,
            "bulk_batch_size": self.bulk_batch_size,
            "max_concurrency": self.max_concurrency,
            "timeline_field": self.timeline_field,
            "timeline_url": self.timeline_url,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ExportPlan:
        return cls(
            connection=data["connection"],
            crm_kind=data["crm_kind"],
            primary=ObjectTarget.from_state(data["primary"]),
            contact=None if data.get("contact") is None else ObjectTarget.from_state(data["contact"]),
            write=cast(WriteMode, data["write"]),
            external_id_field=data.get("external_id_field"),
            external_id_local=data.get("external_id_local"),
            correlation_field=data.get("correlation_field"),
            match_attribute=data.get("match_attribute"),
            owner_local=data.get("owner_local"),
            owner_by=data.get("owner_by"),
            timezone=data["timezone"],
            route_rejects=bool(data["route_rejects"]),
            batch_size=int(data["batch_size"]),
            bulk_threshold=int(data["bulk_threshold"]),
            bulk_batch_size=int(data["bulk_batch_size"]),
            max_concurrency=int(data["max_concurrency"]),
            timeline_field=data.get("timeline_field"),
            timeline_url=data.get("timeline_url"),
        )


def _resolve_fields(
    where: str,
    setting: str,
    mappings: list[Any],
    description: ObjectDescription,
    *,
    inserts: bool,
    updates: bool,
    problems: list[str],
    rules: CrmRules,
) -> tuple[ResolvedField, ...]:
    resolved: list[ResolvedField] = []
    for index, mapping in enumerate(mappings):
        found = description.field(mapping.remote)
        label = f"{where}: {setting}[{index}]"
        if found is None:
            problems.append(
                f"{where}: " + unknown_field(f"{setting}[{index}].remote", mapping.remote, description)
            )
            continue
        if inserts and not found.createable:
            problems.append(f"{label}: {description.name}.{found.name} cannot be set when a record is created")
        if updates and not found.updateable:
            problems.append(f"{label}: {description.name}.{found.name} cannot be updated")
        if mapping.conversion in (Conversion.DATE_ONLY, Conversion.NO_OFFSET) and found.crm_type not in DATE_LIKE:
            problems.append(
                f"{label}.conversion: {mapping.conversion.value} applies to date and date-time fields; "
                f"{found.name} is {found.crm_type.value}"
            )
            continue
        if not rules.exports_lookups and found.crm_type is CrmFieldType.REFERENCE:
            problems.append(
                f"{label}: {description.name}.{found.name} is a lookup; exports do not bind Dynamics lookups "
                "(@odata.bind) in this build"
            )
            continue
        if mapping.type is not None and not is_compatible(
            found.crm_type, mapping.type, mapping.conversion, bool(mapping.replace)
        ):
            problems.append(
                f"{label}: {mapping.local} ({mapping.type.value}) cannot be written to {found.name} "
                f"({found.crm_type.value}); the types are incompatible (rule S3)"
            )
            continue
        resolved.append(ResolvedField.resolve(mapping, found.name, found.crm_type))
    return tuple(resolved)


@dataclass(frozen=True)
class LeadOrContactRouting:
    """Lead-or-contact routing (SPEC E5) checked against the CRM: the Contact object, the mapping people
    found as Contacts are written with, the e-mail field both objects are searched on, the Lead's
    "converted" flag (a converted Lead is not a match)."""

    contact: ObjectDescription
    contact_fields: tuple[ResolvedField, ...]
    email_field: str
    converted_field: str | None


def resolve_lead_or_contact(
    where: str,
    setting: str,
    routing: LeadOrContact,
    fields: Sequence[FieldMapping],
    lead: ObjectDescription,
    describe: Callable[[str], ObjectDescription],
    rules: CrmRules,
    problems: list[str],
) -> LeadOrContactRouting:
    """`routing` (the export's `lead_or_contact`, the two-way sync's `create.lead_or_contact`) against the
    CRM's Lead (`lead`) and Contact: `routing.contact_fields`, else `fields`, must be updatable on Contact;
    both objects need the e-mail field. Problems are appended to `problems`, one line each."""
    vocabulary = rules.vocabulary
    assert vocabulary is not None  # refused earlier on a CRM without Leads and Contacts (crm_problems)
    contact = describe(vocabulary.contact)
    contact_fields = _resolve_fields(
        where,
        f"{setting}.contact_fields" if routing.contact_fields is not None else "fields",
        list(routing.contact_fields if routing.contact_fields is not None else fields),
        contact,
        inserts=False,
        updates=True,
        problems=problems,
        rules=rules,
    )
    for description in (lead, contact):
        if description.field(vocabulary.email_field) is None:
            problems.append(f"{where}: {setting}: {description.name} has no {vocabulary.email_field}")
    converted = vocabulary.lead_converted_field
    return LeadOrContactRouting(
        contact=contact,
        contact_fields=contact_fields,
        email_field=vocabulary.email_field,
        converted_field=converted if converted and lead.field(converted) else None,
    )


def resolve_export_plan(
    sync: ExportSync, describe: Callable[[str], ObjectDescription], crm_kind: str
) -> ExportPlan:
    """Check the sync against the CRM's schema; every problem is one line of a ConfigurationError."""
    where = f"sync {sync.id}"
    rules = CRM_RULES.get(crm_kind)
    if rules is None:
        raise ConfigurationError(f"{where}: exports to {crm_kind} are not supported by this build")
    problems = [f"{where}: {problem}" for problem in sync.crm_problems(crm_kind)]
    if problems:
        raise ConfigurationError(problems)
    vocabulary = rules.vocabulary

    inserts = sync.write in ("insert_or_update", "upsert")
    updates = sync.write in ("insert_or_update", "update", "upsert")
    primary_description = describe(sync.object)
    primary_fields = _resolve_fields(
        where,
        "fields",
        sync.fields,
        primary_description,
        inserts=inserts,
        updates=updates,
        problems=problems,
        rules=rules,
    )

    def special(name: str, setting: str, description: ObjectDescription, *, required: bool) -> str | None:
        """The canonical name of a field crmsync writes itself, if the object has it (when required, it must)."""
        found = description.field(name)
        if found is None:
            if required:
                problems.append(f"{where}: " + unknown_field(setting, name, description))
            return None
        if found.crm_type not in TEXT_TYPES or not found.filterable:
            problems.append(
                f"{where}: {setting}: {description.name}.{found.name} must be a text field that can be searched"
            )
        if not (found.createable and found.updateable):
            problems.append(f"{where}: {setting}: {description.name}.{found.name} must be writable")
        return found.name

    correlation: str | None = None
    if sync.correlation_field is not None:
        correlation = special(sync.correlation_field, "correlation_field", primary_description, required=True)

    timeline: str | None = None
    if sync.timeline_link is not None:
        found_link = primary_description.field(sync.timeline_link.field)
        if found_link is None:
            problems.append(
                f"{where}: " + unknown_field("timeline_link.field", sync.timeline_link.field, primary_description)
            )
        elif found_link.crm_type not in TEXT_TYPES or not (found_link.createable and found_link.updateable):
            problems.append(
                f"{where}: timeline_link.field: {primary_description.name}.{found_link.name} must be a writable "
                "text or URL field"
            )
        else:
            timeline = found_link.name

    owner_primary = False
    if sync.owner is not None and vocabulary is not None:
        owner_field = vocabulary.owner_field
        found_owner = primary_description.field(owner_field)
        if found_owner is None or not (found_owner.createable and found_owner.updateable):
            problems.append(f"{where}: owner: {primary_description.name} has no writable {owner_field}")
        owner_primary = found_owner is not None

    external_field: str | None = None
    if sync.external_id is not None:
        found = primary_description.field(sync.external_id.remote)
        if found is None:
            problems.append(
                f"{where}: " + unknown_field("external_id.remote", sync.external_id.remote, primary_description)
            )
        elif not found.external_id:
            problems.append(
                f"{where}: external_id.remote: {primary_description.name}.{found.name} is not an external-id field"
            )
        else:
            external_field = found.name

    contact: ObjectTarget | None = None
    email_primary: str | None = None
    converted: str | None = None
    if sync.lead_or_contact is not None and vocabulary is not None:
        routing = resolve_lead_or_contact(
            where,
            "lead_or_contact",
            sync.lead_or_contact,
            sync.fields,
            primary_description,
            describe,
            rules,
            problems,
        )
        contact_description, contact_fields = routing.contact, routing.contact_fields
        email_primary, converted = routing.email_field, routing.converted_field
        owner_contact = sync.owner is not None and contact_description.field(vocabulary.owner_field) is not None
        contact = ObjectTarget(
            object=contact_description.name,
            id_field=contact_description.id_field,
            fields=contact_fields,
            correlation=sync.correlation_field is not None
            and special(sync.correlation_field, "correlation_field", contact_description, required=False)
            is not None,
            owner=owner_contact,
            email_field=vocabulary.email_field,
            timeline=timeline is not None and contact_description.field(timeline) is not None,
        )

    if problems:
        raise ConfigurationError(problems)
    return ExportPlan(
        connection=sync.connection,
        crm_kind=crm_kind,
        primary=ObjectTarget(
            object=primary_description.name,
            id_field=primary_description.id_field,
            fields=primary_fields,
            correlation=correlation is not None,
            owner=owner_primary,
            email_field=email_primary,
            converted_field=converted,
            timeline=timeline is not None,
        ),
        contact=contact,
        write=sync.write,
        external_id_field=external_field,
        external_id_local=sync.external_id.local if sync.external_id else None,
        correlation_field=correlation,
        match_attribute=sync.lead_or_contact.match if sync.lead_or_contact else None,
        owner_local=sync.owner.local if sync.owner else None,
        owner_by=sync.owner.by if sync.owner else None,
        timezone=sync.timezone,
        route_rejects=sync.rejects.route,
        batch_size=sync.batch_size,
        bulk_threshold=sync.bulk_threshold,
        bulk_batch_size=sync.bulk_batch_size,
        max_concurrency=sync.max_concurrency,
        timeline_field=timeline,
        timeline_url=sync.timeline_link.url if sync.timeline_link else None,
    )
