"""Rows of every table, with the system behaviour Dataverse applies on each write.

A row is a plain dict keyed by Web API property name (`contactid`, `firstname`, `_parentcustomerid_value`),
holding values in wire form (ISO `…Z` strings for date-and-time, `YYYY-MM-DD` for date-only, lowercase
GUIDs). Lookups also keep their target table under `<property>@Microsoft.Dynamics.CRM.lookuplogicalname`.
Rows are replaced, never mutated, so a reader holding a page of rows outside the lock sees a consistent
snapshot. Every write takes the next value of one org-wide counter as the row's `versionnumber` (SQL
rowversion), which is both the ETag and the change-tracking watermark; deletions are logged with their
own version so a delta link can report them. Callers hold the emulator's lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .metadata import ACTIVITY_POINTER, AlternateKeyDef, EntityDef, MetadataRegistry

Row = dict[str, Any]
LOOKUP_TYPE = "@Microsoft.Dynamics.CRM.lookuplogicalname"
FIRST_VERSION = 900_000


@dataclass
class Deletion:
    version: int
    record_id: str
    timestamp: float


@dataclass
class EntityTable:
    rows: dict[str, Row] = field(default_factory=dict)
    indexes: dict[str, dict[tuple[Any, ...], str]] = field(default_factory=dict)
    deletions: list[Deletion] = field(default_factory=list)


def _key_part(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


class RecordStore:
    def __init__(self, registry: MetadataRegistry) -> None:
        self.registry = registry
        self.tables: dict[str, EntityTable] = {}
        self.version = FIRST_VERSION
        self.generation = 0
        self.min_valid_version = 0  # delta tokens below this were expired through the control API
        self._undo: list[Callable[[], None]] | None = None

    # -- tables and indexes ----------------------------------------------------------------------------
    def table(self, entity: EntityDef) -> EntityTable:
        table = self.tables.get(entity.logical_name)
        if table is None:
            table = self.tables[entity.logical_name] = EntityTable()
            table.indexes = {key.schema_name: {} for key in entity.keys}
        return table

    def drop_column(self, logical_name: str, prop: str) -> None:
        """Forget a column's values in every row (the column was deleted or re-created with another type)."""
        table = self.tables.get(logical_name)
        if table is None:
            return
        for row in table.rows.values():
            for key in [k for k in row if k == prop or k.startswith(prop + "@")]:
                del row[key]

    def rebuild_indexes(self, entity: EntityDef) -> None:
        """Re-index after keys change; fails, as Dataverse's key activation does, on duplicate values."""
        table = self.tables.setdefault(entity.logical_name, EntityTable())
        indexes: dict[str, dict[tuple[Any, ...], str]] = {key.schema_name: {} for key in entity.keys}
        for record_id, row in table.rows.items():
            for key in entity.keys:
                value = self.key_value(entity, key, row)
                if value is None:
                    continue
                if value in indexes[key.schema_name]:
                    raise ValueError(f"key {key.schema_name} cannot be activated: duplicate values {value}")
                indexes[key.schema_name][value] = record_id
        table.indexes = indexes

    @staticmethod
    def key_value(entity: EntityDef, key: AlternateKeyDef, row: Row) -> tuple[Any, ...] | None:
        parts = tuple(_key_part(row.get(entity.attributes[name].property_name)) for name in key.attributes)
        return None if any(part is None for part in parts) else parts

    def next_version(self) -> int:
        self.version += 1
        return self.version

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, entity: EntityDef, record_id: str) -> Row | None:
        return self.table(entity).rows.get(record_id.lower())

    def find_by_key(self, entity: EntityDef, key: AlternateKeyDef, values: dict[str, Any]) -> Row | None:
        parts = tuple(_key_part(values[name]) for name in key.attributes)
        record_id = self.table(entity).indexes[key.schema_name].get(parts)
        return None if record_id is None else self.table(entity).rows.get(record_id)

    def rows(self, entity: EntityDef) -> list[Row]:
        return list(self.table(entity).rows.values())

    def primary_name(self, logical_name: str, record_id: str) -> str | None:
        entity = self.registry.entity(logical_name)
        if entity is None or entity.primary_name is None:
            return None
        row = self.get(entity, record_id)
        return None if row is None else row.get(entity.primary_name)

    # -- writes -------------------------------------------------------------------------------------------
    def put(self, entity: EntityDef, row: Row) -> Row:
        """Store a complete row (insert or replace), enforcing alternate-key uniqueness."""
        table = self.table(entity)
        record_id = row[entity.primary_id]
        previous = table.rows.get(record_id)
        new_keys: dict[str, tuple[Any, ...] | None] = {}
        for key in entity.keys:
            value = self.key_value(entity, key, row)
            owner = table.indexes[key.schema_name].get(value) if value is not None else None
            if owner is not None and owner != record_id:
                raise errors.duplicate_key(key.schema_name, key.attributes)
            new_keys[key.schema_name] = value
        self._unindex(entity, table, previous)
        for name, value in new_keys.items():
            if value is not None:
                table.indexes[name][value] = record_id
        table.rows[record_id] = row
        self.generation += 1
        if self._undo is not None:
            self._undo.append(lambda: self._restore(entity, record_id, previous))
        return row

    def remove(self, entity: EntityDef, record_id: str, timestamp: float) -> Row | None:
        table = self.table(entity)
        previous = table.rows.pop(record_id, None)
        if previous is None:
            return None
        self._unindex(entity, table, previous)
        deletion = Deletion(self.next_version(), record_id, timestamp)
        table.deletions.append(deletion)
        self.generation += 1
        if self._undo is not None:

            def undo() -> None:
                table.deletions.remove(deletion)
                self._restore(entity, record_id, previous)

            self._undo.append(undo)
        return previous

    def _unindex(self, entity: EntityDef, table: EntityTable, row: Row | None) -> None:
        if row is None:
            return
        for key in entity.keys:
            value = self.key_value(entity, key, row)
            if value is not None and table.indexes[key.schema_name].get(value) == row[entity.primary_id]:
                del table.indexes[key.schema_name][value]

    def _restore(self, entity: EntityDef, record_id: str, row: Row | None) -> None:
        table = self.table(entity)
        self._unindex(entity, table, table.rows.get(record_id))
        if row is None:
            table.rows.pop(record_id, None)
        else:
            table.rows[record_id] = row
            for key in entity.keys:
                value = self.key_value(entity, key, row)
                if value is not None:
                    table.indexes[key.schema_name][value] = record_id
        self.generation += 1

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing writes for a $batch change set (callers hold the lock throughout)."""
        if self._undo is not None:
            yield
            return
        self._undo = []
        try:
            yield
        except BaseException:
            for undo in reversed(self._undo):
                undo()
            raise
        finally:
            self._undo = None


class RecordWriter:
    """Dataverse's create/update rules on top of the store: ids, system columns, state and status,
    computed full names, required columns."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def create(
        self,
        entity: EntityDef,
        values: Row,
        *,
        caller_id: str | None,
        now_iso: str,
        record_id: str | None = None,
        system: Row | None = None,
    ) -> Row:
        supplied_id = values.pop(entity.primary_id, None)
        record_id = (record_id or supplied_id or str(uuid.uuid4())).lower()
        if self.store.get(entity, record_id) is not None:
            raise errors.duplicate_record()
        row: Row = {entity.primary_id: record_id}
        for prop in entity.boolean_properties:
            row[prop] = False  # BooleanAttributeMetadata.DefaultValue
        row.update(values)
        self._apply_state(entity, row, set(values), creating=True)
        system = system or {}
        row["createdon"] = system.get("createdon") or now_iso
        row["modifiedon"] = system.get("modifiedon") or row["createdon"]
        for user_column in ("createdby", "modifiedby", "ownerid"):
            prop = f"_{user_column}_value"
            if user_column in entity.attributes and row.get(prop) is None and caller_id is not None:
                row[prop] = caller_id
                row[prop + LOOKUP_TYPE] = "systemuser"
        self._finish(entity, row, creating=True)
        stored = self.store.put(entity, row)
        self._pointer(entity, stored)
        return stored

    def update(
        self,
        entity: EntityDef,
        current: Row,
        values: Row,
        *,
        caller_id: str | None,
        now_iso: str,
        system: Row | None = None,
    ) -> Row:
        values.pop(entity.primary_id, None)
        row = dict(current)
        row.update(values)
        self._apply_state(entity, row, set(values), creating=False)
        system = system or {}
        row["modifiedon"] = system.get("modifiedon") or now_iso
        if system.get("createdon"):
            row["createdon"] = system["createdon"]
        if "modifiedby" in entity.attributes and caller_id is not None:
            row["_modifiedby_value"] = caller_id
            row["_modifiedby_value" + LOOKUP_TYPE] = "systemuser"
        self._finish(entity, row, creating=False)
        stored = self.store.put(entity, row)
        self._pointer(entity, stored)
        return stored

    def delete(self, entity: EntityDef, record_id: str, timestamp: float) -> Row | None:
        if entity.is_activity:
            pointer = self.store.registry.entity(ACTIVITY_POINTER)
            if pointer is not None and self.store.get(pointer, record_id) is not None:
                self.store.remove(pointer, record_id, timestamp)
        return self.store.remove(entity, record_id, timestamp)

    def _pointer(self, entity: EntityDef, row: Row) -> None:
        """An activity is also an `activitypointer` row (what a timeline lists), with its type code."""
        if not entity.is_activity:
            return
        pointer = self.store.registry.entity(ACTIVITY_POINTER)
        if pointer is None:
            return
        shared = {k: v for k, v in row.items() if k in pointer.properties or k.endswith(LOOKUP_TYPE)}
        self.store.put(pointer, {**shared, "activitytypecode": entity.logical_name})

    def _finish(self, entity: EntityDef, row: Row, *, creating: bool) -> None:
        if "fullname" in entity.attributes and (
            "firstname" in entity.attributes or "lastname" in entity.attributes
        ):
            parts = [row.get("firstname"), row.get("lastname")]
            row["fullname"] = " ".join(p for p in parts if p) or None
        for attribute in entity.system_required:
            if row.get(attribute.property_name) is None and (creating or attribute.property_name in row):
                if attribute.logical_name == "ownerid" and creating:
                    continue  # no caller (control API seeding): Dataverse would pick the calling user
                raise errors.attribute_cannot_be_null(attribute.logical_name)
        row["versionnumber"] = self.store.next_version()

    @staticmethod
    def _apply_state(entity: EntityDef, row: Row, changed: set[str], *, creating: bool) -> None:
        state_attr = entity.attributes.get("statecode")
        status_attr = entity.attributes.get("statuscode")
        if (
            state_attr is None
            or status_attr is None
            or state_attr.option_set is None
            or status_attr.option_set is None
        ):
            return
        states = {o.value: o for o in state_attr.option_set.options}
        statuses = {o.value: o for o in status_attr.option_set.options}
        if "statecode" in changed and row.get("statecode") is None:
            raise errors.attribute_cannot_be_null("statecode")
        if creating and row.get("statecode") is None:
            row["statecode"] = 0
        status = row.get("statuscode")
        if "statuscode" in changed and "statecode" not in changed and status in statuses:
            row["statecode"] = statuses[status].state
        elif ("statecode" in changed or creating) and ("statuscode" not in changed or status is None):
            row["statuscode"] = states[row["statecode"]].default_status
        status_option = statuses.get(row["statuscode"])
        if status_option is None or status_option.state != row["statecode"]:
            state_name = states[row["statecode"]].label
            raise errors.invalid_value(
                f"{row['statuscode']} is not a valid status code for state code "
                f"{entity.logical_name.capitalize()}State.{state_name} on {entity.logical_name} with Id "
                f"{row[entity.primary_id]}."
            )
