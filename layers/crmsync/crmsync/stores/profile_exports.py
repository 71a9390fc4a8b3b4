"""The export's side of the profile store (SPEC E1, E4, O3): the profiles changed since a watermark, and
what an export batch writes back - each profile's exported version and the CRM ids it created or found."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .dynamo import TransactionConflict, pages, serialize, transact_groups, update_each
from .profile_items import (
    CHANGE_INDEX,
    CHANGE_SHARDS,
    ProfileTable,
    crm_id_item,
    link_name,
)


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


class ExportLinks(ProfileTable):
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
            for items in pages(self.client, "query", kwargs):
                ids = [i["pk"][2:] for i in items if i.get("updatedAt") != until]
                if ids:
                    yield ids

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
                        # `crmLink` too, so the deletion checks list the CRM records an export created
                        "Item": serialize(crm_id_item(link.connection, link.object, link.crm_id, link.profile_id)),
                        "ConditionExpression": "attribute_not_exists(pk) OR profileId = :pid",
                        "ExpressionAttributeValues": serialize({":pid": link.profile_id}),
                    }
                }
            )
        return actions


__all__ = ["ExportLink", "ExportLinks", "ExportedProfile", "LinkResult"]
