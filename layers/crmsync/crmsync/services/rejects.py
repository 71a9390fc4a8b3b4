"""What an operator does with rejects (SPEC R1): read, count, export, purge, replay, and recover what
reached the queue's dead-letter queue. The CLI's `crmsync rejects ...` verbs call this through `Operator`.

Rejects live in the reject store (`stores/rejects.py`); reading them changes nothing. Two things still
read the queue, each knowingly:
- the one-time move of rejects that earlier versions kept in the queue itself: on the first use of the
  store by an operator, every such message is stored (with its original time) and only then deleted;
  notices are left where they are. A marker in the store makes it run once, so the notices are received
  once, far below the queue's `maxReceiveCount`;
- `dlq`: what reached the dead-letter queue (earlier versions' peeks moved rejects there after ten
  reads) is shown, and on request redriven: rejects into the store, notices back to the queue.

Replay, per operation, once the data was fixed: an export reject exports its profile again; an import
reject reads its CRM id again (a population run, so the watermark does not move); a deletion reject
retries the delete of its CRM id. Runs take at most `MAX_INLINE_POPULATION` ids each. Once a replay run
has succeeded its rejects leave the store: the record went through, or the run refused it again and
stored a new reject, with the new error, in its place. A failed run removes nothing.

E-mail events have no runs (a queue pushes them, `services/events.py`): their replay sends each rejected
event back through the events queue for its sync, the message naming the rejects it replays, and returns
at once. The push removes each reject when its event settles, as a replay run would: written or already
on the timeline, or refused again (the new reject stays). Until then the reject stays in the store.

How long rejects wait is measured on a schedule (`measure_reject_ages`, the `rejects_age` function every
15 minutes): the age of each sync's oldest waiting reject becomes the `OldestRejectAge` metric, one series
per sync plus the stack-wide maximum that the reject-age alarm watches. A sync whose rejects wait for a
fix shows there however long ago it last ran; one with none shows 0.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..registry import OPERATIONS
from ..stores.rejects import NOTICE_KIND, RejectStore, is_legacy_message
from .events import requeue
from .runs import MAX_INLINE_POPULATION

logger = logging.getLogger(__name__)

MIGRATION = "queue-migration"
EMPTY_RECEIVES = 3
"""Short polls that sample a subset of the queue's servers: this many empty answers in a row end a drain."""

REPLAYABLE = {name: op.replay_id for name, op in OPERATIONS.items() if op.replay_id}
"""Which id of a reject a replay run is given, per operation (the registry says)."""

Runner = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]
"""Start a run of the sync with a population and wait for it: answers its run id and summary."""


@dataclass
class ReplayReport:
    sync_id: str
    rejects: int
    profiles: int
    operation: str = ""
    records: int = 0
    skipped: int = 0
    runs: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exported: int = 0
    applied: int = 0
    rejected_again: int = 0
    consumed: int = 0
    queued: int = 0
    """E-mail events sent back through the events queue (their rejects leave the store as they settle)."""


@dataclass
class DeadLetters:
    """What `crmsync rejects dlq SYNC` found for the sync, and what it moved when asked to."""

    sync_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    stored: int = 0
    requeued: int = 0


def replay_id(reject: dict[str, Any]) -> str | None:
    """The id a replay run is given for this reject, or None when it cannot be replayed."""
    name = REPLAYABLE.get(str(reject.get("operation")))
    if name is None:
        return None
    value = reject.get(name)
    if value is None and isinstance(reject.get("record"), dict):
        # A given id that was refused before any lookup is kept in its record only.
        record = reject["record"]
        value = record.get("crmId") if name == "crmId" else None
        if value is None and name == "crmId":
            value = record.get("Id")
    return str(value) if value else None


