"""Rejects (SPEC R1): kept in a DynamoDB table that reading does not consume; the SQS queue only notifies.

Why a table and not the queue: peeking at an SQS message is a receive, and after `maxReceiveCount`
receives the queue moves it to its dead-letter queue; the queue also forgets a message after 14 days at
most. An operator must be able to read, count and export rejects as often as they like, and replay them
until they purge them or the configured retention has passed (DESIGN §5).

Items of the rejects table (`<stack>-rejects`):
- `pk` = sync id, `sk` = reject id: one per reject. The reject id is derived from the run, the record and
  the error, so a retried step that stores the same rejects again overwrites them, never adds copies.
  Attributes: the message fields (`runId`, `operation`, `direction`, `crmId`, `profileId`, `errorSymbol`,
  `errorMessage`, `fields`), the record as JSON text (`recordJson`, which keeps any JSON value as it was)
  or, above `OFFLOAD_ABOVE_BYTES`, a reference to it in S3 (`recordS3Uri`: an item holds 400 KB at most),
  `createdAt` and `seq` (its place among the rejects stored with it: listing keeps a page's order),
  and `expiresAt` (epoch seconds; the table's time to live) unless retention is 0 (keep).
- `pk` = `#meta`: bookkeeping of the store itself (the one-time move of rejects out of the queue).

The `byAge` index (`pk`, `createdAt`; with `expiresAt`) answers when a sync's oldest waiting reject was
stored with one read, whatever the number of rejects: the reject-age metric asks it for every sync.

After storing a step's rejects the router sends one small notice to the queue (sync, run, operation,
count, the first reject ids) for whatever watches it; the notice never carries a record.

The warning logged for each reject carries the error code, the field names and the ids - never the CRM's
message, which quotes the refused values (`Email: invalid email address: jean.dupont@example`, `'+33 6 12
34 56 78' is not an integer`) in forms no mask can list (SPEC N4). The stored reject keeps it whole, with
the record, for whoever inspects or replays it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..domain.records import Reject
from .dynamo import batch_get, batch_write, deserialize, every_item, pages, serialize

logger = logging.getLogger(__name__)

OFFLOAD_ABOVE_BYTES = 200 * 1024
MESSAGE_MAX_CHARS = 8_000
NOTICE_IDS = 100
META = "#meta"
DEFAULT_RETENTION_DAYS = 90
NOTICE_KIND = "rejects-stored"
AGE_INDEX = "byAge"


@dataclass(frozen=True)
class RejectContext:
    sync_id: str
    run_id: str
    operation: str
    direction: str


def reject_id(reject: Reject, context: RejectContext) -> str:
    """Stable for one record's refusal in one run: a retried step finds the same id."""
    identity = f"{context.run_id}|{reject.crm_id}|{reject.error_symbol}"
    if reject.profile_id is not None:
        identity += f"|{reject.profile_id}"
    if reject.reference is not None:
        identity += f"|{reject.reference}"
    if reject.crm_id is None and reject.profile_id is None:
        # No id tells such records apart (a record without its id field): their content does.
        identity += "|" + json.dumps(reject.record, sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:24]


def is_legacy_message(body: dict[str, Any]) -> bool:
    """A reject as earlier versions sent it to the queue (the whole reject, record included)."""
    return body.get("kind") != NOTICE_KIND and "syncId" in body and "errorSymbol" in body


