"""The run ledger and the per-sync lease that keeps two runs of one sync from overlapping (SPEC I12).

Items of the runs table:
- `LOCK#<sync>` / `LOCK`: the lease — holder run id and expiry; taken with a conditional put, renewed
  by every step of the holder, deleted (conditionally) when the run ends.
- `RUN#<sync>` / `<startedAt>#<runId>`: one per run — status, window, counts, error.
- `SCHEMA#<sync>` / `SCHEMA`: the object's description as the sync's last run saw it (zlib-compressed
  JSON), when the CRM said so (`describedAt`, for `If-Modified-Since`) and which definition of the sync
  accepted it: what the next run's drift check compares with.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..errors import LeaseLost, RunAlreadyInProgress
from .dynamo import deserialize, serialize, serialize_value

RUN_RETENTION_SECONDS = 180 * 86_400


def _condition_failed(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


@dataclass(frozen=True)
class RunKey:
    sync_id: str
    run_id: str
    started_at: str

    @property
    def sk(self) -> str:
        return f"{self.started_at}#{self.run_id}"

    def key(self) -> dict[str, Any]:
        return serialize({"pk": f"RUN#{self.sync_id}", "sk": self.sk})


class RunLedger:
    def __init__(self, client: Any, table: str, clock: Any = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    # -- lease -------------------------------------------------------------------------------------
    @staticmethod
    def _lock_key(sync_id: str) -> dict[str, Any]:
        return serialize({"pk": f"LOCK#{sync_id}", "sk": "LOCK"})

    def acquire(self, sync_id: str, run_id: str, lease_seconds: int) -> None:
        now = int(self.clock())
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize(
                    {
                        "pk": f"LOCK#{sync_id}",
                        "sk": "LOCK",
                        "holder": run_id,
                        "expiresAt": now + lease_seconds,
                        "acquiredAt": datetime.fromtimestamp(now, UTC).isoformat(),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now OR holder = :run",
                ExpressionAttributeValues=serialize({":now": now, ":run": run_id}),
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            holder = self.lease_holder(sync_id)
            raise RunAlreadyInProgress(
                f"sync {sync_id!r} is already running"
                + (
                    f" (run {holder['holder']}, lease until "
                    f"{datetime.fromtimestamp(holder['expiresAt'], UTC).isoformat()})"
                    if holder
                    else ""
                )
                + "; runs of one sync never overlap"
            ) from None

    def lease_holder(self, sync_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=self._lock_key(sync_id), ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def renew(self, sync_id: str, run_id: str, lease_seconds: int) -> None:
        now = int(self.clock())
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._lock_key(sync_id),
                UpdateExpression="SET expiresAt = :until",
                ConditionExpression="holder = :run",
                ExpressionAttributeValues=serialize({":run": run_id, ":until": now + lease_seconds}),
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            raise LeaseLost(
                f"run {run_id} of sync {sync_id!r} lost its lease; it stops without applying more"
            ) from None

    def release_action(self, sync_id: str, run_id: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self.table,
                "Key": self._lock_key(sync_id),
                "ConditionExpression": "holder = :run",
                "ExpressionAttributeValues": serialize({":run": run_id}),
            }
        }

    def release(self, sync_id: str, run_id: str) -> bool:
        """Release the lease if this run still holds it; False when it did not."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._lock_key(sync_id),
                ConditionExpression="holder = :run",
                ExpressionAttributeValues=serialize({":run": run_id}),
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def force_release(self, sync_id: str) -> None:
        """Operator's escape hatch when a run died without releasing (the lease would expire anyway)."""
        self.client.delete_item(TableName=self.table, Key=self._lock_key(sync_id))

    # -- ledger ------------------------------------------------------------------------------------
    def record_start(self, key: RunKey, *, operation: str, trigger: str, details: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=serialize(
                {
                    "pk": f"RUN#{key.sync_id}",
                    "sk": key.sk,
                    "syncId": key.sync_id,
                    "runId": key.run_id,
                    "operation": operation,
                    "trigger": trigger,
                    "status": "RUNNING",
                    "startedAt": key.started_at,
                    "expiresAt": int(self.clock()) + RUN_RETENTION_SECONDS,
                    **details,
                }
            ),
        )

    def finish_action(self, key: RunKey, status: str, summary: dict[str, Any]) -> dict[str, Any]:
        names = {"#s": "status", "#e": "endedAt", "#r": "result"}
        return {
            "Update": {
                "TableName": self.table,
                "Key": key.key(),
                "UpdateExpression": "SET #s = :s, #e = :e, #r = :r",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":s": serialize_value(status),
                    ":e": serialize_value(datetime.now(UTC).isoformat(timespec="seconds")),
                    ":r": serialize_value(summary),
                },
            }
        }

    def record_end(self, key: RunKey, status: str, summary: dict[str, Any]) -> None:
        action = self.finish_action(key, status, summary)["Update"]
        self.client.update_item(**action)

    def get(self, key: RunKey) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=key.key(), ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def recent(self, sync_id: str, limit: int = 20) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": f"RUN#{sync_id}"}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [deserialize(i) for i in response.get("Items", [])]

    # -- schema seen -------------------------------------------------------------------------------
    @staticmethod
    def _schema_key(sync_id: str) -> dict[str, Any]:
        return serialize({"pk": f"SCHEMA#{sync_id}", "sk": "SCHEMA"})

    def schema_seen(self, sync_id: str) -> dict[str, Any] | None:
        """`{"description": <snapshot JSON>, "describedAt": str | None, "definition": str}` or None."""
        response = self.client.get_item(TableName=self.table, Key=self._schema_key(sync_id), ConsistentRead=True)
        if "Item" not in response:
            return None
        item = deserialize(response["Item"])
        body = item["body"]
        raw = body.value if hasattr(body, "value") else body
        return {
            "description": json.loads(zlib.decompress(bytes(raw))),
            "describedAt": item.get("describedAt"),
            "definition": item.get("definition", ""),
        }

    def remember_schema(
        self, sync_id: str, description: dict[str, Any], described_at: str | None, definition: str
    ) -> None:
        item: dict[str, Any] = {
            "pk": f"SCHEMA#{sync_id}",
            "sk": "SCHEMA",
            "body": zlib.compress(json.dumps(description, separators=(",", ":")).encode(), 6),
            "definition": definition,
            "savedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if described_at:
            item["describedAt"] = described_at
        self.client.put_item(TableName=self.table, Item=serialize(item))
