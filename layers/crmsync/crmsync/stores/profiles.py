"""The marketing profile store (DESIGN §5) and the resources store for custom objects (SPEC I11).

Profiles table items:
- `P#<profileId>`: the profile — attributes, links to CRM records (`externalIds`), the CRM's
  last-modified time per link, per-attribute change times, a version for optimistic concurrency.
- `X#<connection>#<object>#<crmId>` -> profileId: lookup by CRM id, created with a condition so one CRM
  record can never get two profiles. It carries `crmLink` (`<connection>:<object>`), the partition key of
  the `CrmLinkIndex` index, so the CRM ids of one link can be listed (deletion checks).
- `K#<attribute>#<normalised value>` -> profileId: lookup by the unique key, conditional as well.

Reads are `BatchGetItem` (100 keys a call); writes are `TransactWriteItems` (100 actions a call)
grouped per record, so a record's profile and its lookups are written together or not at all.

A record deleted in the CRM flags its profile `deletedInCrm` with `deletedInCrmAt` (SPEC D2, the
default); the profile and its lookups stay, so a record restored in the CRM finds it again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..domain.conversions import format_local_datetime
from ..domain.reconciliation import (
    Create,
    ReconciliationPlan,
    StoredProfile,
    Update,
    latest_per_crm_id,
    normalize_key,
    reconcile,
)
from ..domain.records import CrmDeletion, DeletionResult, LocalRecord, RecordRejected
from ..errors import StoreThrottled
from .dynamo import (
    TRANSACTION_LIMIT,
    TransactionConflict,
    batch_get,
    batch_write,
    deserialize,
    serialize,
    serialize_value,
    transact_write,
)

MAX_RECONCILE_ROUNDS = 4
CRM_LINK_INDEX = "CrmLinkIndex"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def link_name(connection: str, object_name: str) -> str:
    return f"{connection}:{object_name}"


def crm_id_key(connection: str, object_name: str, crm_id: str) -> str:
    return f"X#{connection}#{object_name}#{crm_id}"


def crm_id_item(connection: str, object_name: str, crm_id: str, profile_id: str) -> dict[str, Any]:
    return {
        "pk": crm_id_key(connection, object_name, crm_id),
        "kind": "crm-id",
        "profileId": profile_id,
        "crmLink": link_name(connection, object_name),
    }


def _page_key(last: dict[str, Any] | None) -> str | None:
    """A DynamoDB LastEvaluatedKey as an opaque cursor a state machine can carry."""
    return json.dumps(deserialize(last), separators=(",", ":")) if last else None


def unique_key(attribute: str, normalized: str) -> str:
    value = (
        normalized
        if len(normalized.encode()) <= 512
        else "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()
    )
    return f"K#{attribute}#{value}"


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[tuple[LocalRecord, RecordRejected]] = field(default_factory=list)
    profile_ids: dict[str, str] = field(default_factory=dict)


def _stored(item: dict[str, Any]) -> StoredProfile:
    return StoredProfile(
        profile_id=item["profileId"],
        attributes=dict(item.get("attrs") or {}),
        links=dict(item.get("externalIds") or {}),
        crm_modified_at=dict(item.get("crmModifiedAt") or {}),
        version=int(item.get("version", 0)),
        key_value=item.get("keyValue"),
        deleted_in_crm=bool(item.get("deletedInCrm", False)),
    )


class ProfileStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    # -- reads -------------------------------------------------------------------------------------
    def get(self, profile_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"pk": f"P#{profile_id}"}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def find_by_crm_id(self, connection: str, object_name: str, crm_id: str) -> dict[str, Any] | None:
        found = batch_get(self.client, self.table, [{"pk": crm_id_key(connection, object_name, crm_id)}])
        return self.get(found[0]["profileId"]) if found else None

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        items = batch_get(self.client, self.table, [{"pk": k} for k in keys])
        return {item["pk"]: item["profileId"] for item in items}

    def _profiles(self, profile_ids: set[str]) -> dict[str, StoredProfile]:
        items = batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in profile_ids])
        return {item["profileId"]: _stored(item) for item in items}

    def scan_profiles(self) -> list[dict[str, Any]]:
        """Every profile (tests, demo and small tables only)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(pk, :p)",
            "ExpressionAttributeValues": serialize({":p": "P#"}),
        }
        while True:
            response = self.client.scan(**kwargs)
            items.extend(deserialize(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def create_local(
        self, attributes: dict[str, Any], *, key_attribute: str | None = None, case_insensitive: bool = True
    ) -> str:
        """A profile born on the marketing side (a form, a CSV), with its unique-key lookup."""
        profile_id, now = str(uuid.uuid4()), _now()
        key = (
            normalize_key(attributes.get(key_attribute), case_insensitive=case_insensitive)
            if key_attribute
            else None
        )
        item: dict[str, Any] = {
            "pk": f"P#{profile_id}",
            "kind": "profile",
            "profileId": profile_id,
            "attrs": attributes,
            "externalIds": {},
            "crmModifiedAt": {},
            "attrChangedAt": dict.fromkeys(attributes, now),
            "attrSource": dict.fromkeys(attributes, "marketing"),
            "version": 1,
            "createdAt": now,
            "updatedAt": now,
        }
        absent = "attribute_not_exists(pk)"
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": serialize(item | ({"keyValue": key} if key else {})),
                    "ConditionExpression": absent,
                }
            }
        ]
        if key is not None and key_attribute:
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "ConditionExpression": absent,
                        "Item": serialize(
                            {"pk": unique_key(key_attribute, key), "kind": "unique-key", "profileId": profile_id}
                        ),
                    }
                }
            )
        transact_write(self.client, actions)
        return profile_id

    # -- import ------------------------------------------------------------------------------------
    def apply_import(
        self,
        records: list[LocalRecord],
        *,
        connection: str,
        object_name: str,
        key_attribute: str | None,
        case_insensitive: bool,
        run_id: str,
    ) -> ApplyResult:
        """Reconcile and write a batch of imported records; idempotent, safe against concurrent runs."""
        result = ApplyResult()
        pending = records
        for _ in range(MAX_RECONCILE_ROUNDS):
            if not pending:
                return result
            plan = self._plan(pending, connection, object_name, key_attribute, case_insensitive)
            result.unchanged += len(plan.unchanged)
            result.rejects.extend(plan.rejects)
            pending = self._execute(plan, connection, object_name, key_attribute, run_id, result)
        if pending:
            raise StoreThrottled(f"{len(pending)} records kept conflicting with concurrent writers; page retried")
        return result

    def _plan(
        self,
        records: list[LocalRecord],
        connection: str,
        object_name: str,
        key_attribute: str | None,
        case_insensitive: bool,
    ) -> ReconciliationPlan:
        id_keys = [crm_id_key(connection, object_name, r.crm_id) for r in records]
        unique_keys: dict[str, str] = {}
        if key_attribute:
            for record in records:
                normalized = normalize_key(record.attributes.get(key_attribute), case_insensitive=case_insensitive)
                if normalized is not None:
                    unique_keys[unique_key(key_attribute, normalized)] = normalized
        lookups = self._lookup(id_keys + list(unique_keys))
        profiles = self._profiles(set(lookups.values()))
        by_crm_id = {
            r.crm_id: profiles[lookups[k]]
            for r, k in zip(records, id_keys, strict=True)
            if k in lookups and lookups[k] in profiles
        }
        by_key = {
            normalized: profiles[lookups[k]]
            for k, normalized in unique_keys.items()
            if k in lookups and lookups[k] in profiles
        }
        return reconcile(
            records,
            link=link_name(connection, object_name),
            key_attribute=key_attribute,
            case_insensitive=case_insensitive,
            by_crm_id=by_crm_id,
            by_key=by_key,
            new_profile_id=lambda: str(uuid.uuid4()),
        )

    def _create_actions(
        self, create: Create, connection: str, object_name: str, key_attribute: str | None, run_id: str
    ) -> list[dict[str, Any]]:
        record, now, link = create.record, _now(), link_name(connection, object_name)
        modified = format_local_datetime(record.modified_at)
        profile = {
            "pk": f"P#{create.profile_id}",
            "kind": "profile",
            "profileId": create.profile_id,
            "attrs": record.attributes,
            "externalId": record.crm_id,
            "externalIds": {link: record.crm_id},
            "crmModifiedAt": {link: modified},
            "attrChangedAt": dict.fromkeys(record.attributes, modified),
            "attrSource": dict.fromkeys(record.attributes, f"crm:{connection}"),
            "version": 1,
            "createdAt": now,
            "updatedAt": now,
            "lastRunId": run_id,
        }
        if create.key is not None:
            profile["keyValue"] = create.key
        absent = "attribute_not_exists(pk)"
        actions = [
            {"Put": {"TableName": self.table, "Item": serialize(profile), "ConditionExpression": absent}},
            {
                "Put": {
                    "TableName": self.table,
                    "ConditionExpression": absent,
                    "Item": serialize(crm_id_item(connection, object_name, record.crm_id, create.profile_id)),
                }
            },
        ]
        if create.key is not None and key_attribute:
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "ConditionExpression": absent,
                        "Item": serialize(
                            {
                                "pk": unique_key(key_attribute, create.key),
                                "kind": "unique-key",
                                "profileId": create.profile_id,
                            }
                        ),
                    }
                }
            )
        return actions

    def _update_actions(
        self, update: Update, connection: str, object_name: str, key_attribute: str | None, run_id: str
    ) -> list[dict[str, Any]]:
        record, profile, link = update.record, update.profile, link_name(connection, object_name)
        modified = format_local_datetime(record.modified_at)
        names: dict[str, str] = {"#link": link}
        values: dict[str, Any] = {
            ":ver": serialize_value(profile.version),
            ":one": serialize_value(1),
            ":now": serialize_value(_now()),
            ":mod": serialize_value(modified),
            ":cid": serialize_value(record.crm_id),
            ":run": serialize_value(run_id),
            ":src": serialize_value(f"crm:{connection}"),
        }
        sets = [
            "externalId = if_not_exists(externalId, :cid)",
            "version = version + :one",
            "updatedAt = :now",
            "lastRunId = :run",
            "crmModifiedAt.#link = :mod",
            "externalIds.#link = :cid",
        ]
        for index, (name, value) in enumerate(update.changed.items()):
            names[f"#a{index}"] = name
            values[f":a{index}"] = serialize_value(value)
            sets += [
                f"attrs.#a{index} = :a{index}",
                f"attrChangedAt.#a{index} = :mod",
                f"attrSource.#a{index} = :src",
            ]
        removes = []
        if update.key_changed:
            if update.key is None:
                removes.append("keyValue")
            else:
                sets.append("keyValue = :key")
                values[":key"] = serialize_value(update.key)
        if update.undelete:
            removes += ["deletedInCrm", "deletedInCrmAt"]
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize({"pk": f"P#{profile.profile_id}"}),
                    "UpdateExpression": expression,
                    "ConditionExpression": "version = :ver",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        if update.relink:
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": serialize(crm_id_item(connection, object_name, record.crm_id, profile.profile_id)),
                        "ConditionExpression": "attribute_not_exists(pk) OR profileId = :pid",
                        "ExpressionAttributeValues": serialize({":pid": profile.profile_id}),
                    }
                }
            )
        if update.key_changed and key_attribute:
            if update.key is not None:
                actions.append(
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": serialize(
                                {
                                    "pk": unique_key(key_attribute, update.key),
                                    "kind": "unique-key",
                                    "profileId": profile.profile_id,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(pk) OR profileId = :pid",
                            "ExpressionAttributeValues": serialize({":pid": profile.profile_id}),
                        }
                    }
                )
            if profile.key_value is not None:
                actions.append(
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": serialize({"pk": unique_key(key_attribute, profile.key_value)}),
                            "ConditionExpression": "attribute_not_exists(pk) OR profileId = :pid",
                            "ExpressionAttributeValues": serialize({":pid": profile.profile_id}),
                        }
                    }
                )
        return actions

    def _execute(
        self,
        plan: ReconciliationPlan,
        connection: str,
        object_name: str,
        key_attribute: str | None,
        run_id: str,
        result: ApplyResult,
    ) -> list[LocalRecord]:
        """Write the plan; returns the records whose transaction hit a concurrent writer (to re-plan)."""
        groups: list[tuple[Create | Update, list[dict[str, Any]]]] = [
            (c, self._create_actions(c, connection, object_name, key_attribute, run_id)) for c in plan.creates
        ] + [(u, self._update_actions(u, connection, object_name, key_attribute, run_id)) for u in plan.updates]
        conflicted: list[LocalRecord] = []
        batch: list[tuple[Create | Update, list[dict[str, Any]]]] = []

        def flush() -> None:
            if not batch:
                return
            actions = [a for _, group in batch for a in group]
            try:
                transact_write(self.client, actions)
            except TransactionConflict:
                conflicted.extend(decision.record for decision, _ in batch)
            else:
                for decision, _ in batch:
                    if isinstance(decision, Create):
                        result.created += 1
                        result.profile_ids[decision.record.crm_id] = decision.profile_id
                    else:
                        result.updated += 1
                        result.profile_ids[decision.record.crm_id] = decision.profile.profile_id
            batch.clear()

        size = 0
        for decision, group in groups:
            if size + len(group) > TRANSACTION_LIMIT:
                flush()
                size = 0
            batch.append((decision, group))
            size += len(group)
        flush()
        return conflicted

    # -- deletions (SPEC D1, D2) ---------------------------------------------------------------------
    def mark_deleted(
        self, deletions: Sequence[CrmDeletion], *, connection: str, object_name: str, run_id: str
    ) -> DeletionResult:
        """Flag the profiles of records deleted in the CRM; idempotent, whichever CRM reported them.

        A deletion of a record never imported - or whose profile is now linked to another record of
        that object - is counted as unknown, not an error.
        """
        result = DeletionResult()
        link = link_name(connection, object_name)
        pending = {d.crm_id: d for d in deletions}
        for _ in range(MAX_RECONCILE_ROUNDS):
            if not pending:
                return result
            keys = {crm_id: crm_id_key(connection, object_name, crm_id) for crm_id in pending}
            lookups = self._lookup(list(keys.values()))
            profiles = self._profiles(set(lookups.values()))
            updates: dict[str, tuple[CrmDeletion, StoredProfile]] = {}
            for crm_id, deletion in pending.items():
                profile = profiles.get(lookups.get(keys[crm_id], ""))
                if profile is None or profile.links.get(link) != crm_id:
                    result.unknown += 1
                elif profile.deleted_in_crm:
                    result.already += 1
                else:
                    updates.setdefault(profile.profile_id, (deletion, profile))
            pending = {}
            batch = list(updates.values())
            for start in range(0, len(batch), TRANSACTION_LIMIT):
                group = batch[start : start + TRANSACTION_LIMIT]
                try:
                    transact_write(self.client, [self._deletion_action(d, p, run_id) for d, p in group])
                except TransactionConflict:
                    pending.update({d.crm_id: d for d, _ in group})
                else:
                    result.marked += len(group)
        if pending:
            raise StoreThrottled(
                f"{len(pending)} deletions kept conflicting with concurrent writers; page retried"
            )
        return result

    def _deletion_action(self, deletion: CrmDeletion, profile: StoredProfile, run_id: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": serialize({"pk": f"P#{profile.profile_id}"}),
                "UpdateExpression": "SET deletedInCrm = :t, deletedInCrmAt = :at, version = version + :one, "
                "updatedAt = :now, lastRunId = :run",
                "ConditionExpression": "version = :ver",
                "ExpressionAttributeValues": serialize(
                    {
                        ":t": True,
                        ":at": format_local_datetime(deletion.deleted_at),
                        ":one": 1,
                        ":now": _now(),
                        ":run": run_id,
                        ":ver": profile.version,
                    }
                ),
            }
        }

    def crm_ids(
        self, connection: str, object_name: str, *, after: str | None = None, limit: int = 500
    ) -> tuple[list[str], str | None]:
        """One page of the CRM ids linked to profiles for this connection and object, and the next cursor."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": CRM_LINK_INDEX,
            "KeyConditionExpression": "crmLink = :link",
            "ExpressionAttributeValues": serialize({":link": link_name(connection, object_name)}),
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = serialize(json.loads(after))
        response = self.client.query(**kwargs)
        prefix = crm_id_key(connection, object_name, "")
        ids = [deserialize(item)["pk"].removeprefix(prefix) for item in response.get("Items", [])]
        return ids, _page_key(response.get("LastEvaluatedKey"))


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
        now = _now()
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
        now = _now()
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
        return ids, _page_key(response.get("LastEvaluatedKey"))

    def get(self, resource: str, crm_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"pk": resource, "sk": crm_id}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def all(self, resource: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :r",
            "ExpressionAttributeValues": serialize({":r": resource}),
        }
        while True:
            response = self.client.query(**kwargs)
            items.extend(deserialize(i) for i in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
