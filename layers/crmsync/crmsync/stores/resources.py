"""The resources store: custom objects imported into the Resources table, keyed by resource name and
CRM id (SPEC I11), and their deletions (SPEC D2)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..domain.conversions import format_local_datetime
from ..domain.reconciliation import latest_per_crm_id
from ..domain.records import CrmDeletion, DeletionResult, LocalRecord
from .dynamo import batch_get, batch_write, deserialize, every_item, serialize, serialize_value
from .profile_items import ApplyResult, now_stamp, page_key, synced_update, update_if


class ResourceStore:
    """Custom objects land in the Resources table, keyed by resource name and CRM id (SPEC I11)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def apply_import(
        self, records: list[LocalRecord], *, resource: str, connection: str, run_id: str
    ) -> ApplyResult:
        result = ApplyResult()
        latest = latest_per_crm_id(records)
        existing = {
            item["sk"]: item
            for item in batch_get(self.client, self.table, [{"pk": resource, "sk": r.crm_id} for r in latest])
        }
        now = now_stamp()
        puts = []
        for record in latest:
            modified = format_local_datetime(record.modified_at)
            stored = existing.get(record.crm_id)
            if stored is not None and stored.get("attrs") == record.attributes and not stored.get("deletedInCrm"):
                result.unchanged += 1
                continue
            if stored is not None and (stored.get("crmModifiedAt") or "") > modified:
                result.unchanged += 1
                continue
            puts.append(
                {
                    "pk": resource,
                    "sk": record.crm_id,
                    "crmId": record.crm_id,
                    "connection": connection,
                    "attrs": record.attributes,
                    "crmModifiedAt": modified,
                    "lastRunId": run_id,
                    "createdAt": stored.get("createdAt", now) if stored else now,
                    "updatedAt": now,
                }
            )
            if stored is None:
                result.created += 1
            else:
                result.updated += 1
        batch_write(self.client, self.table, puts=puts)
        return result

    def mark_deleted(
        self, deletions: Sequence[CrmDeletion], *, resource: str, connection: str, run_id: str
    ) -> DeletionResult:
        """Flag the rows of records deleted in the CRM (`deletedInCrm`, `deletedInCrmAt`); a row never
        imported is counted as unknown."""
        result = DeletionResult()
        latest = {d.crm_id: d for d in deletions}
        existing = {
            item["sk"]: item
            for item in batch_get(self.client, self.table, [{"pk": resource, "sk": i} for i in latest])
        }
        puts = []
        now = now_stamp()
        for crm_id, deletion in latest.items():
            stored = existing.get(crm_id)
            if stored is None or stored.get("connection") != connection:
                result.unknown += 1
            elif stored.get("deletedInCrm"):
                result.already += 1
            else:
                deleted_at = format_local_datetime(deletion.deleted_at)
                flags = {"deletedInCrm": True, "deletedInCrmAt": deleted_at, "lastRunId": run_id, "updatedAt": now}
                puts.append(stored | flags)
                result.marked += 1
        batch_write(self.client, self.table, puts=puts)
        return result

    def remove_deleted(
        self, deletions: Sequence[CrmDeletion], *, resource: str, connection: str
    ) -> DeletionResult:
        """Removal instead of a flag (SPEC D2 `apply: remove`); a row never imported is unknown."""
        result = DeletionResult()
        ids = list(dict.fromkeys(d.crm_id for d in deletions))
        existing = {
            item["sk"]: item
            for item in batch_get(self.client, self.table, [{"pk": resource, "sk": i} for i in ids])
        }
        gone = [i for i in ids if i in existing and existing[i].get("connection") == connection]
        batch_write(self.client, self.table, deletes=[{"pk": resource, "sk": i} for i in gone])
        result.marked = len(gone)
        result.unknown = len(ids) - len(gone)
        return result

    def crm_ids(
        self, resource: str, connection: str, *, after: str | None = None, limit: int = 500
    ) -> tuple[list[str], str | None]:
        """One page of the CRM ids of a resource's rows from this connection, and the next cursor."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :r",
            "FilterExpression": "#c = :c",
            "ProjectionExpression": "pk, sk",
            "ExpressionAttributeNames": {"#c": "connection"},
            "ExpressionAttributeValues": serialize({":r": resource, ":c": connection}),
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = serialize(json.loads(after))
        response = self.client.query(**kwargs)
        ids = [deserialize(item)["sk"] for item in response.get("Items", [])]
        return ids, page_key(response.get("LastEvaluatedKey"))

    # -- two-way (SPEC B1-B2): the marketing side of a custom object ---------------------------------
    def get_many(self, resource: str, crm_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of these CRM records that exist, 100 a call."""
        return batch_get(self.client, self.table, [{"pk": resource, "sk": c} for c in dict.fromkeys(crm_ids)])

    def changed_rows(self, resource: str, connection: str, since: str | None, until: str) -> list[dict[str, Any]]:
        """The rows of a resource from this connection whose `updatedAt` is in [since, until): one query of
        the resource's partition, filtered (a custom object's table is read whole, page by page)."""
        values: dict[str, Any] = {":r": resource, ":c": connection, ":b": until}
        condition = "#c = :c AND updatedAt < :b"
        if since:
            values[":a"] = since
            condition += " AND updatedAt >= :a"
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :r",
            "FilterExpression": condition,
            "ExpressionAttributeNames": {"#c": "connection"},
            "ExpressionAttributeValues": serialize(values),
        }
        return list(every_item(self.client, "query", request))

    def update_local(
        self, resource: str, crm_id: str, changes: dict[str, Any], *, source: str = "marketing"
    ) -> None:
        """A change made on the marketing side to a row: attributes set, each stamped now with its source."""
        self.apply_synced(resource, crm_id, changes, dict.fromkeys(changes, now_stamp()), None, source)

    def apply_synced(
        self,
        resource: str,
        crm_id: str,
        changes: dict[str, Any],
        changed_at: dict[str, str],
        seen: dict[str, str | None] | None,
        source: str,
    ) -> bool:
        """Attributes of a row, each stamped with its change time and source; with `seen` (each attribute's
        change time when a two-way run read it), written only if none changed since - else False."""
        key = serialize({"pk": resource, "sk": crm_id})
        # Rows an import wrote have no per-attribute maps yet: made once, so the write below can set paths
        # in them (DynamoDB refuses a path under a map the same expression creates).
        made = update_if(
            self.client,
            self.table,
            key,
            "SET attrChangedAt = if_not_exists(attrChangedAt, :e), attrSource = if_not_exists(attrSource, :e)",
            "attribute_exists(pk)",
            ExpressionAttributeValues={":e": serialize_value({})},
        )
        if not made:
            return False
        sets, conditions, names, values = synced_update(changes, changed_at, seen, source)
        values[":now"] = serialize_value(now_stamp())
        return update_if(
            self.client,
            self.table,
            key,
            "SET " + ", ".join(["updatedAt = :now", *sets]),
            " AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def get(self, resource: str, crm_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"pk": resource, "sk": crm_id}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def all(self, resource: str) -> list[dict[str, Any]]:
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :r",
            "ExpressionAttributeValues": serialize({":r": resource}),
        }
        return list(every_item(self.client, "query", request))


__all__ = ["ResourceStore"]
