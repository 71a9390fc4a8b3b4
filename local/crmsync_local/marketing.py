"""The marketing side of the profile store, as the demo, the tests and the benchmarks play it: profiles
born on a form or a CSV, changes made by a marketer, and whole-table reads. The marketing platform does
this in production; crmsync's functions never do, so it stays out of the layer.
"""

from __future__ import annotations

import uuid
from typing import Any

from crmsync.domain.reconciliation import normalize_key
from crmsync.stores.dynamo import (
    TransactionConflict,
    batch_get,
    deserialize,
    serialize,
    serialize_value,
    transact_groups,
    transact_write,
)
from crmsync.stores.profile_items import (
    attribute_sets,
    change_shard,
    crm_id_key,
    now_stamp,
    stored_profile,
    unique_key,
)
from crmsync.stores.profiles import ProfileStore
from crmsync.wiring import Container


class MarketingProfiles(ProfileStore):
    """The profile store with the marketing side's writes and whole-table reads."""

    def find_by_crm_id(self, connection: str, object_name: str, crm_id: str) -> dict[str, Any] | None:
        found = batch_get(self.client, self.table, [{"pk": crm_id_key(connection, object_name, crm_id)}])
        return self.get(found[0]["profileId"]) if found else None

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
        profile_id, now = str(uuid.uuid4()), now_stamp()
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
        stored = stored_profile(profile)
        now = now_stamp()
        names: dict[str, str] = {}
        values: dict[str, Any] = {
            ":ver": serialize_value(stored.version),
            ":one": serialize_value(1),
            ":now": serialize_value(now),
            ":src": serialize_value("marketing"),
            ":shard": serialize_value(change_shard(profile_id)),
        }
        sets = ["version = version + :one", "updatedAt = :now", "changeShard = :shard"]
        sets += attribute_sets(changes, ":now", names, values)
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


def marketing_profiles(container: Container) -> MarketingProfiles:
    """The container's profile store, with the marketing side's writes."""
    return MarketingProfiles(container.profiles.client, container.profiles.table)


__all__ = ["MarketingProfiles", "marketing_profiles"]
