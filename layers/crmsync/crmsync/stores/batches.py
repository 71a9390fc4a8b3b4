"""The batch ledger of a resumable run (export, deletion): which batches are pending, in flight, done.

Items of the runs table:
- `BATCH#<sync>#<ledger run>` / `<batch number>`: status, attempts, the bulk jobs the latest attempt
  started (one per write of the batch), counts, and the S3 key of the per-record results (a DynamoDB item holds 400 KB; a
  10,000-record batch's results do not fit, so they live under the run's S3 prefix).
- `UNFINISHED#<sync>` / `<operation>`: the run whose batches are not all done. The next run of the
  sync resumes it - same population, same batches - instead of starting another (SPEC E4).

A batch moves pending -> in flight -> done, each move conditional: a done batch never goes back. A batch
found in flight was interrupted with an unknown outcome; the caller resolves it before sending again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from .dynamo import batch_write, deserialize, every_item, serialize, serialize_value
from .runs import RUN_RETENTION_SECONDS


class BatchStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"


@dataclass(frozen=True)
class BatchPlan:
    """One batch of a run's manifest: its number, the S3 key of its records and how many."""

    number: int
    keys: tuple[str, ...]
    size: int
    api: str = "default"


@dataclass
class BatchEntry:
    number: int
    status: BatchStatus
    keys: tuple[str, ...]
    size: int
    api: str
    attempts: int = 0
    jobs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    results_key: str | None = None

    @property
    def interrupted(self) -> bool:
        """A previous attempt started sending and never recorded how it ended."""
        return self.status is BatchStatus.IN_FLIGHT


def _entry(item: dict[str, Any]) -> BatchEntry:
    return BatchEntry(
        number=int(item["number"]),
        status=BatchStatus(item["status"]),
        keys=tuple(item["keys"]),
        size=int(item.get("size", 0)),
        api=item.get("api", "default"),
        attempts=int(item.get("attempts", 0)),
        jobs=dict(item.get("jobs") or {}),
        counts={k: int(v) for k, v in (item.get("counts") or {}).items()},
        results_key=item.get("resultsKey"),
    )


class BatchAlreadyDone(Exception):
    """The batch was completed by another attempt meanwhile; its results stand."""


