"""Rejects: every refused record is logged as a warning and, when routing is on, sent to SQS (SPEC R1).

The warning carries the error code, the field names and the ids - never the CRM's message, which quotes
the refused values (`Email: invalid email address: jean.dupont@example`, `'+33 6 12 34 56 78' is not an
integer`) in forms no mask can list (SPEC N4). The message routed to the queue keeps it whole, with the
record, for whoever inspects or replays the reject.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..domain.records import Reject

logger = logging.getLogger(__name__)

SQS_BATCH = 10
SQS_MAX_BYTES = 256 * 1024
OFFLOAD_ABOVE_BYTES = 200 * 1024


@dataclass(frozen=True)
class RejectContext:
    sync_id: str
    run_id: str
    operation: str
    direction: str


class RejectRouter:
    """Routes rejects to the rejects queue; a record too large for SQS is stored in S3 and referenced."""

    def __init__(self, sqs: Any, queue_url: str, s3: Any = None, bucket: str | None = None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.s3 = s3
        self.bucket = bucket

    def route(self, rejects: Sequence[Reject], context: RejectContext, *, enabled: bool = True) -> int:
        """Log each reject; send them when `enabled`. Returns how many were sent."""
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
        entries = [self._entry(reject, context) for reject in rejects]
        sent = 0
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            entry_size = len(entry["MessageBody"].encode())
            if batch and (len(batch) == SQS_BATCH or size + entry_size > SQS_MAX_BYTES - 4096):
                sent += self._send(batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            sent += self._send(batch)
        return sent

    def _entry(self, reject: Reject, context: RejectContext) -> dict[str, Any]:
        message = reject.as_message(
            sync_id=context.sync_id,
            run_id=context.run_id,
            operation=context.operation,
            direction=context.direction,
        )
        # A retried step may route the same reject again; readers de-duplicate on this id. An export
        # reject may have no CRM id yet: its profile id tells it apart.
        identity = f"{context.run_id}|{reject.crm_id}|{reject.error_symbol}"
        if reject.profile_id is not None:
            identity += f"|{reject.profile_id}"
        message["rejectId"] = hashlib.sha256(identity.encode()).hexdigest()[:24]
        body = json.dumps(message, ensure_ascii=False, default=str)
        if len(body.encode()) > OFFLOAD_ABOVE_BYTES:
            body = json.dumps(self._offload(message, context), ensure_ascii=False, default=str)
        return {
            "Id": uuid.uuid4().hex,
            "MessageBody": body,
            "MessageAttributes": {
                "syncId": {"DataType": "String", "StringValue": context.sync_id},
                "runId": {"DataType": "String", "StringValue": context.run_id},
                "errorSymbol": {"DataType": "String", "StringValue": reject.error_symbol},
            },
        }

    def _offload(self, message: dict[str, Any], context: RejectContext) -> dict[str, Any]:
        if self.s3 is None or not self.bucket:
            raise RuntimeError("a reject larger than 200 KB needs the data bucket to be stored")
        key = f"rejects/{context.sync_id}/{context.run_id}/{uuid.uuid4().hex}.json"
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(message["record"], default=str).encode(),
            ContentType="application/json",
        )
        return {**message, "record": None, "recordS3Uri": f"s3://{self.bucket}/{key}"}

    def _send(self, batch: list[dict[str, Any]]) -> int:
        pending = batch
        for _ in range(5):
            response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            failed_ids = {f["Id"] for f in response.get("Failed", []) if not f.get("SenderFault")}
            sender_faults = [f for f in response.get("Failed", []) if f.get("SenderFault")]
            if sender_faults:
                raise RuntimeError(f"SQS refused {len(sender_faults)} rejects: {sender_faults[0].get('Message')}")
            if not failed_ids:
                return len(batch)
            pending = [e for e in pending if e["Id"] in failed_ids]
        raise RuntimeError(f"SQS kept failing {len(pending)} rejects")
