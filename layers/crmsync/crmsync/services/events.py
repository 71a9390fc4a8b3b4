"""E-mail events onto the CRM timeline (SPEC M1-M5): the push behind the events queue, and the back-fill.

Not a state machine (DESIGN §1): the events queue triggers the push function with batches of messages
(its event-source mapping: a batch size above 10 and a batching window), and the function answers which
messages to deliver again (`batchItemFailures`). One batch goes through four steps:

1. **Parse.** A body that is not a valid event is sent to the events dead-letter queue with the reason as
   its `reason` message attribute, then acknowledged: it never holds the others back.
2. **Archive.** Every valid event, of every type, switched on or not, is written to the data bucket as
   JSON Lines under `events/archive/date=<UTC day of the event>/` before anything is pushed, so a
   back-fill finds it. If the archive cannot be written, the whole batch is delivered again.
3. **Resolve.** Per events sync (one CRM connection each), the events whose type is switched on find the
   CRM record their profile is linked to (contact first, then lead, by default). A profile with none yet
   is retried until `unlinked_retry_hours` after the message was sent, then becomes a reject.
4. **Write,** at the CRM's batch size, every record keyed by the event id (`insert_once`): Salesforce
   upserts by the External ID field (200 a call), Dataverse PATCHes the activity's UUIDv5 id with
   `If-None-Match: *` in a `$batch` (412 = already on the timeline, done). A record the CRM refuses
   becomes a reject and is acknowledged; a throttled, unavailable or uncertain call is delivered again
   (the key makes the second write harmless).

A back-fill (SPEC M4) reads the archive of the last N days and sends the events of the types switched
on back through the events queue, tagged with the sync (`backfillSync`): the push then writes them to
that sync only and does not archive them again.

A replay of the sync's rejects (`crmsync rejects replay`, once the data was fixed: a profile linked, a
field widened) sends each rejected event back the same way, its message also naming the rejects it replays
(`replayRejects`). There is no run to wait for: the push settles each one as it settles any event, and a
reject leaves the store when its event settles - written, already on the timeline, or refused again (then
its new reject is stored; the same refusal keeps the same reject id). An event still waiting (a profile
without a record yet, a throttled CRM) keeps its reject until then.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..config import EVENT_TYPES, DynamicsConnection, EventsSync, SalesforceConnection
from ..connectors.port import RecordWrite, WriteRequest, WriteResult
from ..domain.events import MarketingEvent, activity_fields, activity_id, iso_utc, parse_event
from ..domain.records import Reject
from ..errors import CrmOutcomeUnknown, CrmsyncError
from ..stores.definitions import StoredSync
from ..stores.profiles import link_name
from ..stores.rejects import RejectContext, reject_id

logger = logging.getLogger(__name__)

ARCHIVE_PREFIX = "events/archive/"
BACKFILL_ATTRIBUTE = "backfillSync"
REPLAY_ATTRIBUTE = "replayRejects"
"""Comma-separated ids of the stored rejects a requeued event replays."""
REASON_ATTRIBUTE = "reason"
UNLINKED = "UNLINKED_PROFILE"
"""The reject code of an event whose profile found no CRM record before `unlinked_retry_hours`."""
RETRYABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG", "SERVER_UNAVAILABLE"})
"""Salesforce per-record codes that say "try again", not "this record is wrong"."""
SQS_BATCH = 10
EVENTS_RUN = "events"
"""The `runId` of events rejects: the push has no runs; an event's reject is found by its event id."""


