"""Schema discovery and checks (SPEC S1, S3): starting mappings, snapshots, type checks at validation.

`crmsync schema mapping` writes a starting configuration from what the CRM describes; `crmsync schema
pull` saves descriptions as JSON snapshots beside the configuration; `crmsync config validate` checks
every sync against those snapshots (or the live CRM with `--online`) before any data moves: the same
checks a run's start step makes (unknown fields, watermark, filters), plus the types of both sides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import (
    DEFAULT_WATERMARK_FIELD,
    AttributeDeclaration,
    CrmsyncConfig,
    DeletionImportSync,
    DynamicsConnection,
    EnumerationSync,
    ExportSync,
    ImportSync,
    SalesforceConnection,
    SyncDefinition,
    TwoWaySync,
)
from ..connectors.port import FieldDescription, ObjectDescription
from ..connectors.rules import crm_rules
from ..domain.mapping import RESERVED_LOCAL_NAMES
from ..domain.schema import (
    ENUMERABLE,
    FieldKind,
    attribute_type_of,
    description_from_json,
    description_to_json,
    field_kind,
    mapping_problem,
    same_values,
    suggested_local_name,
    type_label,
)
from ..domain.types import AttributeType
from ..errors import ConfigurationError
from .export_plan import resolve_export_plan
from .import_plan import resolve_import_plan, unknown_field

Describe = Callable[[str, str], ObjectDescription | None]
"""(connection name, object name) -> the object's description, or None when none is at hand."""

PROFILE_OBJECTS = frozenset({"contact", "lead"})
LEFT_OUT_TYPES = {
    "base64": "binary content (files) is not synced",
    "Virtual": "a virtual column holds no data of its own",
    "EntityName": "names the table of a lookup; it is read with the lookup",
    "PartyList": "an activity party list is not a column",
    "ManagedProperty": "solution metadata, not data",
}


# ------------------------------------------------------------------------------------- snapshots
def snapshot_folder(config_file: Path, config: CrmsyncConfig) -> Path:
    return (config_file.parent / config.schema_settings.snapshots).resolve()


def snapshot_path(folder: Path, connection: str, object_name: str) -> Path:
    return folder / connection / f"{object_name}.json"


