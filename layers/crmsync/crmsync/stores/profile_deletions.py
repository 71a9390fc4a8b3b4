"""Deletions in the CRM applied to the profiles (SPEC D1, D2): flag (`deletedInCrm`, the default) or
remove, idempotently, whichever run found them; and the CRM ids one link has locally (id-set checks).

A flagged profile keeps its lookups, so a record restored in the CRM finds it again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..domain.conversions import format_local_datetime
from ..domain.reconciliation import StoredProfile, normalize_key
from ..domain.records import CrmDeletion, DeletionResult
from .dynamo import TRANSACTION_LIMIT, TransactionConflict, batch_get, deserialize, serialize, transact_write
from .profile_items import (
    CRM_LINK_INDEX,
    ProfileTable,
    crm_id_key,
    link_name,
    now_stamp,
    page_key,
    settle,
    unique_key,
)


class DeletionWrites(ProfileTable):
    def _linked(
        self, pending: dict[str, CrmDeletion], connection: str, object_name: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Each pending CRM id's lookup key, and the profile id each found lookup names."""
        keys = {crm_id: crm_id_key(connection, object_name, crm_id) for crm_id in pending}
        return keys, self._lookup(list(keys.values()))

    def mark_deleted(
        self, deletions: Sequence[CrmDeletion], *, connection: str, object_name: str, run_id: str
    ) -> DeletionResult:
        """Flag the profiles of records deleted in the CRM; idempotent, whichever CRM reported them.

        A deletion of a record never imported - or whose profile is now linked to another record of
        that object - is counted as unknown, not an error.
        """
        result = DeletionResult()
        link = link_name(connection, object_name)

        def flag(pending: dict[str, CrmDeletion]) -> dict[str, CrmDeletion]:
            keys, lookups = self._linked(pending, connection, object_name)
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
            conflicted: dict[str, CrmDeletion] = {}
            batch = list(updates.values())
            for start in range(0, len(batch), TRANSACTION_LIMIT):
                group = batch[start : start + TRANSACTION_LIMIT]
                try:
                    transact_write(self.client, [self._deletion_action(d, p, run_id) for d, p in group])
                except TransactionConflict:
                    conflicted.update({d.crm_id: d for d, _ in group})
                else:
                    result.marked += len(group)
            return conflicted

        settle({d.crm_id: d for d in deletions}, flag, "deletions")
        return result

    def remove_deleted(
        self, deletions: Sequence[CrmDeletion], *, connection: str, object_name: str, run_id: str
    ) -> DeletionResult:
        """Removal instead of a flag (SPEC D2 `apply: remove`): the link to the deleted record and its
        lookup go; a profile left with no CRM link goes too, with its unique-key lookup. Idempotent: a
        record removed before is unknown the second time."""
        result = DeletionResult()
        link = link_name(connection, object_name)

        def remove(pending: dict[str, CrmDeletion]) -> dict[str, CrmDeletion]:
            keys, lookups = self._linked(pending, connection, object_name)
            items = {
                item["profileId"]: item
                for item in batch_get(self.client, self.table, [{"pk": f"P#{p}"} for p in set(lookups.values())])
            }
            conflicted: dict[str, CrmDeletion] = {}
            for crm_id, deletion in pending.items():
                item = items.get(lookups.get(keys[crm_id], ""))
                if item is None or (item.get("externalIds") or {}).get(link) != crm_id:
                    result.unknown += 1
                    continue
                try:
                    transact_write(self.client, self._removal_actions(item, link, keys[crm_id], run_id))
                except TransactionConflict:
                    conflicted[crm_id] = deletion
                else:
                    result.marked += 1
            return conflicted

        settle({d.crm_id: d for d in deletions}, remove, "removals")
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
                        "ExpressionAttributeValues": serialize({":one": 1, ":now": now_stamp(), ":run": run_id})
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
                        ":now": now_stamp(),
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
        return ids, page_key(response.get("LastEvaluatedKey"))


__all__ = ["DeletionWrites"]
