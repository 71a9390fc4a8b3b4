"""What the two-way sync reads and writes in the profile store (SPEC O3): the profiles linked to CRM
records, by CRM id, and the attributes its decisions set - each stamped with the time of the change that
won, written only if the attribute did not change since the run read it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..domain.reconciliation import normalize_key
from .dynamo import serialize, serialize_value
from .profile_items import ProfileTable, change_shard, crm_id_key, now_stamp, synced_update, unique_key, update_if


class TwoWayWrites(ProfileTable):
    def profiles_by_crm_ids(
        self, connection: str, object_name: str, crm_ids: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        """The profiles linked to these CRM records, by CRM id: the `X#` lookups, then the profiles, 100 a
        call each."""
        lookups = self._lookup([crm_id_key(connection, object_name, crm_id) for crm_id in crm_ids])
        prefix = len(crm_id_key(connection, object_name, ""))
        profiles = {item["profileId"]: item for item in self.get_many(set(lookups.values()))}
        return {key[prefix:]: profiles[pid] for key, pid in lookups.items() if pid in profiles}

    def profile_ids_by_key(
        self, attribute: str, values: Iterable[Any], *, case_insensitive: bool = True
    ) -> dict[str, str]:
        """The profiles holding these values of the unique key (its `K#` lookups, 100 a call): normalised
        value -> profile id."""
        normalized = {normalize_key(v, case_insensitive=case_insensitive) for v in values} - {None}
        keys = {unique_key(attribute, n): n for n in normalized if n is not None}
        return {keys[pk]: pid for pk, pid in self._lookup(list(keys)).items()}

    def apply_synced(
        self,
        profile_id: str,
        changes: dict[str, Any],
        changed_at: dict[str, str],
        seen: dict[str, str | None],
        source: str,
    ) -> bool:
        """Attributes decided by a two-way sync, each stamped with the time of the change that won and its
        source. Written only if none of them changed since the run read them (`seen`: their change time
        then); False when one did - the next run decides it again with that newer change."""
        sets, conditions, names, values = synced_update(changes, changed_at, seen, source)
        values |= {
            ":now": serialize_value(now_stamp()),
            ":one": serialize_value(1),
            ":shard": serialize_value(change_shard(profile_id)),
        }
        return update_if(
            self.client,
            self.table,
            serialize({"pk": f"P#{profile_id}"}),
            "SET " + ", ".join(["version = version + :one", "updatedAt = :now", "changeShard = :shard", *sets]),
            " AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


__all__ = ["TwoWayWrites"]
