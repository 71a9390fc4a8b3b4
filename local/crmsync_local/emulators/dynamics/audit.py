"""Dataverse auditing: the `audit` table (read-only, `audits` in the Web API) and the switches that fill
it - off by default at the environment, table and column levels, as in a new Dataverse environment.

An audited write adds one `audit` row per create or update of a row: `action`/`operation` (1 create, 2
update), `objecttypecode` (the table's logical name), `_objectid_value`, `_userid_value` (who wrote),
`createdon`, `attributemask` (the changed columns' `ColumnNumber`s, comma-separated) and `changedata`
(the old values, as JSON). The new values are kept next to it for `RetrieveRecordChangeHistory`, which
answers each change as an `AttributeAuditDetail` with `OldValue` and `NewValue`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .metadata import AttributeDef, EntityDef, _entity, _picklist

if TYPE_CHECKING:
    from .store import RecordStore, Row

ACTION_CREATE = 1
ACTION_UPDATE = 2
# Columns a write always touches; Dataverse does not audit them.
_UNAUDITED = {"modifiedon", "modifiedby", "versionnumber", "createdon", "createdby"}


@dataclass
class AuditSettings:
    """The environment's switch (`organization.isauditenabled`); the table and column switches are the
    metadata's `IsAuditEnabled` (`EntityDef.audit_enabled`, off; `AttributeDef.audit_enabled`, on)."""

    environment: bool = False


def audit_entity() -> EntityDef:
    """The `audit` table as the Web API shows it (read-only)."""
    read_only: dict[str, Any] = {"valid_for_create": False, "valid_for_update": False}
    operations = [(1, "Create"), (2, "Update"), (3, "Delete"), (4, "Access")]
    entity = _entity(
        "audit",
        "audits",
        None,
        "Auditing",
        "Audits",
        4567,
        [
            AttributeDef("createdon", "DateTime", display_name="Changed Date", **read_only),
            _picklist("audit", "action", "Event", operations),
            _picklist("audit", "operation", "Operation", operations),
            AttributeDef("objecttypecode", "String", display_name="Entity", max_length=100, **read_only),
            AttributeDef(
                "objectid", "Lookup", display_name="Record", targets=["contact", "lead", "account"], **read_only
            ),
            AttributeDef("userid", "Lookup", display_name="Changed By", targets=["systemuser"], **read_only),
            AttributeDef("attributemask", "Memo", display_name="Changed Field", max_length=2000, **read_only),
            AttributeDef("changedata", "Memo", display_name="Change Data", max_length=2000, **read_only),
        ],
        change_tracking=False,
        ownership="None",
    )
    for attribute in entity.attributes.values():
        attribute.valid_for_create = attribute.valid_for_update = False
    return entity


def organization_entity() -> EntityDef:
    """The `organization` table (one row): here only its name and the environment's auditing switch."""
    return _entity(
        "organization",
        "organizations",
        "name",
        "Organization",
        "Organizations",
        1019,
        [
            AttributeDef("name", "String", display_name="Name", max_length=160),
            AttributeDef("isauditenabled", "Boolean", display_name="Is Auditing Enabled"),
        ],
        change_tracking=False,
        ownership="None",
    )


def column_numbers(entity: EntityDef) -> dict[str, int]:
    """Each column's `ColumnNumber` (its position in the table's metadata, from 1)."""
    return {name: index for index, name in enumerate(entity.attributes, start=1)}


def record_audit(
    store: RecordStore, entity: EntityDef, before: Row | None, after: Row, caller_id: str | None, now_iso: str
) -> None:
    """Append the audit row of one create or update, when auditing covers the changed columns."""
    settings: AuditSettings = store.auditing
    if entity.logical_name == "audit" or not (settings.environment and entity.audit_enabled):
        return
    audit = store.registry.entity("audit")
    if audit is None:
        return
    changed: list[AttributeDef] = []
    for attribute in entity.attributes.values():
        if attribute.logical_name in _UNAUDITED or attribute.is_primary_id:
            continue
        if not attribute.audit_enabled:
            continue
        prop = attribute.property_name
        old = None if before is None else before.get(prop)
        if before is None and after.get(prop) is None:
            continue
        if before is not None and old == after.get(prop):
            continue
        changed.append(attribute)
    if not changed:
        return
    numbers = column_numbers(entity)
    old_values = {a.logical_name: None if before is None else before.get(a.property_name) for a in changed}
    new_values = {a.logical_name: after.get(a.property_name) for a in changed}
    action = ACTION_CREATE if before is None else ACTION_UPDATE
    row: dict[str, Any] = {
        "auditid": str(uuid.uuid4()),
        "createdon": now_iso,
        "action": action,
        "operation": action,
        "objecttypecode": entity.logical_name,
        "_objectid_value": after[entity.primary_id],
        "_objectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": entity.logical_name,
        "_userid_value": caller_id,
        "_userid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
        "attributemask": "," + ",".join(str(numbers[a.logical_name]) for a in changed) + ",",
        "changedata": json.dumps(
            {"changedAttributes": [{"logicalName": k, "oldValue": v} for k, v in old_values.items()]}
        ),
        "_newvalues": new_values,
        "_oldvalues": old_values,
    }
    store.put(audit, row)


def change_history(store: RecordStore, entity: EntityDef, record_id: str, api_url: str) -> dict[str, Any]:
    """`RetrieveRecordChangeHistory`'s answer for one row: its audited changes, oldest first."""
    audit = store.registry.entity("audit")
    rows = []
    if audit is not None:
        rows = [
            r
            for r in store.rows(audit)
            if r["_objectid_value"] == record_id and r["objecttypecode"] == entity.logical_name
        ]
    rows.sort(key=lambda r: (r["createdon"], r.get("versionnumber", 0)))
    details = []
    for row in rows:
        record = {
            k: v for k, v in row.items() if not k.startswith("_newvalues") and not k.startswith("_oldvalues")
        }
        details.append(
            {
                "@odata.type": "#Microsoft.Dynamics.CRM.AttributeAuditDetail",
                "AuditRecord": {"@odata.type": "#Microsoft.Dynamics.CRM.audit", **record},
                "OldValue": {
                    "@odata.type": f"#Microsoft.Dynamics.CRM.{entity.logical_name}",
                    **{k: v for k, v in row["_oldvalues"].items() if v is not None},
                },
                "NewValue": {
                    "@odata.type": f"#Microsoft.Dynamics.CRM.{entity.logical_name}",
                    **{k: v for k, v in row["_newvalues"].items() if v is not None},
                },
            }
        )
    return {
        "@odata.context": f"{api_url}/$metadata#Microsoft.Dynamics.CRM.RetrieveRecordChangeHistoryResponse",
        "AuditDetailCollection": {
            "MoreRecords": False,
            "PagingCookie": None,
            "TotalRecordCount": len(details),
            "AuditDetails": details,
        },
    }