def save_snapshot(folder: Path, connection: str, description: ObjectDescription) -> Path:
    path = snapshot_path(folder, connection, description.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**description_to_json(description), "connection": connection}
    path.write_text(json.dumps(body, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_snapshot(folder: Path, connection: str, object_name: str) -> ObjectDescription | None:
    """The snapshot of an object, found whatever the case of its name (Dataverse names are lower case)."""
    directory = folder / connection
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.json")):
        if path.stem.lower() == object_name.lower():
            try:
                return description_from_json(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigurationError(f"{path}: not a readable schema snapshot ({exc})") from None
    return None


def objects_of(config: CrmsyncConfig, connection: str) -> list[str]:
    """The objects the syncs of a connection read or write (what `schema pull` saves by default)."""
    names: list[str] = []
    for sync in config.syncs:
        if sync.connection != connection:
            continue
        names.append(sync.object)
        if (isinstance(sync, ExportSync) and sync.lead_or_contact is not None) or (
            isinstance(sync, TwoWaySync) and sync.create.lead_or_contact is not None
        ):
            names.append("Contact")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------- checks
@dataclass
class SchemaCheck:
    """What validation against the CRM's schema found: problems refuse the file, notes do not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: int = 0


@dataclass
class _Use:
    where: str
    field: FieldDescription
    declared: AttributeType | None
    direction: Literal["import", "export"]


def check_config(config: CrmsyncConfig, describe: Describe) -> SchemaCheck:
    """Every sync against its object's description, then every attribute across syncs (SPEC S3)."""
    result = SchemaCheck()
    declared = config.attribute_types()
    uses: dict[str, list[_Use]] = {}
    for index, sync in enumerate(config.syncs):
        where = f"syncs[{index}] ({sync.id})"
        try:
            connection = config.connection(sync.connection)
        except KeyError:
            continue  # reported by the file's own validation
        try:
            description = describe(connection.name, sync.object)
        except ConfigurationError as exc:
            result.problems += [f"{where}.object: {problem}" for problem in exc.problems]
            continue
        if description is None:
            result.notes.append(
                f"{where}: no schema of {connection.name}/{sync.object} to check against "
                f"(crmsync schema pull {connection.name} {sync.object})"
            )
            continue
        result.checked += 1
        result.problems += _sync_problems(config, sync, connection, description, describe, where, declared, uses)
    for name, found in uses.items():
        if name in declared or len(found) < 2:
            continue
        first = found[0]
        first_type = attribute_type_of(first.field)
        for other in found[1:]:
            other_type = attribute_type_of(other.field)
            if not same_values(first_type, other_type):
                result.problems.append(
                    f"{other.where}: attribute {name} would be {other_type.value} ({other.field.name}, "
                    f"{type_label(other.field)}) but {first.where} makes it {first_type.value} ({first.field.name}, "
                    f"{type_label(first.field)}); declare it under attributes: or map compatible fields (rule S3)"
                )
    return result


def _sync_problems(
    config: CrmsyncConfig,
    sync: SyncDefinition,
    connection: SalesforceConnection | DynamicsConnection,
    description: ObjectDescription,
    describe: Describe,
    where: str,
    declared: dict[str, AttributeDeclaration],
    uses: dict[str, list[_Use]],
) -> list[str]:
    problems: list[str] = []
    try:
        if isinstance(sync, ImportSync):
            resolve_import_plan(sync, description, connection.kind)
        elif isinstance(sync, ExportSync):

            def describe_or_fail(name: str) -> ObjectDescription:
                found = describe(connection.name, name)
                if found is None:
                    raise ConfigurationError(f"no schema of {connection.name}/{name} (crmsync schema pull)")
                return found

            resolve_export_plan(sync, describe_or_fail, connection.kind)
    except ConfigurationError as exc:
        # The run's own checks name the sync as `sync <id>`; here it is named by its place in the file. Its
        # type refusals are left to the finer check below, which names the rule broken.
        problems += [
            f"{where}: {p.removeprefix(f'sync {sync.id}: ')}"
            for p in exc.problems
            if not p.endswith("the types are incompatible (rule S3)")
        ]
    if isinstance(sync, EnumerationSync):
        return problems + _enumeration_problems(sync, description, where, connection.kind)
    if isinstance(sync, DeletionImportSync) or not isinstance(sync, ImportSync | ExportSync):
        return problems
    direction: Literal["import", "export"] = "import" if isinstance(sync, ImportSync) else "export"
    for index, mapping in enumerate(sync.fields):
        found = description.field(mapping.remote)
        if found is None:
            continue  # reported above, with a hint
        attribute = declared.get(mapping.local)
        use_where = f"{where}.fields[{index}]"
        uses.setdefault(mapping.local, []).append(
            _Use(use_where, found, attribute.type if attribute else None, direction)
        )
        if attribute is None:
            if mapping.type is None and field_kind(found) is FieldKind.MULTI_SELECT and direction == "import":
                continue
            if mapping.type is None:
                continue
            target = AttributeType(mapping.type.value)
        else:
            target = attribute.type
        rule = mapping_problem(
            found,
            target,
            direction,
            conversion=mapping.conversion,
            replacements=bool(mapping.replace),
            label=mapping.label,
            enumeration=mapping.enumeration,
        )
        if rule is not None:
            arrow = f"{found.name} ({type_label(found)}) -> {mapping.local} ({target.value})"
            if direction == "export":
                arrow = f"{mapping.local} ({target.value}) -> {found.name} ({type_label(found)})"
            problems.append(f"{use_where}: {arrow}: {rule}")
    return problems


def _enumeration_problems(
    sync: EnumerationSync, description: ObjectDescription, where: str, kind: str
) -> list[str]:
    return enumeration_fields(sync, description, where, kind)[1]


def enumeration_fields(
    sync: EnumerationSync, description: ObjectDescription | None, where: str, kind: str
) -> tuple[list[FieldDescription | None], list[str]]:
    """Each enumeration's field (None for a global option set) checked against the object's description,
    and the problems: unknown fields, multi-selects and other fields that hold no list of values (S2)."""
    found_fields: list[FieldDescription | None] = []
    problems: list[str] = []
    for index, spec in enumerate(sync.enumerations):
        at = f"{where}.enumerations[{index}]"
        if spec.record_type is not None and not crm_rules(kind).record_types:
            problems.append(f"{at}.record_type: record types are Salesforce's")
        if spec.option_set is not None:
            if not crm_rules(kind).option_sets:
                problems.append(f"{at}.option_set: global option sets are Dataverse's; name a picklist field")
            found_fields.append(None)
            continue
        assert spec.field is not None
        assert description is not None
        found = description.field(spec.field)
        if found is None:
            problems.append(f"{at}: " + unknown_field("field", spec.field, description))
        elif problem := enumeration_field_problem(found):
            problems.append(f"{at}.field: {problem}")
        found_fields.append(found)
    return found_fields, problems


def enumeration_field_problem(found: FieldDescription) -> str | None:
    """Why a field cannot feed an enumeration, or None (SPEC S2: multi-selects are refused)."""
    kind = field_kind(found)
    if kind is FieldKind.MULTI_SELECT:
        return (
            f"{found.name} is a multi-select picklist: multi-select values are not supported by enumeration sync "
            "(map the field onto a text or list attribute instead) (rule S2)"
        )
    if kind not in ENUMERABLE:
        return f"{found.name} is {type_label(found)}, not a picklist, option set or Boolean (rule S2)"
    return None


# ------------------------------------------------------------------------------------- starting mappings
class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as the examples are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


@dataclass(frozen=True)
class _Line:
    remote: str
    local: str
    type: str
    note: str


def _watermark(description: ObjectDescription, kind: str) -> str | None:
    preferred = description.field(DEFAULT_WATERMARK_FIELD[kind])
    if preferred is not None and preferred.crm_type.value == "datetime":
        return preferred.name
    for name in ("LastModifiedDate", "modifiedon"):
        found = description.field(name)
        if found is not None and found.crm_type.value == "datetime":
            return found.name
    return None


def _left_out(found: FieldDescription) -> str | None:
    kind = field_kind(found)
    if kind is FieldKind.COMPOUND:
        parts = ", ".join(found.compound_of) or "its parts"
        return f"compound field: read and written through {parts}"
    if kind is FieldKind.MULTI_SELECT:
        return (
            "multi-select: several values at once; it may land only on a text or list attribute, e.g. "
            f"{{ remote: {found.name}, local: {suggested_local_name(found.name)}, type: list }}"
        )
    if found.raw_type in LEFT_OUT_TYPES:
        return LEFT_OUT_TYPES[found.raw_type]
    return None


def _local_names(fields: list[FieldDescription], email_field: str | None) -> dict[str, str]:
    names: dict[str, str] = {}
    taken: set[str] = set()
    for found in fields:
        if email_field is not None and found.name == email_field:
            name = "email"
        else:
            name = suggested_local_name(found.name)
            if name in RESERVED_LOCAL_NAMES or name == "email":
                name = "crm" + name[:1].upper() + name[1:]
        base, number = name, 2
        while name.lower() in taken:
            name, number = f"{base}{number}", number + 1
        taken.add(name.lower())
        names[found.name] = name[:64]
    return names


def _describe_type(found: FieldDescription) -> str:
    details = [type_label(found)]
    if found.length:
        details.append(str(found.length))
    if not found.nillable:
        details.append("required")
    if found.external_id:
        details.append("external id")
    if found.picklist:
        values = ", ".join(p.label for p in found.picklist[:5]) + (", ..." if len(found.picklist) > 5 else "")
        details.append(f"values: {values}")
    return "; ".join(details)


def starting_mapping(
    connection: SalesforceConnection | DynamicsConnection,
    description: ObjectDescription,
    *,
    operation: Literal["import", "export"] = "import",
    sync_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """A whole configuration file (the connection, one sync) for the object, as YAML with comments.

    Imports: the CRM id and the watermark field as the SPEC says (SystemModstamp / modifiedon), every
    readable field with a suggested local name and its local type. Exports: every writable field.
    Fields left out are listed as comments, with the reason.
    """
    kind = connection.kind
    obj = description.name
    lower = obj.lower()
    sync_id = sync_id or f"{connection.name}-{suggested_local_name(obj).lower()}-{operation}"[:40].strip("-_")
    email_field = next(
        (f.name for f in description.fields.values() if f.name.lower() in ("email", "emailaddress1")), None
    )
    watermark = _watermark(description, kind) if operation == "import" else None
    lines: list[_Line] = []
    left_out: list[tuple[str, str]] = []
    chosen: list[FieldDescription] = []
    for found in description.fields.values():
        if found.name == description.id_field or found.name == watermark:
            continue
        if operation == "export" and not (found.createable or found.updateable):
            continue
        reason = _left_out(found)
        if reason:
            left_out.append((found.name, reason))
            continue
        chosen.append(found)
    names = _local_names(chosen, email_field)
    for found in chosen:
        attribute = attribute_type_of(found)
        local_type = "string" if attribute is AttributeType.ENUMERATION else attribute.value
        note = _describe_type(found)
        if attribute is AttributeType.ENUMERATION:
            note += "; an enumeration: crmsync can sync its values (operation: enumerations)"
        lines.append(_Line(found.name, names[found.name], local_type, note))

    sync: dict[str, Any] = {"id": sync_id, "operation": operation, "connection": connection.name, "object": obj}
    if operation == "import":
        if watermark is not None:
            sync["watermark"] = {"field": watermark}
        if lower in PROFILE_OBJECTS:
            sync["target"] = {"kind": "profiles"}
            if email_field is not None:
                sync["reconciliation"] = {"key": "email"}
        else:
            resource = suggested_local_name(obj).lower().replace("_", "-")[:40] or "resource"
            sync["target"] = {"kind": "resource", "resource": resource}
    else:
        external = next(
            (f for f in chosen if f.external_id and f.crm_type.value == "string" and f.createable), None
        )
        if external is not None:
            sync["write"] = "upsert"
            sync["external_id"] = {"remote": external.name, "local": "profileId"}
            lines = [line for line in lines if line.remote != external.name]
        else:
            sync["write"] = "update"
    document = {
        "version": 1,
        "connections": [connection.model_dump(mode="json", exclude_none=True, exclude_defaults=True)],
        "syncs": [sync],
    }
    head = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120).rstrip("\n")
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"# Starting {operation} of {obj} ({description.label or obj}) from {connection.name}, written by "
        f"`crmsync schema mapping` on {stamp}.",
        f"# The CRM id ({description.id_field}) is always {'imported: it links each record to its local one' if operation == 'import' else 'how a linked record is found'}.",
        "# Rename local attributes, drop what the marketing side does not need, then `crmsync config validate`.",
        head,
        "    fields:",
    ]
    if operation == "export" and "external_id" not in sync:
        out.insert(3, "# No writable external-id field: this export updates linked records only (write: update).")
    width = max((len(f"{{ remote: {x.remote}, local: {x.local}, type: {x.type} }}") for x in lines), default=0)
    for line in lines:
        entry = f"{{ remote: {line.remote}, local: {line.local}, type: {line.type} }}"
        out.append(f"      - {entry.ljust(width)}  # {line.note}")
    if not lines:
        out.append("      []  # nothing to map")
    for name, reason in left_out:
        out.append(f"      # left out: {name}: {reason}")
    return "\n".join(out) + "\n"
