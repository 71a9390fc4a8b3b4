"""The org's records: one table per object, the recycle bin and delete log, unique indexes, and the
validated write path shared by REST, sObject Collections and Bulk API 2.0 (plus the control API's
unvalidated back door).

Callers hold the emulator's lock; a `Journal` records before-images so an allOrNone request can be
rolled back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .errors import RecordError, entity_is_deleted, invalid_cross_reference
from .ids import IdGenerator, normalize_id
from .schema import STRING_TYPES, FieldDef, ObjectDef, Schema
from .values import typed_for_control

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_SYSTEM_STAMPS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")
_MISSING = object()


class RecordFailure(Exception):
    """A record-level failure; `missing` marks "no such record" (REST answers 404 for it)."""

    def __init__(self, *errors: RecordError, missing: bool = False) -> None:
        super().__init__(errors[0].message if errors else "record failure")
        self.errors = list(errors)
        self.missing = missing


class MultipleMatches(Exception):
    """An upsert's external id matched several records (REST answers 300 with their URLs)."""

    def __init__(self, definition: ObjectDef, field_name: str, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.definition = definition
        self.field_name = field_name
        self.ids = ids

    def as_record_error(self) -> RecordError:
        return RecordError(
            "DUPLICATE_EXTERNAL_ID",
            f"{self.field_name}: more than one record found for external id field: [{', '.join(self.ids)}]",
            [self.field_name],
        )


@dataclass
class Context:
    """Who writes and when: every write stamps LastModifiedById/SystemModstamp from these."""

    user_id: str
    now: datetime
    journal: list[tuple[Table, str, Any, Any]] | None = None


@dataclass
class Table:
    definition: ObjectDef
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # id -> deletedDate for every deleted record still inside the retention window (recycle bin and
    # hard-deleted ones alike); getDeleted reads it.
    delete_log: dict[str, datetime] = field(default_factory=dict)
    # unique / external-id field -> normalized value -> ids of live records holding it
    index: dict[str, dict[Any, set[str]]] = field(default_factory=dict)
    _indexed: list[FieldDef] = field(default_factory=list, repr=False)
    _indexed_for: int = -1

    def indexed_fields(self) -> list[FieldDef]:
        """Unique and external-id fields; recomputed only when the object gains fields at run time."""
        fields = self.definition.fields
        if self._indexed_for != len(fields):
            self._indexed = [f for f in fields.values() if f.unique or f.external_id]
            self._indexed_for = len(fields)
        return self._indexed

    def live(self) -> Iterator[dict[str, Any]]:
        return (r for r in self.records.values() if not r.get("IsDeleted"))


def index_key(definition: FieldDef, value: Any) -> Any:
    if isinstance(value, str) and not definition.case_sensitive:
        return value.casefold()
    return value


class Store:
    def __init__(self, schema: Schema, ids: IdGenerator) -> None:
        self.schema = schema
        self.ids = ids
        self.tables: dict[str, Table] = {}
        self._last_purge: datetime | None = None

    # -- lookup --------------------------------------------------------------------------------------
    def table(self, definition: ObjectDef) -> Table:
        table = self.tables.get(definition.name)
        if table is None:
            table = self.tables[definition.name] = Table(definition)
        return table

    def locate(self, record_id: str) -> tuple[Table, dict[str, Any]] | None:
        """The table and record of a normalized id, deleted ones included."""
        definition = self.schema.by_prefix(record_id[:3])
        if definition is None:
            return None
        table = self.table(definition)
        record = table.records.get(record_id)
        return (table, record) if record is not None else None

    def find_by_field(self, table: Table, field_def: FieldDef, value: Any) -> list[str]:
        """Live records whose unique/external-id field equals `value` (case-insensitive unless not)."""
        if field_def.name == "Id":
            record = table.records.get(value)
            return [value] if record is not None and not record.get("IsDeleted") else []
        bucket = table.index.get(field_def.name, {}).get(index_key(field_def, value), set())
        return sorted(bucket)

    def drop_field(self, definition: ObjectDef, field_name: str) -> None:
        """Forget a field's values (it was deleted, or changed type: Salesforce clears what cannot convert)."""
        table = self.table(definition)
        table.index.pop(field_name, None)
        for record in table.records.values():
            record.pop(field_name, None)

    # -- indexes -------------------------------------------------------------------------------------
    def _index(self, table: Table, record_id: str, record: dict[str, Any]) -> None:
        if record.get("IsDeleted"):
            return
        for field_def in table.indexed_fields():
            value = record.get(field_def.name)
            if value is not None:
                table.index.setdefault(field_def.name, {}).setdefault(index_key(field_def, value), set()).add(
                    record_id
                )

    def _unindex(self, table: Table, record_id: str, record: dict[str, Any]) -> None:
        for field_def in table.indexed_fields():
            value = record.get(field_def.name)
            if value is None:
                continue
            bucket = table.index.get(field_def.name, {}).get(index_key(field_def, value))
            if bucket is not None:
                bucket.discard(record_id)

    def _journal(self, ctx: Context, table: Table, record_id: str) -> None:
        if ctx.journal is not None:
            before = table.records.get(record_id)
            ctx.journal.append(
                (
                    table,
                    record_id,
                    dict(before) if before is not None else None,
                    table.delete_log.get(record_id, _MISSING),
                )
            )

    def rollback(self, journal: list[tuple[Table, str, Any, Any]]) -> None:
        """Restore every before-image, newest first (allOrNone)."""
        for table, record_id, before, logged in reversed(journal):
            current = table.records.get(record_id)
            if current is not None:
                self._unindex(table, record_id, current)
            if before is None:
                table.records.pop(record_id, None)
            else:
                table.records[record_id] = before
                self._index(table, record_id, before)
            if logged is _MISSING:
                table.delete_log.pop(record_id, None)
            else:
                table.delete_log[record_id] = logged
        journal.clear()

    # -- validated writes ------------------------------------------------------------------------------
    def insert(self, definition: ObjectDef, values: dict[str, Any], ctx: Context) -> str:
        """Create a record from typed values keyed by canonical field names; returns its id."""
        if "Id" in values:
            raise RecordFailure(
                RecordError("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
            )
        if not definition.createable:
            raise RecordFailure(RecordError("INVALID_TYPE_FOR_OPERATION", "entity type cannot be inserted"))
        table = self.table(definition)
        self._check_access(definition, values, "createable")
        record = self._defaults(definition, ctx)
        errors = self._check_values(table, definition, values, None)
        missing = [
            f.name
            for f in definition.fields.values()
            if f.required and values.get(f.name, record.get(f.name)) is None
        ]
        if missing:
            errors.insert(
                0,
                RecordError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                ),
            )
        if errors:
            raise RecordFailure(*errors)
        for name, value in values.items():
            if value is None:
                record.pop(name, None)
            else:
                record[name] = value
        record_id = self.ids.next(definition.key_prefix)
        record["Id"] = record_id
        self._derive(definition, record)
        self._journal(ctx, table, record_id)
        table.records[record_id] = record
        self._index(table, record_id, record)
        return record_id

    def update(self, definition: ObjectDef, record_id: str, values: dict[str, Any], ctx: Context) -> None:
        table, record = self._existing(definition, record_id)
        values = {k: v for k, v in values.items() if k != "Id"}
        self._check_access(definition, values, "updateable")
        errors = self._check_values(table, definition, values, record_id)
        missing = [
            name
            for name, value in values.items()
            if value is None and not definition.fields[name].nillable and definition.fields[name].type != "boolean"
        ]
        if missing:
            errors.insert(
                0,
                RecordError(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
                ),
            )
        if errors:
            raise RecordFailure(*errors)
        self._journal(ctx, table, record_id)
        self._unindex(table, record_id, record)
        for name, value in values.items():
            if value is None:
                record.pop(name, None)
            else:
                record[name] = value
        record["LastModifiedDate"] = record["SystemModstamp"] = ctx.now
        record["LastModifiedById"] = ctx.user_id
        self._derive(definition, record)
        self._index(table, record_id, record)

    def upsert(
        self, definition: ObjectDef, field_def: FieldDef, key: Any, values: dict[str, Any], ctx: Context
    ) -> tuple[str, bool]:
        """Insert or update by an external id (or Id); returns (id, created)."""
        table = self.table(definition)
        if key is None or key == "":
            raise RecordFailure(
                RecordError("MISSING_ARGUMENT", f"{field_def.name} not specified", [field_def.name])
            )
        if field_def.name == "Id":
            record_id = normalize_id(str(key))
            if record_id is None or record_id[:3] != definition.key_prefix:
                raise RecordFailure(
                    RecordError("MALFORMED_ID", f"Record ID: id value of incorrect type: {key}", ["Id"])
                )
            self.update(definition, record_id, values, ctx)
            return record_id, False
        matches = self.find_by_field(table, field_def, key)
        if len(matches) > 1:
            raise MultipleMatches(definition, field_def.name, matches)
        values = {k: v for k, v in values.items() if k != field_def.name}
        if matches:
            self.update(definition, matches[0], values, ctx)
            return matches[0], False
        return self.insert(definition, {**values, field_def.name: key}, ctx), True

    def delete(
        self, record_id: str, ctx: Context, *, hard: bool = False, definition: ObjectDef | None = None
    ) -> None:
        located = self.locate(record_id)
        if located is None or (definition is not None and located[0].definition is not definition):
            raise RecordFailure(invalid_cross_reference(), missing=True)
        table, record = located
        if not table.definition.deletable:
            raise RecordFailure(RecordError("INVALID_TYPE_FOR_OPERATION", "entity type cannot be deleted"))
        if record.get("IsDeleted") and not hard:
            raise RecordFailure(entity_is_deleted())
        self._journal(ctx, table, record_id)
        self._unindex(table, record_id, record)
        if hard:
            table.records.pop(record_id)
            table.delete_log.setdefault(record_id, ctx.now)
            return
        record["IsDeleted"] = True
        record["LastModifiedDate"] = record["SystemModstamp"] = ctx.now
        record["LastModifiedById"] = ctx.user_id
        table.delete_log[record_id] = ctx.now

    def _existing(self, definition: ObjectDef, record_id: str) -> tuple[Table, dict[str, Any]]:
        table = self.table(definition)
        record = table.records.get(record_id)
        if record is None:
            raise RecordFailure(invalid_cross_reference(), missing=True)
        if record.get("IsDeleted"):
            raise RecordFailure(entity_is_deleted())
        return table, record

    # -- validation ------------------------------------------------------------------------------------
    @staticmethod
    def _check_access(definition: ObjectDef, values: dict[str, Any], flag: str) -> None:
        refused = [name for name in values if not getattr(definition.fields[name], flag)]
        if refused:
            raise RecordFailure(
                RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(refused)}. Please check the security settings "
                    "of this field and verify that it is read/write for your profile or permission set.",
                    refused,
                )
            )

    def _check_values(
        self, table: Table, definition: ObjectDef, values: dict[str, Any], record_id: str | None
    ) -> list[RecordError]:
        errors: list[RecordError] = []
        for name, value in list(values.items()):
            field_def = definition.fields[name]
            if value is None:
                if field_def.type == "boolean":
                    errors.append(
                        RecordError(
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            f"{field_def.label}: value not of required type: ",
                            [name],
                        )
                    )
                continue
            if field_def.type in STRING_TYPES and value == "":
                values[name] = None  # Salesforce stores empty text as null
                continue
            error = self._check_value(field_def, value)
            if error is None and field_def.type == "reference":
                values[name], error = self._check_reference(field_def, value)
            if error is not None:
                errors.append(error)
                continue
            if field_def.unique and value is not None:
                holders = table.index.get(name, {}).get(index_key(field_def, values[name]), set()) - {record_id}
                if holders:
                    errors.append(
                        RecordError(
                            "DUPLICATE_VALUE",
                            f"duplicate value found: {name} duplicates value on record with id: {min(holders)}",
                        )
                    )
        return errors

    @staticmethod
    def _check_value(field_def: FieldDef, value: Any) -> RecordError | None:
        kind = field_def.type
        if kind in STRING_TYPES and kind not in ("reference", "id") and len(value) > field_def.length:
            shown = value if len(value) <= 100 else value[:100] + "..."
            return RecordError(
                "STRING_TOO_LONG",
                f"{field_def.label}: data value too large: {shown} (max length={field_def.length})",
                [field_def.name],
            )
        if kind == "email" and not _EMAIL.match(value):
            return RecordError(
                "INVALID_EMAIL_ADDRESS", f"{field_def.label}: invalid email address: {value}", [field_def.name]
            )
        if kind == "picklist" and field_def.restricted_picklist and value not in field_def.picklist_values:
            return RecordError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{field_def.label}: bad value for restricted picklist field: {value}",
                [field_def.name],
            )
        return None

    def _check_reference(self, field_def: FieldDef, value: str) -> tuple[Any, RecordError | None]:
        record_id = normalize_id(value)
        if record_id is None:
            return value, RecordError(
                "MALFORMED_ID", f"{field_def.label}: id value of incorrect type: {value}", [field_def.name]
            )
        targets = [self.schema.get(name) for name in field_def.reference_to]
        if not any(t is not None and t.key_prefix == record_id[:3] for t in targets):
            return value, RecordError(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{field_def.label}: id value of incorrect type: {value}",
                [field_def.name],
            )
        located = self.locate(record_id)
        if located is None:
            if field_def.name == "OwnerId":
                return value, RecordError(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field_def.name]
                )
            return value, RecordError(
                "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", "insufficient access rights on cross-reference id"
            )
        if located[1].get("IsDeleted"):
            return value, entity_is_deleted()
        return record_id, None

    # -- derived and default values -------------------------------------------------------------------------
    def _defaults(self, definition: ObjectDef, ctx: Context) -> dict[str, Any]:
        record: dict[str, Any] = {
            "CreatedDate": ctx.now,
            "CreatedById": ctx.user_id,
            "LastModifiedDate": ctx.now,
            "LastModifiedById": ctx.user_id,
            "SystemModstamp": ctx.now,
        }
        if "OwnerId" in definition.fields:
            record["OwnerId"] = ctx.user_id
        if definition.has_recycle_bin:
            record["IsDeleted"] = False
        for field_def in definition.fields.values():
            if field_def.default_value is not None and field_def.name not in record:
                record[field_def.name] = field_def.default_value
        return record

    @staticmethod
    def _derive(definition: ObjectDef, record: dict[str, Any]) -> None:
        if definition.compound_name is not None:
            first, last = (record.get(name) for name in definition.compound_name)
            name = " ".join(part for part in (first, last) if part)
            if name:
                record["Name"] = name
            else:
                record.pop("Name", None)
        elif (
            "Name" in definition.fields
            and definition.fields["Name"].defaulted_on_create
            and not record.get("Name")
        ):
            record["Name"] = record["Id"]  # custom objects: a record saved without a name is named by its id

    # -- recycle-bin retention ----------------------------------------------------------------------------
    def purge_expired(self, now: datetime, retention: timedelta, *, force: bool = False) -> None:
        """Physically remove deleted records older than the retention window (the recycle-bin purge)."""
        if not force and self._last_purge is not None and now - self._last_purge < timedelta(minutes=1):
            return
        self._last_purge = now
        horizon = now - retention
        for table in self.tables.values():
            expired = [record_id for record_id, when in table.delete_log.items() if when < horizon]
            for record_id in expired:
                del table.delete_log[record_id]
                record = table.records.get(record_id)
                if record is not None and record.get("IsDeleted"):
                    del table.records[record_id]

    # -- the control API's back door ------------------------------------------------------------------------
    def seed(self, definition: ObjectDef, rows: Iterable[dict[str, Any]], ctx: Context) -> list[str]:
        """Create or update records with no validation beyond value types; timestamps may be given."""
        table = self.table(definition)
        fields = definition.fields
        lookup = definition.field
        ids: list[str] = []
        for position, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(f"record {position} is not a JSON object")
            values: dict[str, Any] = {}
            deleted_date: datetime | None = None
            for raw_name, raw_value in row.items():
                if raw_name == "attributes":
                    continue
                if raw_name == "deletedDate":
                    deleted_date = typed_for_control(fields["CreatedDate"], raw_value)
                    continue
                field_def = lookup(raw_name)
                if field_def is None:
                    raise ValueError(f"record {position}: no field {raw_name!r} on {definition.name}")
                value = typed_for_control(field_def, raw_value)
                if field_def.type in ("reference", "id") and value is not None:
                    normalized = normalize_id(value)
                    if normalized is None:
                        raise ValueError(f"record {position}: {field_def.name} is not a Salesforce id: {value!r}")
                    value = normalized
                values[field_def.name] = value
            record_id = values.pop("Id", None)
            existing = table.records.get(record_id) if record_id else None
            if record_id and record_id[:3] != definition.key_prefix:
                raise ValueError(f"record {position}: id {record_id} is not a {definition.name} id")
            if existing is None:
                record = self._defaults(definition, ctx)
                record["Id"] = record_id = record_id or self.ids.next(definition.key_prefix)
                if "CreatedDate" in values and "LastModifiedDate" not in values:
                    values["LastModifiedDate"] = values["CreatedDate"]
            else:
                record = existing
                self._unindex(table, record_id, record)
                record["LastModifiedDate"] = ctx.now
                record["LastModifiedById"] = ctx.user_id
            if "SystemModstamp" not in values:
                values["SystemModstamp"] = values.get("LastModifiedDate", ctx.now)
            for name, value in values.items():
                if value is None:
                    record.pop(name, None)
                else:
                    record[name] = value
            self._derive(definition, record)
            if record.get("IsDeleted"):
                table.delete_log[record_id] = deleted_date or table.delete_log.get(record_id) or ctx.now
            elif record_id in table.delete_log and definition.has_recycle_bin:
                del table.delete_log[record_id]  # seeded back to life (an undelete)
            table.records[record_id] = record
            self._index(table, record_id, record)
            ids.append(record_id)
        return ids


__all__ = ["Context", "MultipleMatches", "RecordFailure", "Store", "Table", "index_key"]