class BatchLedger:
    def __init__(self, client: Any, table: str, s3: Any, bucket: str, clock: Any = time.time) -> None:
        self.client = client
        self.table = table
        self.s3 = s3
        self.bucket = bucket
        self.clock = clock

    @staticmethod
    def _pk(sync_id: str, run_id: str) -> str:
        return f"BATCH#{sync_id}#{run_id}"

    def _key(self, sync_id: str, run_id: str, number: int) -> dict[str, Any]:
        return serialize({"pk": self._pk(sync_id, run_id), "sk": f"{number:06d}"})

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, sync_id: str, run_id: str, batches: Sequence[BatchPlan]) -> None:
        """Record every batch as pending (25 a call). Planning the same run again rewrites the same items,
        so it must happen before any batch is claimed - the start step does it once, then marks the run
        unfinished."""
        expires = int(self.clock()) + RUN_RETENTION_SECONDS
        batch_write(
            self.client,
            self.table,
            puts=[
                {
                    "pk": self._pk(sync_id, run_id),
                    "sk": f"{b.number:06d}",
                    "number": b.number,
                    "status": BatchStatus.PENDING.value,
                    "keys": list(b.keys),
                    "size": b.size,
                    "api": b.api,
                    "attempts": 0,
                    "jobs": {},
                    "expiresAt": expires,
                }
                for b in batches
            ],
        )

    # -- one batch -----------------------------------------------------------------------------------
    def get(self, sync_id: str, run_id: str, number: int) -> BatchEntry | None:
        response = self.client.get_item(
            TableName=self.table, Key=self._key(sync_id, run_id, number), ConsistentRead=True
        )
        return _entry(deserialize(response["Item"])) if "Item" in response else None

    def claim(self, sync_id: str, run_id: str, number: int) -> BatchEntry:
        """Mark the batch in flight for one more attempt; answers the entry as it was before, so the
        caller knows whether an earlier attempt was interrupted. Raises `BatchAlreadyDone`."""
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=self._key(sync_id, run_id, number),
                UpdateExpression="SET #s = :flight, attempts = attempts + :one",
                ConditionExpression="attribute_exists(pk) AND #s <> :done",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=serialize(
                    {":flight": BatchStatus.IN_FLIGHT.value, ":done": BatchStatus.DONE.value, ":one": 1}
                ),
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise BatchAlreadyDone(f"batch {number} of run {run_id} is done or was never planned") from None
        return _entry(deserialize(response["Attributes"]))

    def record_job(self, sync_id: str, run_id: str, number: int, slot: str, job_id: str | None) -> None:
        """Remember the CRM job a write of this batch started (before sending it any data), or forget it."""
        values = {":flight": serialize_value(BatchStatus.IN_FLIGHT.value)}
        if job_id is None:
            expression = "REMOVE jobs.#slot"
        else:
            expression = "SET jobs.#slot = :job"
            values[":job"] = serialize_value(job_id)
        self.client.update_item(
            TableName=self.table,
            Key=self._key(sync_id, run_id, number),
            UpdateExpression=expression,
            ConditionExpression="#s = :flight",
            ExpressionAttributeNames={"#s": "status", "#slot": slot},
            ExpressionAttributeValues=values,
        )

    def complete(
        self, sync_id: str, run_id: str, number: int, results: list[dict[str, Any]], counts: dict[str, int]
    ) -> str:
        """Store the per-record results in S3, then mark the batch done with its counts."""
        results_key = f"runs/{sync_id}/{run_id}/results/{number:06d}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=results_key,
            Body=json.dumps(results, ensure_ascii=False, default=str).encode(),
            ContentType="application/json",
        )
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(sync_id, run_id, number),
                UpdateExpression="SET #s = :done, #c = :counts, resultsKey = :rk",
                ConditionExpression="#s = :flight",
                ExpressionAttributeNames={"#s": "status", "#c": "counts"},
                ExpressionAttributeValues=serialize(
                    {
                        ":done": BatchStatus.DONE.value,
                        ":flight": BatchStatus.IN_FLIGHT.value,
                        ":counts": counts,
                        ":rk": results_key,
                    }
                ),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            raise BatchAlreadyDone(f"batch {number} of run {run_id} was completed by another attempt") from None
        return results_key

    def results(self, entry: BatchEntry) -> list[dict[str, Any]]:
        if entry.results_key is None:
            return []
        body = self.s3.get_object(Bucket=self.bucket, Key=entry.results_key)["Body"].read()
        results: list[dict[str, Any]] = json.loads(body)
        return results

    # -- the whole run -------------------------------------------------------------------------------
    def entries(self, sync_id: str, run_id: str) -> Iterator[BatchEntry]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": self._pk(sync_id, run_id)}),
            "ConsistentRead": True,
        }
        for item in every_item(self.client, "query", kwargs):
            yield _entry(item)

    # -- unfinished runs -----------------------------------------------------------------------------
    @staticmethod
    def _unfinished_key(sync_id: str, operation: str) -> dict[str, Any]:
        return serialize({"pk": f"UNFINISHED#{sync_id}", "sk": operation})

    def mark_unfinished(self, sync_id: str, operation: str, state: dict[str, Any]) -> None:
        """The run in `state` (its planned batches recorded) is the one the next run resumes."""
        self.client.put_item(
            TableName=self.table,
            Item=serialize({"pk": f"UNFINISHED#{sync_id}", "sk": operation, "state": json.dumps(state)}),
        )

    def unfinished(self, sync_id: str, operation: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key=self._unfinished_key(sync_id, operation), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        state: dict[str, Any] = json.loads(deserialize(response["Item"])["state"])
        return state

    def finished_action(self, sync_id: str, operation: str) -> dict[str, Any]:
        """A transaction action forgetting the unfinished run (written with the run's end)."""
        return {"Delete": {"TableName": self.table, "Key": self._unfinished_key(sync_id, operation)}}