class RejectStore:
    """Put, list, count, export and purge the rejects of a sync. Reading never changes anything."""

    def __init__(
        self,
        client: Any,
        table: str,
        s3: Any = None,
        bucket: str | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        clock: Any = time.time,
    ) -> None:
        self.client = client
        self.table = table
        self.s3 = s3
        self.bucket = bucket
        self.retention_days = retention_days
        self.clock = clock

    # -- writing -----------------------------------------------------------------------------------
    def put(self, rejects: Sequence[Reject], context: RejectContext) -> list[str]:
        """Store rejects (25 a write); answers their ids, in order. Storing one again overwrites it."""
        messages = []
        for reject in rejects:
            message = reject.as_message(
                sync_id=context.sync_id,
                run_id=context.run_id,
                operation=context.operation,
                direction=context.direction,
            )
            message["rejectId"] = reject_id(reject, context)
            messages.append(message)
        self.put_messages(messages)
        return [m["rejectId"] for m in messages]

    def put_messages(
        self, messages: Sequence[dict[str, Any]], *, created_at: Sequence[float] | None = None
    ) -> int:
        """Store rejects given in their message shape (`Reject.as_message` plus `rejectId`), as the queue
        held them before this store existed; `created_at` (epoch seconds) keeps their original age."""
        now = self.clock()
        items = {}
        for index, message in enumerate(messages):
            created = created_at[index] if created_at is not None else now
            item = self._item(message, created)
            item["seq"] = index
            items[(item["pk"], item["sk"])] = item
        return batch_write(self.client, self.table, puts=list(items.values()))

    def _item(self, message: dict[str, Any], created: float) -> dict[str, Any]:
        sync_id, rid = str(message["syncId"]), str(message.get("rejectId") or uuid.uuid4().hex[:24])
        item: dict[str, Any] = {
            "pk": sync_id,
            "sk": rid,
            "runId": str(message.get("runId") or ""),
            "operation": str(message.get("operation") or ""),
            "direction": str(message.get("direction") or ""),
            "errorSymbol": str(message.get("errorSymbol") or ""),
            "errorMessage": str(message.get("errorMessage") or "")[:MESSAGE_MAX_CHARS],
            "fields": [str(f) for f in message.get("fields") or []],
            "createdAt": datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
        }
        for name in ("crmId", "profileId"):
            if message.get(name) is not None:
                item[name] = str(message[name])
        if self.retention_days > 0:
            item["expiresAt"] = int(created) + self.retention_days * 86_400
        if message.get("recordS3Uri"):
            item["recordS3Uri"] = message["recordS3Uri"]
        else:
            record_json = json.dumps(message.get("record"), ensure_ascii=False, default=str)
            if len(record_json.encode()) > OFFLOAD_ABOVE_BYTES:
                item["recordS3Uri"] = self._offload(sync_id, item["runId"], rid, record_json)
            else:
                item["recordJson"] = record_json
        return item

    def _offload(self, sync_id: str, run_id: str, rid: str, record_json: str) -> str:
        if self.s3 is None or not self.bucket:
            raise RuntimeError("a reject larger than 200 KB needs the data bucket to be stored")
        key = f"rejects/{sync_id}/{run_id or 'unknown'}/{rid}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=record_json.encode(), ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    # -- reading (no side effect) ------------------------------------------------------------------
    def _query(self, sync_id: str, *, projection: str | None = None) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": sync_id}),
        }
        if projection:
            request["ProjectionExpression"] = projection
        for page in pages(self.client, "query", request):
            now = int(self.clock())
            # Time to live deletes expired items within days, not at once: they are gone already.
            yield from (item for item in page if "expiresAt" not in item or int(item["expiresAt"]) > now)

    def rejects(
        self, sync_id: str, *, run_id: str | None = None, limit: int | None = None, records: bool = True
    ) -> list[dict[str, Any]]:
        """The sync's rejects, oldest first, in the shape of a reject message (plus `rejectId`,
        `createdAt`); `records=False` leaves the records out (and does not read those kept in S3)."""
        items = [i for i in self._query(sync_id) if run_id is None or i.get("runId") == run_id]
        items.sort(key=lambda i: (i.get("createdAt", ""), i.get("runId", ""), i.get("seq", 0), i["sk"]))
        if limit is not None:
            items = items[:limit]
        return [self._message(item, records=records) for item in items]

    def get(self, sync_id: str, reject_ids: Sequence[str]) -> list[dict[str, Any]]:
        found = batch_get(self.client, self.table, [{"pk": sync_id, "sk": r} for r in reject_ids])
        now = int(self.clock())
        return [self._message(i) for i in found if "expiresAt" not in i or int(i["expiresAt"]) > now]

    def oldest(self, sync_id: str) -> datetime | None:
        """When the sync's oldest waiting reject was stored, or None when none waits. Reads the `byAge`
        index from its oldest end, past any reject whose retention has ended (time to live removes those
        within days, not at once)."""
        request: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": AGE_INDEX,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": sync_id}),
            "ScanIndexForward": True,
            "Limit": 25,
        }
        now = int(self.clock())
        for item in every_item(self.client, "query", request):
            if "expiresAt" not in item or int(item["expiresAt"]) > now:
                return datetime.fromisoformat(str(item["createdAt"]))
        return None

    def count(self, sync_id: str) -> Counter[str]:
        """How many rejects the sync has, by error symbol."""
        return Counter(
            str(i.get("errorSymbol", "")) for i in self._query(sync_id, projection="sk, errorSymbol, expiresAt")
        )

    def _message(self, item: dict[str, Any], *, records: bool = True) -> dict[str, Any]:
        message: dict[str, Any] = {
            "syncId": item["pk"],
            "rejectId": item["sk"],
            "runId": item.get("runId", ""),
            "operation": item.get("operation", ""),
            "direction": item.get("direction", ""),
            "crmId": item.get("crmId"),
            "errorSymbol": item.get("errorSymbol", ""),
            "errorMessage": item.get("errorMessage", ""),
            "fields": list(item.get("fields") or []),
            "createdAt": item.get("createdAt"),
        }
        if "profileId" in item:
            message["profileId"] = item["profileId"]
        if "recordS3Uri" in item:
            message["recordS3Uri"] = item["recordS3Uri"]
        if records:
            message["record"] = self._record(item)
        return message

    def _record(self, item: dict[str, Any]) -> Any:
        if "recordJson" in item:
            return json.loads(item["recordJson"])
        uri = str(item.get("recordS3Uri", ""))
        if not uri.startswith("s3://") or self.s3 is None:
            return None
        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            logger.warning("reject record gone from S3", extra={"reject_id": item.get("sk"), "uri": uri})
            return None

    # -- removing ----------------------------------------------------------------------------------
    def delete(self, sync_id: str, reject_ids: Sequence[str]) -> int:
        """Remove these rejects (replayed, or purged by an operator); their S3 records go with them."""
        if not reject_ids:
            return 0
        found = batch_get(self.client, self.table, [{"pk": sync_id, "sk": r} for r in reject_ids])
        for item in found:
            self._drop_record(item)
        batch_write(self.client, self.table, deletes=[{"pk": sync_id, "sk": i["sk"]} for i in found])
        return len(found)

    def purge(self, sync_id: str, *, run_id: str | None = None, before: datetime | None = None) -> int:
        """Remove the sync's rejects, or those of one run, or those stored before a time. Answers how many."""
        cutoff = before.astimezone(UTC).isoformat(timespec="seconds") if before else None
        chosen = [
            i
            for i in self._query(sync_id)
            if (run_id is None or i.get("runId") == run_id)
            and (cutoff is None or str(i.get("createdAt")) < cutoff)
        ]
        for item in chosen:
            self._drop_record(item)
        batch_write(self.client, self.table, deletes=[{"pk": sync_id, "sk": i["sk"]} for i in chosen])
        return len(chosen)

    def _drop_record(self, item: dict[str, Any]) -> None:
        uri = str(item.get("recordS3Uri", ""))
        if uri.startswith("s3://") and self.s3 is not None:
            bucket, _, key = uri[len("s3://") :].partition("/")
            self.s3.delete_object(Bucket=bucket, Key=key)

    # -- bookkeeping -------------------------------------------------------------------------------
    def meta(self, name: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"pk": META, "sk": name}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def set_meta(self, name: str, values: dict[str, Any]) -> None:
        self.client.put_item(TableName=self.table, Item=serialize({"pk": META, "sk": name, **values}))