@dataclass(frozen=True)
class EventMessage:
    """One message of the events queue, as the event-source mapping delivers it."""

    message_id: str
    body: str
    sent_at: datetime
    backfill_sync: str | None = None
    replay_rejects: tuple[str, ...] = ()

    @classmethod
    def from_sqs_record(cls, record: dict[str, Any]) -> EventMessage:
        attributes = record.get("attributes") or {}
        sent = attributes.get("SentTimestamp")
        sent_at = datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else datetime.now(UTC)
        message_attributes = record.get("messageAttributes") or {}
        backfill = (message_attributes.get(BACKFILL_ATTRIBUTE) or {}).get("stringValue")
        replays = (message_attributes.get(REPLAY_ATTRIBUTE) or {}).get("stringValue") or ""
        return cls(
            message_id=record["messageId"],
            body=record.get("body", ""),
            sent_at=sent_at,
            backfill_sync=backfill,
            replay_rejects=tuple(r for r in replays.split(",") if r),
        )


@dataclass
class PushReport:
    """What one batch did, per message and in counts (logged and turned into metrics)."""

    retry: set[str] = field(default_factory=set)
    malformed: int = 0
    archived: int = 0
    created: int = 0
    already: int = 0
    rejected: int = 0
    unlinked_waiting: int = 0
    switched_off: int = 0
    duplicates: int = 0
    crm_calls: int = 0
    replayed: int = 0
    """Stored rejects whose replayed event settled, and that left the store."""

    def metrics(self) -> dict[str, int]:
        return {
            "EventsMalformed": self.malformed,
            "EventsArchived": self.archived,
            "EventsCreated": self.created,
            "EventsAlreadyThere": self.already,
            "EventsDuplicated": self.duplicates,
            "EventsRejected": self.rejected,
            "EventsWaitingForLink": self.unlinked_waiting,
            "EventsDeliveredAgain": len(self.retry),
            "CrmApiCalls": self.crm_calls,
        }

    def merge(self, other: PushReport) -> None:
        self.retry |= other.retry
        for name in (
            "created",
            "already",
            "rejected",
            "unlinked_waiting",
            "switched_off",
            "duplicates",
            "crm_calls",
            "replayed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class _Parsed:
    message: EventMessage
    event: MarketingEvent


class EventPusher:
    """The push of one batch of the events queue; `container` gives the stores and CRM writers."""

    def __init__(self, container: Any, *, now: datetime | None = None) -> None:
        self.container = container
        self.now = now or datetime.now(UTC)

    # -- the batch ---------------------------------------------------------------------------------
    def push(self, messages: Sequence[EventMessage]) -> PushReport:
        report = PushReport()
        parsed: list[_Parsed] = []
        malformed: list[tuple[EventMessage, str]] = []
        for message in messages:
            try:
                parsed.append(_Parsed(message, parse_event(message.body)))
            except ValueError as problem:
                malformed.append((message, str(problem)))
        if malformed:
            report.retry |= self._dead_letter(malformed)
            report.malformed = len(malformed) - len(report.retry)
        fresh = [p for p in parsed if p.message.backfill_sync is None]
        try:
            report.archived = self._archive(fresh)
        except Exception:
            logger.exception("the events archive could not be written; the batch is delivered again")
            report.retry |= {p.message.message_id for p in parsed}
            return report
        syncs = self._syncs(parsed)
        for stored in syncs:
            sync = stored.sync
            assert isinstance(sync, EventsSync)
            chosen = [
                p
                for p in parsed
                if (p.message.backfill_sync == sync.id)
                or (p.message.backfill_sync is None and sync.enabled and p.event.type in sync.types.on())
            ]
            report.switched_off += sum(1 for p in parsed if p.message.backfill_sync is None and p not in chosen)
            if chosen:
                report.merge(self._push_sync(stored, chosen))
        logger.info(
            "events batch: %d messages, %d malformed, %d archived, %d created, %d already there, %d rejected, "
            "%d waiting for their profile's CRM record, %d to deliver again, %d replayed rejects settled",
            len(messages),
            report.malformed,
            report.archived,
            report.created,
            report.already,
            report.rejected,
            report.unlinked_waiting,
            len(report.retry),
            report.replayed,
            extra={"crm_calls": report.crm_calls, "syncs": [s.sync.id for s in syncs]},
        )
        return report

    # -- 1. malformed events -----------------------------------------------------------------------
    def _dead_letter(self, malformed: list[tuple[EventMessage, str]]) -> set[str]:
        """Send each malformed event to the events DLQ with its reason; those SQS refused stay to retry."""
        url = self.container.settings.events_dlq_url
        if not url:
            logger.error("no events dead-letter queue configured (EVENTS_DLQ_URL); malformed events are retried")
            return {m.message_id for m, _ in malformed}
        failed: set[str] = set()
        sqs = self.container.aws.client("sqs")
        for start in range(0, len(malformed), SQS_BATCH):
            chunk = malformed[start : start + SQS_BATCH]
            entries = [
                {
                    "Id": str(index),
                    "MessageBody": message.body or "(empty)",
                    "MessageAttributes": {
                        REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000] or "malformed"},
                        "sourceMessageId": {"DataType": "String", "StringValue": message.message_id},
                    },
                }
                for index, (message, reason) in enumerate(chunk)
            ]
            for message, reason in chunk:
                logger.warning(
                    "malformed event moved to the dead-letter queue: %s",
                    reason[:200],
                    extra={"message_id": message.message_id},
                )
            response = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            failed |= {chunk[int(f["Id"])][0].message_id for f in response.get("Failed", [])}
        return failed

    # -- 2. archive --------------------------------------------------------------------------------
    def _archive(self, parsed: Sequence[_Parsed]) -> int:
        """One JSON Lines object per UTC day of the events, named after the batch's message ids (a
        redelivered batch writes the same object again)."""
        by_day: dict[date, list[_Parsed]] = defaultdict(list)
        for item in parsed:
            by_day[item.event.at_utc.date()].append(item)
        s3 = self.container.aws.client("s3")
        for day, items in by_day.items():
            digest = hashlib.sha256("|".join(sorted(i.message.message_id for i in items)).encode()).hexdigest()[
                :32
            ]
            body = "".join(json.dumps(i.event.archived(), ensure_ascii=False) + "\n" for i in items)
            s3.put_object(
                Bucket=self.container.settings.data_bucket,
                Key=f"{ARCHIVE_PREFIX}date={day.isoformat()}/{digest}.jsonl",
                Body=body.encode("utf-8"),
                ContentType="application/x-ndjson",
            )
        return len(parsed)

    # -- 3. which syncs ----------------------------------------------------------------------------
    def _syncs(self, parsed: Sequence[_Parsed]) -> list[StoredSync]:
        syncs = events_syncs(self.container)
        named = {p.message.backfill_sync for p in parsed if p.message.backfill_sync is not None}
        for missing in sorted(named - {s.sync.id for s in syncs}):
            logger.warning("back-filled events name the sync %s, which is not applied; dropped", missing)
        return syncs

    def _push_sync(self, stored: StoredSync, items: list[_Parsed]) -> PushReport:
        sync = stored.sync
        assert isinstance(sync, EventsSync)
        connection = stored.connection
        report = PushReport()
        # One record per event: a duplicate in the same batch settles as its first copy does (Salesforce
        # refuses an upsert call naming one external id twice).
        firsts: dict[str, _Parsed] = {}
        copies: dict[str, list[str]] = defaultdict(list)
        duplicates: list[_Parsed] = []
        for item in items:
            first = firsts.setdefault(item.event.event_id, item)
            if first is not item:
                copies[first.message.message_id].append(item.message.message_id)
                duplicates.append(item)
        report.duplicates = sum(len(c) for c in copies.values())
        items = list(firsts.values())
        rejects: list[tuple[Reject, str]] = []
        profiles = {
            p["profileId"]: p for p in self.container.profiles.get_many({i.event.profile_id for i in items})
        }
        regarding = sync.regarding_objects(connection.kind)
        ready: list[tuple[_Parsed, str, str]] = []
        for item in items:
            links = {
                k.lower(): v for k, v in (profiles.get(item.event.profile_id, {}).get("externalIds") or {}).items()
            }
            found = next(
                (
                    (obj, links[link_name(connection.name, obj).lower()])
                    for obj in regarding
                    if link_name(connection.name, obj).lower() in links
                ),
                None,
            )
            if found is not None:
                ready.append((item, found[0], found[1]))
                continue
            waited = self.now - item.message.sent_at
            if waited < timedelta(hours=sync.unlinked_retry_hours):
                report.retry.add(item.message.message_id)
                report.unlinked_waiting += 1
                continue
            rejects.append(
                _reject(
                    item,
                    UNLINKED,
                    f"profile has no {' or '.join(regarding)} on connection {connection.name} after "
                    f"{sync.unlinked_retry_hours:g} hours",
                )
            )
        if ready:
            try:
                writer = self.container.writer(connection)
            except CrmsyncError as exc:
                logger.error("events sync %s cannot reach its CRM: %s", sync.id, type(exc).__name__)
                report.retry |= {item.message.message_id for item, _, _ in ready}
                ready = []
            if ready:
                calls_before = writer.api_calls
                records = self._records(sync, connection, ready)
                size = sync.records_per_call(connection.kind)
                for start in range(0, len(ready), size):
                    self._write(
                        sync,
                        connection,
                        writer,
                        ready[start : start + size],
                        records[start : start + size],
                        report,
                        rejects,
                    )
                report.crm_calls += writer.api_calls - calls_before
        routed = self._route(sync, rejects, report) if rejects else set()
        for first_id, others in copies.items():
            if first_id in report.retry:
                report.retry.update(others)
        self._settle_replays(sync, [*firsts.values(), *duplicates], routed, report)
        return report

    def _settle_replays(
        self, sync: EventsSync, items: Sequence[_Parsed], stored: set[str], report: PushReport
    ) -> None:
        """Remove the rejects that settled events replayed, except one the same refusal stored again."""
        settled = {
            rid
            for item in items
            if item.message.message_id not in report.retry
            for rid in item.message.replay_rejects
        } - stored
        if not settled:
            return
        try:
            report.replayed += self.container.reject_store.delete(sync.id, sorted(settled))
        except Exception:
            # The events are settled; their old rejects stay, and a later replay finds them already there.
            logger.exception("replayed rejects of events sync %s could not be removed", sync.id)

    # -- 4. records and writes ---------------------------------------------------------------------
    def _records(
        self,
        sync: EventsSync,
        connection: SalesforceConnection | DynamicsConnection,
        ready: list[tuple[_Parsed, str, str]],
    ) -> list[RecordWrite]:
        names = sync.field_names(connection.kind)
        regarding = sync.regarding_objects(connection.kind)
        owner_field = names.pop("owner", None)
        out: list[RecordWrite] = []
        if isinstance(connection, SalesforceConnection):
            for item, obj, crm_id in ready:
                fields = activity_fields(item.event, names)
                fields[regarding[obj]] = crm_id
                if sync.owner and owner_field:
                    fields[owner_field] = sync.owner
                out.append(RecordWrite(ref=item.message.message_id, fields=fields))
            return out
        connector = self.container.connector(connection)
        table = connector.table(sync.object)
        for item, obj, crm_id in ready:
            fields = activity_fields(item.event, names)
            fields[table.primary_id] = activity_id(item.event.event_id)
            regarded = connector.table(obj)
            fields[f"regardingobjectid_{regarded.logical_name}_{table.logical_name}@odata.bind"] = (
                f"/{regarded.entity_set}({crm_id})"
            )
            if sync.owner and owner_field:
                fields[f"{owner_field}@odata.bind"] = f"/systemusers({sync.owner})"
            out.append(RecordWrite(ref=item.message.message_id, fields=fields))
        return out

    def _write(
        self,
        sync: EventsSync,
        connection: SalesforceConnection | DynamicsConnection,
        writer: Any,
        chunk: list[tuple[_Parsed, str, str]],
        records: list[RecordWrite],
        report: PushReport,
        rejects: list[tuple[Reject, str]],
    ) -> None:
        if isinstance(connection, SalesforceConnection):
            key = sync.field_names(connection.kind)["event_id"]
        else:
            key = self.container.connector(connection).table(sync.object).primary_id
        request = WriteRequest(object=sync.object, kind="insert_once", records=tuple(records), key_field=key)
        by_ref = {item.message.message_id: item for item, _, _ in chunk}
        results: Iterable[WriteResult]
        try:
            results = writer.write(request, _NoJournal())
        except CrmOutcomeUnknown as unknown:
            # The records answered are settled; the rest go back to the queue (their key makes a
            # second write harmless).
            results = [r for r in unknown.completed if isinstance(r, WriteResult)]
            answered = {r.ref for r in results}
            report.retry |= set(by_ref) - answered
        except CrmsyncError as exc:
            logger.warning(
                "events sync %s: a call of %d records failed (%s); delivered again",
                sync.id,
                len(records),
                type(exc).__name__,
            )
            report.retry |= set(by_ref)
            return
        for result in results:
            item = by_ref[result.ref]
            if result.success:
                if result.created:
                    report.created += 1
                else:
                    report.already += 1
                continue
            codes = {e.code for e in result.errors}
            if codes & RETRYABLE_RECORD_CODES:
                report.retry.add(result.ref)
                continue
            first = result.errors[0]
            rejects.append(_reject(item, first.code, first.message, first.fields))

    def _route(self, sync: EventsSync, rejects: list[tuple[Reject, str]], report: PushReport) -> set[str]:
        """Rejects go to the reject store, one per event (its id makes a second refusal of the same event
        overwrite the first); if the store fails, the events are delivered again, not lost. Answers the
        ids of the rejects stored."""
        context = RejectContext(sync_id=sync.id, run_id=EVENTS_RUN, operation="events", direction="to_crm")
        try:
            stored = self.container.rejects.route([r for r, _ in rejects], context, enabled=sync.rejects.route)
        except Exception:
            logger.exception("rejects of events sync %s could not be stored; delivered again", sync.id)
            report.retry |= {message_id for _, message_id in rejects}
            return set()
        report.rejected += len(rejects)
        return {reject_id(r, context) for r, _ in rejects} if stored else set()


