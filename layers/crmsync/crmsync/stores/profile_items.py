"""The profile table's item layout, and what every part of the profile store reads (DESIGN §5).

Profiles table items:
- `P#<profileId>`: the profile — attributes, links to CRM records (`externalIds`), the CRM's
  last-modified time per link, per-attribute change times, a version for optimistic concurrency.
- `X#<connection>#<object>#<crmId>` -> profileId: lookup by CRM id, created with a condition so one CRM
  record can never get two profiles. It carries `crmLink` (`<connection>:<object>`), the partition key of
  the `CrmLinkIndex` index, so the CRM ids of one link can be listed (deletion checks).
- `K#<attribute>#<normalised value>` -> profileId: lookup by the unique key, conditional as well.

Every profile carries `changeShard` (a fixed hash of its id, one of `CHANGE_SHARDS`) next to
`updatedAt`: the sparse index `ByChange` on those two finds the profiles changed since an export's
watermark with one query per shard - reading only what changed, with writes spread over the shards.

Reads are `BatchGetItem` (100 keys a call). Writes (in `profile_imports`, `profile_exports`,
`profile_deletions`) that change a profile and its lookups are `TransactWriteItems` grouped per record, so
they are written together or not at all; a new profile's own item and a write-back that creates no lookup
take a plain write (see those modules); a group that meets a concurrent writer is read and planned again
(`settle`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from ..domain.reconciliation import StoredProfile
from ..domain.records import LocalRecord, RecordRejected
from ..errors import StoreThrottled
from .dynamo import batch_get, deserialize, serialize, serialize_value

MAX_RECONCILE_ROUNDS = 4
CRM_LINK_INDEX = "CrmLinkIndex"
CHANGE_INDEX = "ByChange"
CHANGE_SHARDS = 16

PendingT = TypeVar("PendingT", bound=Sized)


def now_stamp() -> str:
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


def page_key(last: dict[str, Any] | None) -> str | None:
    """A DynamoDB LastEvaluatedKey as an opaque cursor a state machine can carry."""
    return json.dumps(deserialize(last), separators=(",", ":")) if last else None


def unique_key(attribute: str, normalized: str) -> str:
    value = (
        normalized
        if len(normalized.encode()) <= 512
        else "sha256:" + hashlib.sha256(normalized.encode()).hexdigest()
    )
    return f"K#{attribute}#{value}"


def attribute_sets(
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


def synced_update(
    changes: dict[str, Any], changed_at: dict[str, str], seen: dict[str, str | None] | None, source: str
) -> tuple[list[str], list[str], dict[str, str], dict[str, Any]]:
    """SET clauses, conditions, names and values writing attributes a two-way run decided (profiles and
    resource rows alike): each value with its change time and `source`; with `seen` (each attribute's
    change time when the run read it), only if the attribute did not change since."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {":src": serialize_value(source)}
    sets: list[str] = []
    conditions = ["attribute_exists(pk)"]
    for index, (name, value) in enumerate(changes.items()):
        names[f"#a{index}"] = name
        values[f":a{index}"] = serialize_value(value)
        values[f":t{index}"] = serialize_value(changed_at[name])
        sets += [
            f"attrs.#a{index} = :a{index}",
            f"attrChangedAt.#a{index} = :t{index}",
            f"attrSource.#a{index} = :src",
        ]
        if seen is None:
            continue
        before = seen.get(name)
        if before is None:
            conditions.append(f"attribute_not_exists(attrChangedAt.#a{index})")
        else:
            values[f":s{index}"] = serialize_value(before)
            conditions.append(f"attrChangedAt.#a{index} = :s{index}")
    return sets, conditions, names, values


def update_if(
    client: Any, table: str, key: dict[str, Any], update: str, condition: str, **expressions: Any
) -> bool:
    """One conditional UpdateItem; False when its condition does not hold."""
    try:
        client.update_item(
            TableName=table, Key=key, UpdateExpression=update, ConditionExpression=condition, **expressions
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True


def change_shard(profile_id: str) -> str:
    return f"{int(hashlib.sha256(profile_id.encode()).hexdigest()[:8], 16) % CHANGE_SHARDS:02d}"


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[tuple[LocalRecord, RecordRejected]] = field(default_factory=list)
    profile_ids: dict[str, str] = field(default_factory=dict)


def stored_profile(item: dict[str, Any]) -> StoredProfile:
    return StoredProfile(
        profile_id=item["profileId"],
        attributes=dict(item.get("attrs") or {}),
        links=dict(item.get("externalIds") or {}),
        crm_modified_at=dict(item.get("crmModifiedAt") or {}),
        version=int(item.get("version", 0)),
        key_value=item.get("keyValue"),
        deleted_in_crm=bool(item.get("deletedInCrm", False)),
    )


def settle(pending: PendingT, write: Callable[[PendingT], PendingT], what: str) -> None:
    """Write `pending` with `write`, which answers what met a concurrent writer (to be read and planned
    again), until nothing is left; after `MAX_RECONCILE_ROUNDS` the step fails as throttled and is retried."""
    for _ in range(MAX_RECONCILE_ROUNDS):
        if not pending:
            return
        pending = write(pending)
    if pending:
        raise StoreThrottled(f"{len(pending)} {what} kept conflicting with concurrent writers; page retried")


class ProfileTable:
    """The profiles table and its reads; each concern of the profile store extends it."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    # -- reads -------------------------------------------------------------------------------------
    def get(self, profile_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"pk": f"P#{profile_id}"}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def get_many(self, profile_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The profiles among `profile_ids` that exist, 100 a call."""
        return batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in profile_ids])

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        return {pk: item["profileId"] for pk, item in self._lookup_items(keys).items()}

    def _lookup_items(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        return {item["pk"]: item for item in batch_get(self.client, self.table, [{"pk": k} for k in keys])}

    def _profiles(self, profile_ids: set[str]) -> dict[str, StoredProfile]:
        items = batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in profile_ids])
        return {item["profileId"]: stored_profile(item) for item in items}


__all__ = [
    "CHANGE_INDEX",
    "CHANGE_SHARDS",
    "CRM_LINK_INDEX",
    "ApplyResult",
    "ProfileTable",
    "attribute_sets",
    "change_shard",
    "crm_id_item",
    "crm_id_key",
    "link_name",
    "now_stamp",
    "page_key",
    "settle",
    "stored_profile",
    "synced_update",
    "unique_key",
    "update_if",
]