class RejectDesk:
    def __init__(self, store: RejectStore, sqs: Any, queue_url: str, dead_letter_url: str | None) -> None:
        self.store = store
        self.sqs = sqs
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url

    # -- the one-time move out of the queue ------------------------------------------------------
    def migrate(self) -> int:
        """Store the rejects earlier versions left in the queue, once per stack; answers how many."""
        if self.store.meta(MIGRATION) is not None:
            return 0
        moved = 0
        keep: list[str] = []
        try:
            for messages in self._drain(self.queue_url):
                legacy = []
                for message in messages:
                    body = _body(message)
                    if body is not None and is_legacy_message(body):
                        legacy.append((message, body))
                    else:
                        keep.append(message["ReceiptHandle"])
                if legacy:
                    self.store.put_messages([b for _, b in legacy], created_at=[_sent(m) for m, _ in legacy])
                    self._delete(self.queue_url, [m["ReceiptHandle"] for m, _ in legacy])
                    moved += len(legacy)
        finally:
            self._release(self.queue_url, keep)
        self.store.set_meta(MIGRATION, {"at": int(time.time()), "moved": moved})
        if moved:
            logger.info("rejects moved from the queue to the reject store", extra={"moved": moved})
        return moved

    # -- the dead-letter queue -------------------------------------------------------------------
    def dead_letters(self, sync_id: str, *, redrive: bool = False) -> DeadLetters:
        """The sync's messages in the dead-letter queue; with `redrive`, rejects are stored and notices
        sent back to the rejects queue, each deleted from the dead-letter queue only after that."""
        found = DeadLetters(sync_id=sync_id)
        if not self.dead_letter_url:
            return found
        keep: list[str] = []
        seen: set[str] = set()
        try:
            for messages in self._drain(self.dead_letter_url):
                for message in messages:
                    body = _body(message)
                    if body is None or body.get("syncId") != sync_id or message["MessageId"] in seen:
                        keep.append(message["ReceiptHandle"])
                        continue
                    seen.add(message["MessageId"])
                    kind = "notice" if body.get("kind") == NOTICE_KIND else "reject"
                    found.messages.append(
                        {
                            "messageId": message["MessageId"],
                            "kind": kind,
                            "sentAt": _sent(message),
                            "receiveCount": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                            **{k: body.get(k) for k in ("runId", "operation", "crmId", "errorSymbol", "count")},
                        }
                    )
                    if not redrive:
                        keep.append(message["ReceiptHandle"])
                    elif kind == "reject" and is_legacy_message(body):
                        self.store.put_messages([body], created_at=[_sent(message)])
                        self._delete(self.dead_letter_url, [message["ReceiptHandle"]])
                        found.stored += 1
                    else:
                        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=message["Body"])
                        self._delete(self.dead_letter_url, [message["ReceiptHandle"]])
                        found.requeued += 1
        finally:
            self._release(self.dead_letter_url, keep)
        return found

    # -- replay ----------------------------------------------------------------------------------
    def replay(
        self, sync_id: str, operation: str, run: Runner, *, normalize_id: Callable[[str], str] | None = None
    ) -> ReplayReport:
        """Run the operation again over its rejects' ids. `normalize_id` writes a CRM id as the CRM answers
        it (the connector's rule): a reject stored with a 15-character Salesforce id (a transfer file, `--ids`)
        and the replay run's reject of the same record are one record, counted once and rejected again."""
        same = normalize_id or str
        rejects = [r for r in self.store.rejects(sync_id, records=True) if r.get("operation") == operation]
        ids: dict[str, list[str]] = {}
        skipped = 0
        for reject in rejects:
            value = replay_id(reject)
            if value is None:
                skipped += 1
                continue
            ids.setdefault(same(value), []).append(str(reject["rejectId"]))
        report = ReplayReport(
            sync_id=sync_id,
            operation=operation,
            rejects=len(rejects),
            profiles=len(ids) if operation == "export" else 0,
            records=len(ids),
            skipped=skipped,
        )
        chosen = list(ids)
        for start in range(0, len(chosen), MAX_INLINE_POPULATION):
            chunk = chosen[start : start + MAX_INLINE_POPULATION]
            run_id, report.summary = run(sync_id, {"ids": chunk})
            report.runs.append(run_id)
            if report.summary.get("status") != "SUCCEEDED":
                return report
            again = {same(i) for r in self.store.rejects(sync_id, run_id=run_id) if (i := replay_id(r))}
            refused = sum(1 for i in chunk if i in again)
            report.rejected_again += refused
            if operation == "export":
                report.exported += len(chunk) - refused
            report.applied += len(chunk) - refused
            report.consumed += self.store.delete(sync_id, [rid for i in chunk for rid in ids[i]])
        return report

    def replay_events(self, sync_id: str, events_queue_url: str) -> ReplayReport:
        """Send the events sync's rejected events back through the events queue, one message per event
        naming every reject of it; a reject without its event (a record lost from S3) is skipped."""
        rejects = [r for r in self.store.rejects(sync_id, records=True) if r.get("operation") == "events"]
        events: dict[str, tuple[dict[str, Any], list[str]]] = {}
        skipped = 0
        for reject in rejects:
            event = reject.get("record")
            if not isinstance(event, dict) or not event.get("event_id"):
                skipped += 1
                continue
            events.setdefault(str(event["event_id"]), (event, []))[1].append(str(reject["rejectId"]))
        report = ReplayReport(
            sync_id=sync_id,
            operation="events",
            rejects=len(rejects),
            profiles=0,
            records=len(events),
            skipped=skipped,
        )
        report.queued = requeue(self.sqs, events_queue_url, sync_id, events.values())
        return report

    # -- queue plumbing --------------------------------------------------------------------------
    def _drain(self, url: str) -> Iterator[list[dict[str, Any]]]:
        """Receive the queue's messages ten at a time (hidden for a minute) until it answers empty
        `EMPTY_RECEIVES` times in a row."""
        empty = 0
        while empty < EMPTY_RECEIVES:
            response = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = list(response.get("Messages", []))
            if not messages:
                empty += 1
                continue
            empty = 0
            yield messages

    def _delete(self, url: str, handles: list[str]) -> None:
        for start in range(0, len(handles), 10):
            self.sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles[start : start + 10])],
            )

    def _release(self, url: str, handles: list[str]) -> None:
        """Make messages received but not moved visible again at once."""
        for start in range(0, len(handles), 10):
            self.sqs.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                    for i, h in enumerate(handles[start : start + 10])
                ],
            )