class _NoJournal:
    """Events write through collections and `$batch` only; nothing to find again after a crash."""

    job_id: str | None = None

    def record_job(self, job_id: str | None) -> None:
        self.job_id = job_id


def _reject(item: _Parsed, code: str, message: str, fields: tuple[str, ...] = ()) -> tuple[Reject, str]:
    reject = Reject(
        error_symbol=code,
        error_message=message,
        record=item.event.archived(),
        fields=fields,
        profile_id=item.event.profile_id,
        reference=item.event.event_id,
    )
    return reject, item.message.message_id


def push_events(records: list[dict[str, Any]], container: Any) -> PushReport:
    """The events function's service: one batch of SQS records from the event-source mapping."""
    return EventPusher(container).push([EventMessage.from_sqs_record(r) for r in records])


# -- the syncs ---------------------------------------------------------------------------------------
def events_syncs(container: Any) -> list[StoredSync]:
    """Every applied events sync with its connection, read for each batch (a scan of the small
    definitions table and a read per sync), so a switch applied by `config apply` holds from the next
    batch on."""
    store = container.definitions
    return [store.sync(s["id"]) for s in store.list_syncs() if s.get("operation") == "events"]


# -- back-fill (SPEC M4) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BackfillReport:
    sync_id: str
    types: tuple[str, ...]
    days: int
    read: int
    sent: int


