"""The two-way sync's two ledgers (SPEC O3): the write ledger and the consent ledger.

Write ledger (`<stack>-sync-ledger`): one item per (sync, CRM record, field) - `pk` `<sync>#<crmId>`,
`sk` the local attribute - holding a hash of the value last synced (never the value: the ledger
outlives the record), which side it was written to and when. A change whose value is that hash is our
own write read back, or a re-save of the same value; it is not a change.

Consent ledger (`<stack>-consent`): every opt-out change applied, from either side, appended - `pk` the
profile id, `sk` `<change time>#<channel>#<change hash>` - with the value, the side and record it came
from, its author, how its time was known and the run. Rows are put with `attribute_not_exists`, so a
resumed batch re-applying the same change appends nothing twice, and the functions' IAM allows no
update or delete on the table: the ledger is append-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from .dynamo import batch_get, batch_write, every_item, serialize


@dataclass(frozen=True)
class LedgerEntry:
    sync_id: str
    crm_id: str
    field: str
    hash: str
    side: str
    written_at: str
    run_id: str
    crm_seen: str | None = None
    """The time of the latest CRM history / audit row the decision saw: rows up to it are decided."""


class WriteLedger:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def get_many(self, sync_id: str, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LedgerEntry]:
        """The entries among (crm id, field) keys, 100 a call."""
        items = batch_get(self.client, self.table, [{"pk": f"{sync_id}#{crm_id}", "sk": f} for crm_id, f in keys])
        return {
            (item["crmId"], item["sk"]): LedgerEntry(
                sync_id,
                item["crmId"],
                item["sk"],
                item["hash"],
                item["side"],
                item["writtenAt"],
                item["runId"],
                item.get("crmSeenAt"),
            )
            for item in items
        }

    def record(self, entries: Iterable[LedgerEntry]) -> int:
        """Write (replace) entries, 25 a call."""
        return batch_write(
            self.client,
            self.table,
            puts=[
                {
                    "pk": f"{e.sync_id}#{e.crm_id}",
                    "sk": e.field,
                    "crmId": e.crm_id,
                    "hash": e.hash,
                    "side": e.side,
                    "writtenAt": e.written_at,
                    "runId": e.run_id,
                    **({"crmSeenAt": e.crm_seen} if e.crm_seen else {}),
                }
                for e in entries
            ],
        )


@dataclass(frozen=True)
class ConsentChange:
    """One opt-out change applied (a consent ledger row)."""

    profile_id: str
    channel: str
    value: Any
    source_side: str
    source_record: str
    changed_at: str
    author: str | None
    time_source: str
    run_id: str
    sync_id: str
    crm_field: str

    def sort_key(self) -> str:
        fingerprint = hashlib.sha256(f"{self.source_side}|{self.source_record}|{self.value}".encode()).hexdigest()
        return f"{self.changed_at}#{self.channel}#{fingerprint[:12]}"

    def item(self) -> dict[str, Any]:
        return {
            "pk": self.profile_id,
            "sk": self.sort_key(),
            "profileId": self.profile_id,
            "channel": self.channel,
            "value": self.value,
            "sourceSide": self.source_side,
            "sourceRecord": self.source_record,
            "changedAt": self.changed_at,
            "author": self.author,
            "timeSource": self.time_source,
            "runId": self.run_id,
            "syncId": self.sync_id,
            "crmField": self.crm_field,
            "recordedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }


CONSENT_COLUMNS = (
    "profileId",
    "channel",
    "value",
    "sourceSide",
    "sourceRecord",
    "changedAt",
    "author",
    "timeSource",
    "crmField",
    "syncId",
    "runId",
    "recordedAt",
)


class ConsentLedger:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def append(self, changes: Iterable[ConsentChange]) -> int:
        """Append each change once (a row already there - the same change applied by an earlier attempt -
        is left as it is); answers how many were new."""
        added = 0
        for change in changes:
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=serialize({k: v for k, v in change.item().items() if v is not None}),
                    ConditionExpression="attribute_not_exists(pk)",
                )
                added += 1
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
        return added

    def history(self, profile_id: str) -> list[dict[str, Any]]:
        """One profile's rows, oldest change first."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": serialize({":p": profile_id}),
        }
        return list(every_item(self.client, "query", kwargs))

    def between(self, start: str | None, end: str | None) -> Iterator[dict[str, Any]]:
        """Every row whose change time is in [start, end) (an audit export: reads the whole table)."""
        kwargs: dict[str, Any] = {"TableName": self.table}
        conditions, values = [], {}
        if start:
            conditions.append("changedAt >= :a")
            values[":a"] = start
        if end:
            conditions.append("changedAt < :b")
            values[":b"] = end
        if conditions:
            kwargs["FilterExpression"] = " AND ".join(conditions)
            kwargs["ExpressionAttributeValues"] = serialize(values)
        yield from every_item(self.client, "scan", kwargs)


__all__ = ["CONSENT_COLUMNS", "ConsentChange", "ConsentLedger", "LedgerEntry", "WriteLedger"]