class RejectRouter:
    """Logs every reject; when routing is on, stores them and notifies the rejects queue."""

    def __init__(self, store: RejectStore, sqs: Any, queue_url: str) -> None:
        self.store = store
        self.sqs = sqs
        self.queue_url = queue_url

    def route(self, rejects: Sequence[Reject], context: RejectContext, *, enabled: bool = True) -> int:
        """Log each reject; store them when `enabled`. Returns how many were stored."""
        for reject in rejects:
            logger.warning(
                "reject %s on %s",
                reject.error_symbol,
                ", ".join(reject.fields) or "the record",
                extra={
                    "sync_id": context.sync_id,
                    "run_id": context.run_id,
                    "crm_id": reject.crm_id,
                    "profile_id": reject.profile_id,
                    "error_symbol": reject.error_symbol,
                    "fields": list(reject.fields),
                    "routed": enabled,
                },
            )
        if not enabled or not rejects:
            return 0
        ids = self.store.put(rejects, context)
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(
                {
                    "kind": NOTICE_KIND,
                    "syncId": context.sync_id,
                    "runId": context.run_id,
                    "operation": context.operation,
                    "count": len(ids),
                    "rejectIds": ids[:NOTICE_IDS],
                    "bySymbol": dict(Counter(r.error_symbol for r in rejects)),
                }
            ),
            MessageAttributes={
                "syncId": {"DataType": "String", "StringValue": context.sync_id},
                "runId": {"DataType": "String", "StringValue": context.run_id},
                "kind": {"DataType": "String", "StringValue": NOTICE_KIND},
            },
        )
        return len(ids)