def archived_events(s3: Any, bucket: str, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """The archived events whose time is in [since, until), each event id once."""
    seen: set[str] = set()
    day = since.date()
    while day <= until.date():
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{ARCHIVE_PREFIX}date={day.isoformat()}/"):
            for entry in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().decode("utf-8")
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    at = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))
                    if event["event_id"] in seen or not since <= at < until:
                        continue
                    seen.add(event["event_id"])
                    yield event
        day += timedelta(days=1)


def backfill(
    container: Any,
    queue_url: str,
    sync: EventsSync,
    *,
    days: int | None = None,
    types: Iterable[str] | None = None,
    now: datetime | None = None,
) -> BackfillReport:
    """Send the archived events of the last `days` (default: the sync's `backfill_days`) of `types`
    (default: the types switched on) back through the events queue, for this sync only. Idempotent: the
    push writes each event under its own key, so a second back-fill creates nothing new."""
    now = now or datetime.now(UTC)
    days = days or sync.backfill_days
    wanted = tuple(t for t in EVENT_TYPES if t in (set(types) if types is not None else sync.types.on()))
    read = sent = 0
    until = now
    since = until - timedelta(days=days)

    def chosen() -> Iterator[tuple[dict[str, Any], Sequence[str]]]:
        nonlocal read
        s3, bucket = container.aws.client("s3"), container.settings.data_bucket
        for event in archived_events(s3, bucket, since, until):
            read += 1
            if event.get("type") in wanted:
                yield event, ()

    if wanted:
        sent = requeue(container.aws.client("sqs"), queue_url, sync.id, chosen())
    logger.info(
        "back-fill of %s: %d archived events read, %d sent (%s, %d days)",
        sync.id,
        read,
        sent,
        ",".join(wanted) or "no type",
        days,
    )
    return BackfillReport(sync_id=sync.id, types=wanted, days=days, read=read, sent=sent)


