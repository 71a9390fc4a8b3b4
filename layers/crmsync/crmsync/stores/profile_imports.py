"""The import's side of the profile store (SPEC I5, I6, I9): reconcile a page of CRM records with the
profiles (by CRM id, then by unique key) and write each record's profile and lookups in one transaction."""

from __future__ import annotations

import uuid
from typing import Any

from ..domain.conversions import format_local_datetime
from ..domain.reconciliation import Create, ReconciliationPlan, Update, normalize_key, reconcile
from ..domain.records import LocalRecord
from .dynamo import serialize, serialize_value, transact_groups
from .profile_items import (
    ApplyResult,
    ProfileTable,
    attribute_sets,
    change_shard,
    crm_id_item,
    crm_id_key,
    link_name,
    now_stamp,
    settle,
    unique_key,
)


class ImportWrites(ProfileTable):
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

        def write(pending: list[LocalRecord]) -> list[LocalRecord]:
            plan = self._plan(
                connection, object_name, pending, key_attribute=key_attribute, case_insensitive=case_insensitive
            )
            result.unchanged += len(plan.unchanged)
            result.rejects.extend(plan.rejects)
            return self._execute(plan, connection, object_name, key_attribute, run_id, result)

        settle(records, write, "records")
        return result

    def _plan(
        self,
        connection: str,
        object_name: str,
        records: list[LocalRecord],
        *,
        key_attribute: str | None,
        case_insensitive: bool,
    ) -> ReconciliationPlan:
        """Each record reconciled with the profiles its CRM id or unique key finds (read now)."""
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
        record, now, link = create.record, now_stamp(), link_name(connection, object_name)
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
            ":now": serialize_value(now_stamp()),
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
        sets += attribute_sets(update.changed, ":mod", names, values)
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
        outcomes = transact_groups(self.client, [actions for _, actions in groups])
        for (decision, _), conflict in zip(groups, outcomes, strict=True):
            if conflict is not None:
                conflicted.append(decision.record)
            elif isinstance(decision, Create):
                result.created += 1
                result.profile_ids[decision.record.crm_id] = decision.profile_id
            else:
                result.updated += 1
                result.profile_ids[decision.record.crm_id] = decision.profile.profile_id
        return conflicted


__all__ = ["ImportWrites"]
