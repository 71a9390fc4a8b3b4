"""The marketing profile store (DESIGN §5) and the resources store for custom objects (SPEC I11).

Profiles table items:
- `P#<profileId>`: the profile — attributes, links to CRM records (`externalIds`), the CRM's
  last-modified time per link, per-attribute change times, a version for optimistic concurrency.
- `X#<connection>#<object>#<crmId>` -> profileId: lookup by CRM id, created with a condition so one CRM
  record can never get two profiles. It carries `crmLink` (`<connection>:<object>`), the partition key of
  the `CrmLinkIndex` index, so the CRM ids of one link can be listed (deletion checks).
- `K#<attribute>#<normalised value>` -> profileId: lookup by the unique key, conditional as well.

Reads are `BatchGetItem` (100 keys a call). An imported record that changes a profile is written with
`TransactWriteItems` (100 actions a call) grouped per record, so a profile and its lookups change together
or not at all. A new profile costs less: its lookups, the only items another writer could create at the
same time, are written with their conditions (a transaction per batch of records, each record's `X#` and
`K#` together), then the profiles, whose fresh ids nobody else holds, with `BatchWriteItem` (1 WCU an item
instead of 2; 4+1 WCU for a profile with two lookups instead of 6). A writer stopped between the two
leaves lookups whose profile is missing; lookup items carry `createdAt`, and one older than
`ORPHAN_GRACE_SECONDS` is adopted by the next writer of that record (the profile is created under the id
the lookup names, in one transaction), so a CRM record still gets exactly one profile (SPEC I10). A record
that changes nothing writes nothing.

A record deleted in the CRM flags its profile `deletedInCrm` with `deletedInCrmAt` (SPEC D2, the
default); the profile and its lookups stay, so a record restored in the CRM finds it again.

Every profile carries `changeShard` (a fixed hash of its id, one of `CHANGE_SHARDS`) next to
`updatedAt`: the sparse index `ByChange` on those two finds the profiles changed since an export's
watermark with one query per shard - reading only what changed, with writes spread over the shards.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    transact_groups,
    transact_write,
    update_each,
)

MAX_RECONCILE_ROUNDS = 4
ORPHAN_GRACE_SECONDS = 30  # a lookup this young without its profile may belong to a writer still at work
CRM_LINK_INDEX = "CrmLinkIndex"
CHANGE_INDEX = "ByChange"
CHANGE_SHARDS = 16


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


def _attribute_sets(
    changes: dict[str, Any], stamp: str, names: dict[str, str], values: dict[str, Any]
) -> list[str]:
    """SET clauses writing attributes with their change time (`stamp`) and source (`:src`)."""
    sets: list[str] = []
    for index, (name, value) in enumerate(changes.items()):
        names[f"#a{index}"] = name
        values[f":a{index}"] = serialize_value(value)
        sets += [
            f"attrs.#a{index} = :a{index}",
            f"attrChangedAt.#a{index} = {stamp}",
            f"attrSource.#a{index} = :src",
        ]
    return sets


def change_shard(profile_id: str) -> str:
    return f"{int(hashlib.sha256(profile_id.encode()).hexdigest()[:8], 16) % CHANGE_SHARDS:02d}"


@dataclass(frozen=True)
class ExportLink:
    """A CRM record an export created or found for a profile, to write back (`externalIds`, `X#`)."""

    profile_id: str
    connection: str
    object: str
    crm_id: str


@dataclass(frozen=True)
class ExportedProfile:
    """A profile an export batch wrote (or found unchanged): the version it exported, the link it made."""

    profile_id: str
    version: int | None = None
    link: ExportLink | None = None


@dataclass
class LinkResult:
    linked: int = 0
    missing: list[str] = field(default_factory=list)
    conflicts: list[ExportLink] = field(default_factory=list)


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

    def get_many(self, profile_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The profiles among `profile_ids` that exist, 100 a call."""
        return batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in profile_ids])

    def changed_profile_ids(self, since: str | None, until: str) -> Iterator[list[str]]:
        """Pages of ids of the profiles whose `updatedAt` is in [since, until), shard by shard.

        The index is eventually consistent: callers leave a lag before `until` and overlap `since`.
        """
        for shard in range(CHANGE_SHARDS):
            values = {":s": f"{shard:02d}", ":b": until}
            condition = "changeShard = :s AND updatedAt < :b"
            if since:
                values[":a"] = since
                condition = "changeShard = :s AND updatedAt BETWEEN :a AND :b"
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": CHANGE_INDEX,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": serialize(values),
            }
            while True:
                response = self.client.query(**kwargs)
                items = [deserialize(i) for i in response.get("Items", [])]
                ids = [i["pk"][2:] for i in items if i.get("updatedAt") != until]
                if ids:
                    yield ids
                if "LastEvaluatedKey" not in response:
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        return {pk: item["profileId"] for pk, item in self._lookup_items(keys).items()}

    def _lookup_items(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {item["pk"]: item for item in batch_get(self.client, self.table, [{"pk": k} for k in keys])}

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
        created = self.create_local_many(
            [attributes], key_attribute=key_attribute, case_insensitive=case_insensitive
        )
        if created[0] is None:
            raise TransactionConflict([1], [{"Code": "ConditionalCheckFailed"}])
        return created[0]

    def create_local_many(
        self,
        rows: list[dict[str, Any]],
        *,
        key_attribute: str | None = None,
        case_insensitive: bool = True,
    ) -> list[str | None]:
        """Profiles born on the marketing side, many per transaction; the id of each, or None where
        its unique key already belongs to another profile."""
        groups = [self._local_actions(attributes, key_attribute, case_insensitive) for attributes in rows]
        outcomes = transact_groups(self.client, [actions for _, actions in groups])
        return [
            None if conflict else profile_id for (profile_id, _), conflict in zip(groups, outcomes, strict=True)
        ]

    def _local_actions(
        self, attributes: dict[str, Any], key_attribute: str | None, case_insensitive: bool
    ) -> tuple[str, list[dict[str, Any]]]:
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
            "changeShard": change_shard(profile_id),
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
        return profile_id, actions

    def update_local(
        self,
        profile_id: str,
        changes: dict[str, Any],
        *,
        key_attribute: str | None = None,
        case_insensitive: bool = True,
    ) -> None:
        """A change made on the marketing side: attributes set, stamped now with source `marketing`."""
        profile = self.get(profile_id)
        if profile is None:
            raise KeyError(profile_id)
        stored = _stored(profile)
        now = _now()
        names: dict[str, str] = {}
        values: dict[str, Any] = {
            ":ver": serialize_value(stored.version),
            ":one": serialize_value(1),
            ":now": serialize_value(now),
            ":src": serialize_value("marketing"),
            ":shard": serialize_value(change_shard(profile_id)),
        }
        sets = ["version = version + :one", "updatedAt = :now", "changeShard = :shard"]
        sets += _attribute_sets(changes, ":now", names, values)
        actions: list[dict[str, Any]] = []
        old_key = stored.key_value
        new_key = old_key
        if key_attribute and key_attribute in changes:
            new_key = normalize_key(changes[key_attribute], case_insensitive=case_insensitive)
        if new_key != old_key and key_attribute:
            if new_key is not None:
                sets.append("keyValue = :key")
                values[":key"] = serialize_value(new_key)
                actions.append(
                    {
                        "Put": {
                            "TableName": self.table,
                            "ConditionExpression": "attribute_not_exists(pk)",
                            "Item": serialize(
                                {
                                    "pk": unique_key(key_attribute, new_key),
                                    "kind": "unique-key",
                                    "profileId": profile_id,
                                }
                            ),
                        }
                    }
                )
            if old_key is not None:
                actions.append(
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": serialize({"pk": unique_key(key_attribute, old_key)}),
                        }
                    }
                )
        expression = "SET " + ", ".join(sets) + (" REMOVE keyValue" if new_key is None and old_key else "")
        actions.insert(
            0,
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize({"pk": f"P#{profile_id}"}),
                    "UpdateExpression": expression,
                    "ConditionExpression": "version = :ver",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            },
        )
        transact_write(self.client, actions)

    # -- export ------------------------------------------------------------------------------------
    def record_exported(self, sync_id: str, exported: list[ExportedProfile]) -> LinkResult:
        """After an export batch: each profile's exported version (`exportedVersion:<sync>`, so the next
        run skips it until it changes again) and the CRM ids the export created or matched (`externalIds`,
        `externalId`, the `X#` lookup), idempotently. A CRM record already linked to another profile is
        reported, not moved.

        A profile that only records its exported version takes one conditional `UpdateItem` (1 WCU); one
        that gains a link writes the profile and its new `X#` lookup in a transaction."""
        result = LinkResult()
        groups = [self._exported_actions(sync_id, item) for item in exported]
        linking = [index for index, item in enumerate(exported) if item.link is not None]
        outcomes: list[TransactionConflict | None] = [None] * len(exported)
        for index, conflict in zip(
            linking, transact_groups(self.client, [groups[i] for i in linking]), strict=True
        ):
            outcomes[index] = conflict
        plain = [index for index, item in enumerate(exported) if item.link is None]
        for index, refused in zip(
            plain, update_each(self.client, [groups[i][0]["Update"] for i in plain]), strict=True
        ):
            outcomes[index] = TransactionConflict([0], []) if refused else None
        for item, conflict in zip(exported, outcomes, strict=True):
            if conflict is None:
                result.linked += 1 if item.link is not None else 0
            elif 0 in conflict.failed:
                result.missing.append(item.profile_id)
            elif item.link is not None:
                result.conflicts.append(item.link)
        return result

    def _exported_actions(self, sync_id: str, item: ExportedProfile) -> list[dict[str, Any]]:
        sets: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if item.version is not None:
            sets.append("#exp = :ver")
            names["#exp"] = f"exportedVersion:{sync_id}"
            values[":ver"] = item.version
        link = item.link
        if link is not None:
            sets += ["externalIds.#link = :cid", "externalId = if_not_exists(externalId, :cid)"]
            names["#link"] = link_name(link.connection, link.object)
            values[":cid"] = link.crm_id
        actions: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize({"pk": f"P#{item.profile_id}"}),
                    "UpdateExpression": "SET " + ", ".join(sets),
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": serialize(values),
                }
            }
        ]
        if link is not None:
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": serialize(
                            {
                                "pk": crm_id_key(link.connection, link.object, link.crm_id),
                                "kind": "crm-id",
                                "profileId": link.profile_id,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk) OR profileId = :pid",
                        "ExpressionAttributeValues": serialize({":pid": link.profile_id}),
                    }
                }
            )
        return actions

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
            plan, orphans, waiting = self._plan(pending, connection, object_name, key_attribute, case_insensitive)
            result.unchanged += len(plan.unchanged)
            result.rejects.extend(plan.rejects)
            pending = waiting + self._execute(
                plan, orphans, connection, object_name, key_attribute, run_id, result
            )
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
    ) -> tuple[ReconciliationPlan, dict[str, dict[str, str]], list[LocalRecord]]:
        """The reconciliation plan, the orphaned lookups each create adopts (crm id -> lookup key -> the
        profile id it names), and the records whose orphaned lookups are too young to adopt yet."""
        id_keys = [crm_id_key(connection, object_name, r.crm_id) for r in records]
        unique_keys: dict[str, str] = {}
        if key_attribute:
            for record in records:
                normalized = normalize_key(record.attributes.get(key_attribute), case_insensitive=case_insensitive)
                if normalized is not None:
                    unique_keys[unique_key(key_attribute, normalized)] = normalized
        found = self._lookup_items(id_keys + list(unique_keys))
        lookups = {pk: item["profileId"] for pk, item in found.items()}
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
        plan = reconcile(
            records,
            link=link_name(connection, object_name),
            key_attribute=key_attribute,
            case_insensitive=case_insensitive,
            by_crm_id=by_crm_id,
            by_key=by_key,
            new_profile_id=lambda: str(uuid.uuid4()),
        )
        # A create found no profile, so any lookup it found names a missing one: an orphan.
        orphans: dict[str, dict[str, str]] = {}
        waiting: list[LocalRecord] = []
        horizon = (datetime.now(UTC) - timedelta(seconds=ORPHAN_GRACE_SECONDS)).isoformat(timespec="seconds")
        creates: list[Create] = []
        for create in plan.creates:
            keys = [crm_id_key(connection, object_name, create.record.crm_id)]
            if create.key is not None and key_attribute:
                keys.append(unique_key(key_attribute, create.key))
            stale = {k: found[k] for k in keys if k in found}
            if not stale:
                creates.append(create)
            elif any(item.get("createdAt", "") > horizon for item in stale.values()):
                waiting.append(create.record)
            else:
                orphans[create.record.crm_id] = {k: item["profileId"] for k, item in stale.items()}
                create.profile_id = next(iter(orphans[create.record.crm_id].values()))
                creates.append(create)
        plan.creates = creates
        return plan, orphans, waiting

    def _create_actions(
        self,
        create: Create,
        connection: str,
        object_name: str,
        key_attribute: str | None,
        run_id: str,
        orphans: dict[str, str] | None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The conditional lookup writes of a new profile and the profile item to batch-write after them;
        or, adopting orphaned lookups, one transaction writing the profile with them (no item to batch)."""
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
            "changeShard": change_shard(create.profile_id),
            "lastRunId": run_id,
        }
        if create.key is not None:
            profile["keyValue"] = create.key
        lookups = [crm_id_item(connection, object_name, record.crm_id, create.profile_id)]
        if create.key is not None and key_attribute:
            lookups.append(
                {"pk": unique_key(key_attribute, create.key), "kind": "unique-key", "profileId": create.profile_id}
            )
        actions: list[dict[str, Any]] = []
        for lookup in lookups:
            put: dict[str, Any] = {
                "TableName": self.table,
                "Item": serialize({**lookup, "createdAt": now}),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
            seen = (orphans or {}).get(lookup["pk"])
            if seen is not None:  # still the orphan we read, or nothing
                put["ConditionExpression"] = "attribute_not_exists(pk) OR profileId = :seen"
                put["ExpressionAttributeValues"] = serialize({":seen": seen})
            actions.append({"Put": put})
        if orphans is None:
            return actions, profile
        put_profile = {
            "TableName": self.table,
            "Item": serialize(profile),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        return [{"Put": put_profile}, *actions], None

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
            ":shard": serialize_value(change_shard(profile.profile_id)),
        }
        sets = [
            "changeShard = if_not_exists(changeShard, :shard)",
            "externalId = if_not_exists(externalId, :cid)",
            "version = version + :one",
            "updatedAt = :now",
            "lastRunId = :run",
            "crmModifiedAt.#link = :mod",
            "externalIds.#link = :cid",
        ]
        sets += _attribute_sets(update.changed, ":mod", names, values)
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
        orphans: dict[str, dict[str, str]],
        connection: str,
        object_name: str,
        key_attribute: str | None,
        run_id: str,
        result: ApplyResult,
    ) -> list[LocalRecord]:
        """Write the plan; returns the records that hit a concurrent writer (to re-plan).

        Lookups and updates go first, in transactions; then the new profiles whose lookups were
        written, 25 a call. A record refused by a condition is planned again."""
        creates = [
            (
                c,
                *self._create_actions(
                    c, connection, object_name, key_attribute, run_id, orphans.get(c.record.crm_id)
                ),
            )
            for c in plan.creates
        ]
        groups: list[tuple[Create | Update, list[dict[str, Any]]]] = [(c, actions) for c, actions, _ in creates]
        groups += [
            (u, self._update_actions(u, connection, object_name, key_attribute, run_id)) for u in plan.updates
        ]
        outcomes = transact_groups(self.client, [actions for _, actions in groups])
        conflicted = [
            decision.record for (decision, _), conflict in zip(groups, outcomes, strict=True) if conflict
        ]
        batch_write(
            self.client,
            self.table,
            [item for (_, _, item), conflict in zip(creates, outcomes, strict=False) if item and conflict is None],
        )
        for (decision, _), conflict in zip(groups, outcomes, strict=True):
            if conflict is not None:
                continue
            if isinstance(decision, Create):
                result.created += 1
                result.profile_ids[decision.record.crm_id] = decision.profile_id
            else:
                result.updated += 1
                result.profile_ids[decision.record.crm_id] = decision.profile.profile_id
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

    def remove_deleted(
        self, deletions: Sequence[CrmDeletion], *, connection: str, object_name: str, run_id: str
    ) -> DeletionResult:
        """Removal instead of a flag (SPEC D2 `apply: remove`): the link to the deleted record and its
        lookup go; a profile left with no CRM link goes too, with its unique-key lookup. Idempotent: a
        record removed before is unknown the second time."""
        result = DeletionResult()
        link = link_name(connection, object_name)
        pending = {d.crm_id: d for d in deletions}
        for _ in range(MAX_RECONCILE_ROUNDS):
            if not pending:
                return result
            keys = {crm_id: crm_id_key(connection, object_name, crm_id) for crm_id in pending}
            lookups = self._lookup(list(keys.values()))
            items = {
                item["profileId"]: item
                for item in batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in set(lookups.values())])
            }
            retry: dict[str, CrmDeletion] = {}
            for crm_id, deletion in pending.items():
                item = items.get(lookups.get(keys[crm_id], ""))
                if item is None or (item.get("externalIds") or {}).get(link) != crm_id:
                    result.unknown += 1
                    continue
                try:
                    transact_write(self.client, self._removal_actions(item, link, keys[crm_id], run_id))
                except TransactionConflict:
                    retry[crm_id] = deletion
                else:
                    result.marked += 1
            pending = retry
        if pending:
            raise StoreThrottled(f"{len(pending)} removals kept conflicting with concurrent writers; page retried")
        return result

    def _removal_actions(self, item: dict[str, Any], link: str, lookup: str, run_id: str) -> list[dict[str, Any]]:
        profile_id = item["profileId"]
        owned = serialize({":p": profile_id})
        actions: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": serialize({"pk": lookup}),
                    "ConditionExpression": "profileId = :p",
                    "ExpressionAttributeValues": owned,
                }
            }
        ]
        version = serialize({":ver": int(item.get("version", 0))})
        if set(item.get("externalIds") or {}) - {link}:
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": serialize({"pk": f"P#{profile_id}"}),
                        "UpdateExpression": "SET version = version + :one, updatedAt = :now, lastRunId = :run "
                        "REMOVE externalIds.#l, crmModifiedAt.#l",
                        "ConditionExpression": "version = :ver",
                        "ExpressionAttributeNames": {"#l": link},
                        "ExpressionAttributeValues": serialize({":one": 1, ":now": _now(), ":run": run_id})
                        | version,
                    }
                }
            )
            return actions
        actions.append(
            {
                "Delete": {
                    "TableName": self.table,
                    "Key": serialize({"pk": f"P#{profile_id}"}),
                    "ConditionExpression": "version = :ver",
                    "ExpressionAttributeValues": version,
                }
            }
        )
        key_value = item.get("keyValue")
        if key_value:
            attrs = item.get("attrs") or {}
            candidates = [
                unique_key(name, key_value)
                for name, value in attrs.items()
                if isinstance(value, str)
                and key_value
                in (normalize_key(value, case_insensitive=True), normalize_key(value, case_insensitive=False))
            ]
            for lookup_item in self._lookup(candidates).items():
                if lookup_item[1] == profile_id:
                    actions.append(
                        {
                            "Delete": {
                                "TableName": self.table,
                                "Key": serialize({"pk": lookup_item[0]}),
                                "ConditionExpression": "profileId = :p",
                                "ExpressionAttributeValues": owned,
                            }
                        }
                    )
        return actions

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