def requeue(sqs: Any, queue_url: str, sync_id: str, events: Iterable[tuple[dict[str, Any], Sequence[str]]]) -> int:
    """Send events back through the events queue for one sync (`backfillSync`: the push writes them to
    that sync only and does not archive them again), each with the ids of the rejects it replays, if any.
    Ten a call; answers how many were sent. Raises when SQS refuses some."""
    sent = 0
    pending: list[dict[str, Any]] = []

    def flush() -> int:
        if not pending:
            return 0
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=pending)
        if response.get("Failed"):
            raise CrmsyncError(f"SQS refused {len(response['Failed'])} of {len(pending)} requeued events")
        count = len(pending)
        pending.clear()
        return count

    for event, replays in events:
        attributes = {BACKFILL_ATTRIBUTE: {"DataType": "String", "StringValue": sync_id}}
        if replays:
            attributes[REPLAY_ATTRIBUTE] = {"DataType": "String", "StringValue": ",".join(replays)}
        pending.append(
            {
                "Id": str(len(pending)),
                "MessageBody": json.dumps(event, ensure_ascii=False),
                "MessageAttributes": attributes,
            }
        )
        if len(pending) == SQS_BATCH:
            sent += flush()
    return sent + flush()


def switched_on(before: EventsSync | None, after: EventsSync) -> set[str]:
    """The types `config apply` turns on: on now and not pushed before (a new or re-enabled sync: all)."""
    if not after.enabled:
        return set()
    if before is None or not before.enabled or before.connection != after.connection:
        return after.types.on()
    return after.types.on() - before.types.on()


__all__ = [
    "ARCHIVE_PREFIX",
    "BACKFILL_ATTRIBUTE",
    "REASON_ATTRIBUTE",
    "REPLAY_ATTRIBUTE",
    "UNLINKED",
    "BackfillReport",
    "EventMessage",
    "EventPusher",
    "PushReport",
    "archived_events",
    "backfill",
    "events_syncs",
    "iso_utc",
    "push_events",
    "requeue",
    "switched_on",
]