class ScheduledEvent(BaseModel):
    """What an EventBridge schedule sends (`detail-type: Scheduled Event`); nothing in it is needed."""

    model_config = ConfigDict(extra="allow")


class SyncGauge(BaseModel):
    """One value per applied sync, emitted as the metric `name` with the `sync` dimension (one custom
    metric per sync) and, stack-wide, as their maximum."""

    name: str
    unit: str
    values: dict[str, float]


def measure_reject_ages(event: ScheduledEvent, container: Any) -> SyncGauge:
    """The age in seconds of each applied sync's oldest waiting reject (0 when none waits): one read
    of the reject store's `byAge` index per sync."""
    now = datetime.now(UTC)
    store = container.reject_store
    ages: dict[str, float] = {}
    for sync in container.definitions.list_syncs():
        oldest = store.oldest(str(sync["id"]))
        ages[str(sync["id"])] = 0.0 if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 1)
    logger.info("oldest waiting reject per sync", extra={"ages": ages})
    return SyncGauge(name="OldestRejectAge", unit="Seconds", values=ages)


def _body(message: dict[str, Any]) -> dict[str, Any] | None:
    try:
        body = json.loads(message["Body"])
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def _sent(message: dict[str, Any]) -> float:
    stamp = message.get("Attributes", {}).get("SentTimestamp")
    return int(stamp) / 1000 if stamp else time.time()


def _record_of(reject: dict[str, Any]) -> dict[str, Any]:
    record = reject.get("record")
    return record if isinstance(record, dict) else {}


def data_loader_error_file(rejects: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rejects as Salesforce Data Loader writes its error file: each record's columns, then `ERROR`
    holding `<errorSymbol>:<errorMessage>`. Columns are the union of the records', in first-seen order."""
    records: list[dict[str, Any]] = [_record_of(r) for r in rejects]
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(record))
    header = [*columns, "ERROR"]
    rows = []
    for reject, record in zip(rejects, records, strict=True):
        cells = ["" if record.get(c) is None else str(record[c]) for c in columns]
        rows.append([*cells, f"{reject.get('errorSymbol', '')}:{reject.get('errorMessage', '')}"])
    return header, rows
