"""The import's side of the profile store (SPEC I5, I6, I9, I10): reconcile a page of CRM records with the
profiles (by CRM id, then by unique key) and write them, each as cheaply as it can be written safely.

A record that changes a profile is written with the profile's lookups in one transaction (the profile's
version is its condition). A new profile costs less: its lookups, the only items another writer could create
at the same time, are written with their conditions (a transaction per batch of records, each record's `X#`
and `K#` together), then the profiles, whose fresh ids nobody else holds, with `BatchWriteItem` (1 WCU an
item instead of 2; 4+1 WCU for a profile with two lookups instead of 6). A writer stopped between the two
leaves lookups whose profile is missing; lookup items carry `createdAt`, and one older than
`ORPHAN_GRACE_SECONDS` is adopted by the next writer of that record (the profile is created under the id the
lookup names, in one transaction with its lookups), so a CRM record still gets exactly one profile. A record
that changes nothing writes nothing."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ..domain.conversions import format_local_datetime
from ..domain.reconciliation import Create, ReconciliationPlan, Update, normalize_key, reconcile
from ..domain.records import LocalRecord
from .dynamo import BATCH_WRITE_LIMIT, batch_write, serialize, serialize_value, transact_groups
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

ORPHAN_GRACE_SECONDS = 30  # a lookup this young without its profile may belong to a writer still at work


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
            plan, orphans, waiting = self._plan(
                connection, object_name, pending, key_attribute=key_attribute, case_insensitive=case_insensitive
            )
            result.unchanged += len(plan.unchanged)
            result.rejects.extend(plan.rejects)
            return waiting + self._execute(plan, orphans, connection, object_name, key_attribute, run_id, result)

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
    ) -> tuple[ReconciliationPlan, dict[str, dict[str, str]], list[LocalRecord]]:
        """Each record reconciled with the profiles its CRM id or unique key finds (read now); the orphaned
        lookups each create adopts (crm id -> lookup key -> the profile id it names), and the records whose
        orphaned lookups are too young to adopt yet."""
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

    def _write_profiles(self, written: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        """The new profiles whose lookups were just written, 25 a call. When a call fails (DynamoDB refused
        an item, or kept throttling), the lookups of the profiles not written are taken back before the
        error goes on, so the page can be applied again at once (in halves, to isolate a record the store
        refuses) instead of waiting for its own orphans to age."""
        for start in range(0, len(written), BATCH_WRITE_LIMIT):
            try:
                batch_write(
                    self.client, self.table, [item for item, _ in written[start : start + BATCH_WRITE_LIMIT]]
                )
            except Exception:
                keys = [{"pk": a["Put"]["Item"]["pk"]["S"]} for _, actions in written[start:] for a in actions]
                with contextlib.suppress(Exception):  # orphans left behind are adopted once old enough
                    batch_write(self.client, self.table, deletes=keys)
                raise

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
        self._write_profiles(
            [
                (item, actions)
                for (_, actions, item), conflict in zip(creates, outcomes, strict=False)
                if item and not conflict
            ]
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


__all__ = ["ImportWrites"]
