"""The two-way sync, one use case per step of the `two-way` state machine: start, one batch, finish
(SPEC O1-O3; the per-field-priority sync, B1-B2, extends the per-field decision).

Start reads what changed on each side since the last run - the CRM's records modified in its window
(plus, per field, its history or audit rows), the profiles the change index shows changed in the
marketing window - and decides each field of each linked record with the judge (`domain.two_way`).
The decisions are a snapshot in S3, split into batches in the batch ledger, so a run that stops half-way
is resumed by the next one with the same decisions. A batch writes the CRM side through the writer
(sObject Collections, 200 records a call; Dataverse `$batch`, 1,000), then the profiles, then the write
ledger and the consent ledger. A batch found interrupted reads the CRM values and the profiles again and
writes only what does not hold its decided value yet: nothing is written twice, nothing is lost.

Two watermarks move at the end: the CRM window's (CRM server time) and the marketing window's (our
clock), so skew between the two clocks never hides a change.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import DEFAULT_WATERMARK_FIELD, TwoWaySync
from ..connectors.port import (
    CrmConnector,
    FieldHistoryConnector,
    RecordQuery,
    RecordWrite,
    WriteJournal,
    WriteRequest,
)
from ..domain.conversions import parse_crm_datetime_or_none
from ..domain.records import Reject
from ..domain.two_way import (
    Change,
    FieldChangeRow,
    LatestWins,
    TimeSource,
    crm_change,
    decide,
    marketing_change,
    value_hash,
)
from ..domain.types import CrmFieldType
from ..domain.windows import format_watermark, parse_watermark
from ..errors import ConfigurationError
from ..stores.batches import BatchAlreadyDone
from ..stores.profiles import link_name
from ..stores.rejects import RejectContext
from ..stores.two_way import ConsentChange, LedgerEntry
from ..wiring import Container
from .batched_runs import LedgerJournal, ledger_counts, plan_batches, read_part, resumed_run, write_snapshot
from .runs import RunIdentity, StartRunEvent, close_run, leased, next_window, normalize_started_at, sync_to_start

logger = logging.getLogger(__name__)

OPERATION = "two_way"
DIRECTION = "two-way"
PROFILE_CHUNK = 500


def as_flag(value: Any) -> bool:
    """An opt-out flag as both sides hold it: true, "true", "yes", "1", 1 - anything else is false."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return value is True or (isinstance(value, int | float) and value == 1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------- payloads
class TwoWayRun(RunIdentity):
    """The run context every step carries; `ledger_run` names the run whose batches these are."""

    trigger: str
    connection: str
    crm_kind: str
    object: str
    id_field: str
    ledger_run: str
    resumed_from: str | None = None
    prefix: str
    manifest_key: str
    direction: str
    batches: int = 0
    records: int = 0
    max_concurrency: int = 4
    route_rejects: bool = True
    marketing_option: str | None = None
    marketing_end: str | None = None
    marketing_previous: str | None = None
    tracking: dict[str, str] = Field(default_factory=dict)
    """CRM field -> where its change times come from (history, audit, record_timestamp)."""
    decided: dict[str, int] = Field(default_factory=dict)
    """What the start step found and decided: records read per side, conflicts, reasons, echoes."""


class TwoWayState(BaseModel):
    run: TwoWayRun
    api_calls: int = 0


class TwoWayBatchEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    run: TwoWayRun
    number: int


class TwoWayBatchOutcome(BaseModel):
    number: int
    skipped: bool = False
    counts: dict[str, int] = Field(default_factory=dict)


class SideSummary(BaseModel):
    records_read: int = 0
    records_written: int = 0
    fields_written: int = 0
    echoes_skipped: int = 0


class TwoWaySummary(BaseModel):
    """The result of a two-way run, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = OPERATION
    direction: str
    resumed_from: str | None = None
    window: dict[str, str | None] | None = None
    marketing_window: dict[str, str | None] | None = None
    crm: SideSummary
    marketing: SideSummary
    changes: int = 0
    conflicts: int = 0
    decided_by: dict[str, int] = Field(default_factory=dict)
    time_sources: dict[str, int] = Field(default_factory=dict)
    tracking: dict[str, str] = Field(default_factory=dict)
    consent_rows: int = 0
    deferred: int = 0
    rejected: int = 0
    unlinked: int = 0
    api_calls: int = 0
    batches: int = 0
    watermark_moved: bool = False


# ------------------------------------------------------------------------------------- start
def start_two_way(event: StartRunEvent, container: Container) -> TwoWayState:
    """Take the lease, then resume the unfinished run, or read both sides, decide, and plan batches."""
    sync, connection, instance = sync_to_start(container, event, TwoWaySync, "two-way", "two-way syncs")
    with leased(container, sync.id, event.run_id):
        connector = container.connector(connection)
        calls_before = connector.api_calls
        started_at = normalize_started_at(event.started_at)
        run = resumed_run(
            container,
            TwoWayRun,
            event,
            operation=OPERATION,
            started_at=started_at,
            max_concurrency=sync.max_concurrency,
            population_given=False,
        )
        if run is None:
            description = connector.describe(sync.object)
            run = TwoWayRun(
                sync_id=sync.id,
                run_id=event.run_id,
                started_at=started_at,
                trigger=event.trigger,
                connection=connection.name,
                crm_kind=connection.kind,
                object=description.name,
                id_field=description.id_field,
                ledger_run=event.run_id,
                prefix=f"runs/{sync.id}/{event.run_id}",
                manifest_key=f"runs/{sync.id}/{event.run_id}/manifest.json",
                direction=sync.opt_outs.direction,
                max_concurrency=sync.max_concurrency,
                route_rejects=sync.rejects.route,
            )
            if sync.opt_outs.direction != "disabled":
                fields = _checked_fields(sync, description.fields)
                _plan(run, container, sync, instance, connector, fields)
        container.runs.record_start(
            run.key,
            operation=OPERATION,
            trigger=event.trigger,
            details={
                "window": {"option": run.option, "start": run.window_start, "end": run.window_end},
                "object": run.object,
                "connection": connection.name,
                "direction": run.direction,
                "ledgerRun": run.ledger_run,
                "batches": run.batches,
                "records": run.records,
            },
        )
        logger.info(
            "two-way run resumed" if run.resumed_from else "two-way run started",
            extra={"sync_id": sync.id, "run_id": run.run_id, "batches": run.batches, "records": run.records},
        )
        return TwoWayState(run=run, api_calls=connector.api_calls - calls_before)


def _checked_fields(sync: TwoWaySync, described: dict[str, Any]) -> dict[str, str]:
    """Local attribute -> the CRM's spelling of its field; a field the object lacks, or one that is not
    a boolean, is refused before anything is read (rule O2)."""
    fields: dict[str, str] = {}
    problems = []
    for local, remote in sync.opt_outs.fields.items():
        field = described.get(remote.lower())
        if field is None:
            problems.append(f"opt_outs.fields.{local}: {sync.object} has no field {remote!r}")
        elif field.crm_type is not CrmFieldType.BOOLEAN:
            problems.append(
                f"opt_outs.fields.{local}: {remote!r} is a {field.raw_type or field.crm_type} field; only boolean "
                "fields may be mapped (rule O2)"
            )
        else:
            fields[local] = field.name
    if problems:
        raise ConfigurationError(problems)
    return fields


def _plan(
    run: TwoWayRun,
    container: Container,
    sync: TwoWaySync,
    instance: str,
    connector: CrmConnector,
    fields: dict[str, str],
) -> None:
    """Read both sides' changes, decide every field, snapshot the writes, plan the batches."""
    if not isinstance(connector, FieldHistoryConnector):
        raise ConfigurationError(f"a {run.crm_kind} connection cannot tell who changed a field; no two-way sync")
    option = sync.watermark_option(instance)
    overlap, lag = sync.watermark.overlap_seconds, sync.watermark.lag_seconds
    window = next_window(container, option, connector.server_time(), overlap_seconds=overlap, lag_seconds=lag)
    run.adopt(window)
    # The marketing side's own window, on our clock: skew between the two clocks never hides a change.
    marketing_window = next_window(
        container, f"{option}_MARKETING", datetime.now(UTC), overlap_seconds=overlap, lag_seconds=lag
    )
    run.marketing_option = marketing_window.option
    run.marketing_end = format_watermark(marketing_window.end)
    run.marketing_previous = format_watermark(marketing_window.previous) if marketing_window.previous else None
    marketing_since = marketing_window.start

    remote_of = dict(fields)
    watermark_field = sync.watermark.field or DEFAULT_WATERMARK_FIELD[run.crm_kind]
    tracking = connector.field_tracking(run.object, remote_of.values())
    evidence = TimeSource.HISTORY if tracking.source == "history" else TimeSource.AUDIT
    source_of = {
        remote: (evidence if tracking.tracked.get(remote) else TimeSource.RECORD) for remote in remote_of.values()
    }
    run.tracking = {remote: source.value for remote, source in source_of.items()}
    decided: dict[str, int] = {}

    def count(name: str, amount: int = 1) -> None:
        decided[name] = decided.get(name, 0) + amount

    columns = tuple(dict.fromkeys([run.id_field, watermark_field, *remote_of.values()]))
    link = link_name(run.connection, run.object)

    # CRM side: records modified in the window (not read at all when only marketing changes move).
    crm_records: dict[str, dict[str, Any]] = {}
    if run.direction != "marketing_to_crm":
        query = RecordQuery(
            object=run.object,
            fields=columns,
            window_field=watermark_field,
            window_start=window.start,
            window_end=window.end,
            page_size=2000,
        )
        for record in _pages(connector, query):
            crm_records[_crm_id(run, record)] = record
    count("crm_records_read", len(crm_records))

    # Marketing side: linked profiles the change index shows changed in the marketing window.
    profiles: dict[str, dict[str, Any]] = {}
    marketing_changed: set[str] = set()
    if run.direction != "crm_to_marketing":
        since = _iso(marketing_since) if marketing_since else None
        for ids in container.profiles.changed_profile_ids(since, _iso(marketing_window.end)):
            for start in range(0, len(ids), PROFILE_CHUNK):
                for item in container.profiles.get_many(ids[start : start + PROFILE_CHUNK]):
                    crm_id = (item.get("externalIds") or {}).get(link)
                    if crm_id and not item.get("deletedInCrm"):
                        profiles[str(crm_id)] = item
                        marketing_changed.add(str(crm_id))
    count("profiles_read", len(marketing_changed))

    # The other side of each changed record: profiles of CRM changes, CRM values of marketing changes.
    missing_profiles = [crm_id for crm_id in crm_records if crm_id not in profiles]
    for start in range(0, len(missing_profiles), PROFILE_CHUNK):
        found = container.profiles.profiles_by_crm_ids(
            run.connection, run.object, missing_profiles[start : start + PROFILE_CHUNK]
        )
        profiles.update(found)
    missing_records = [crm_id for crm_id in profiles if crm_id not in crm_records]
    if missing_records:
        current = connector.read_by_ids(RecordQuery(object=run.object, fields=columns, ids=tuple(missing_records)))
        current_records = {_crm_id(run, r): r for r in current}
    else:
        current_records = {}
    count("unlinked", sum(1 for crm_id in crm_records if crm_id not in profiles))

    tracked = [remote for remote, source in source_of.items() if source is not TimeSource.RECORD]
    rows_of: dict[tuple[str, str], list[FieldChangeRow]] = {}
    changed_crm_ids = [crm_id for crm_id in crm_records if crm_id in profiles]
    if tracked and changed_crm_ids:
        for change in connector.field_changes(run.object, tracked, changed_crm_ids, window.start, window.end):
            rows_of.setdefault((change.record_id, change.field), []).append(
                FieldChangeRow(as_flag(change.value), change.at, change.author)
            )
    integration_user = connector.integration_user() if tracked else None
    ledger = container.write_ledger.get_many(
        sync.id, [(crm_id, local) for crm_id in profiles for local in remote_of]
    )
    policy = LatestWins(tolerance_seconds=sync.tolerance_seconds)
    rows: list[dict[str, Any]] = []
    converged: list[LedgerEntry] = []
    now = _iso(datetime.now(UTC))
    for crm_id, profile in profiles.items():
        in_window = crm_id in crm_records
        crm_record = crm_records.get(crm_id) or current_records.get(crm_id)
        if crm_record is None:
            continue  # linked to a record the CRM no longer has: the deletion import's business
        attrs = profile.get("attrs") or {}
        changed_at = profile.get("attrChangedAt") or {}
        row: dict[str, Any] = {
            "crmId": crm_id,
            "profileId": profile["profileId"],
            "crm": {},
            "marketing": {},
            "changedAt": {},
            "seen": {},
            "ledger": {},
            "consent": [],
        }
        for local, remote in remote_of.items():
            entry = ledger.get((crm_id, local))
            synced = entry.hash if entry else None
            crm_value = as_flag(crm_record.get(remote))
            marketing_value = as_flag(attrs.get(local))
            crm_side: Change | None = None
            if in_window and run.direction != "marketing_to_crm":
                source = source_of[remote]
                field_rows = rows_of.get((crm_id, remote), []) if source is not TimeSource.RECORD else None
                if field_rows == [] and window.start is None:
                    field_rows = None  # a first run: values set before tracking began count at the record's time
                crm_side, echoes = crm_change(
                    field=remote,
                    current=crm_value,
                    rows=field_rows,
                    record_changed_at=parse_crm_datetime_or_none(crm_record.get(watermark_field)),
                    ledger_hash=synced,
                    integration_user=integration_user,
                    source=source,
                    record=crm_id,
                )
                count("crm_echoes_skipped", echoes)
            marketing_side: Change | None = None
            if crm_id in marketing_changed:
                marketing_side, echoes = marketing_change(
                    current=marketing_value,
                    changed_at=parse_crm_datetime_or_none(changed_at.get(local)),
                    since=marketing_since,
                    ledger_hash=synced,
                    author=(profile.get("attrSource") or {}).get(local),
                    record=profile["profileId"],
                )
                count("marketing_echoes_skipped", echoes)
            decision = decide(
                local,
                crm_side,
                marketing_side,
                direction=run.direction,  # type: ignore[arg-type]
                policy=policy,
                current_crm=crm_value,
                current_marketing=marketing_value,
            )
            if crm_side is not None or marketing_side is not None:
                count("changes")
            winner = decision.winner
            if winner is None:
                changed = crm_side is not None or marketing_side is not None
                if changed and crm_value == marketing_value and value_hash(crm_value) != synced:
                    # both sides hold the changed value already: remember it as synced, write nothing
                    converged.append(
                        LedgerEntry(sync.id, crm_id, local, value_hash(crm_value), "both", now, run.run_id)
                    )
                continue
            assert decision.reason is not None
            count(f"decided_by:{decision.reason.value}")
            count(f"source:{winner.source.value}")
            if decision.conflict:
                count("conflicts")
            row["ledger"][local] = value_hash(winner.value)
            if winner.value != crm_value:
                row["crm"][remote] = winner.value
            if winner.value != marketing_value:
                row["marketing"][local] = winner.value
                row["changedAt"][local] = _iso(winner.at)
                row["seen"][local] = changed_at.get(local)
            row["consent"].append(
                {
                    "channel": local,
                    "crmField": remote,
                    "value": winner.value,
                    "side": winner.side,
                    "record": winner.record or (crm_id if winner.side == "crm" else profile["profileId"]),
                    "at": _iso(winner.at),
                    "author": winner.author,
                    "source": winner.source.value,
                }
            )
        if row["crm"] or row["marketing"]:
            rows.append(row)
    if converged:
        container.write_ledger.record(converged)
    run.decided = decided
    parts = write_snapshot(container, run.prefix, rows, part_size=sync.batch_size, identity=lambda r: r["crmId"])
    run.records = sum(size for _, size in parts)
    batches = plan_batches(
        container,
        sync_id=run.sync_id,
        ledger_run=run.ledger_run,
        manifest_key=run.manifest_key,
        parts=parts,
        parts_per_batch=1,
        api="collections",
    )
    run.batches = len(batches)
    if batches:
        container.batches.mark_unfinished(run.sync_id, OPERATION, run.model_dump(mode="json"))


def _crm_id(run: TwoWayRun, record: dict[str, Any]) -> str:
    value = str(record[run.id_field])
    return value.lower() if run.crm_kind == "dynamics" else value


def _pages(connector: CrmConnector, query: RecordQuery) -> Iterator[dict[str, Any]]:
    page = connector.read_first_page(query)
    yield from page.records
    while page.next_cursor:
        page = connector.read_next_page(page.next_cursor)
        yield from page.records


# ------------------------------------------------------------------------------------- one batch
def two_way_batch(event: TwoWayBatchEvent, container: Container) -> TwoWayBatchOutcome:
    """Claim one batch; write the CRM side, then the profiles, then the write and consent ledgers."""
    run = event.run
    container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
    ledger = container.batches
    try:
        before = ledger.claim(run.sync_id, run.ledger_run, event.number)
    except BatchAlreadyDone:
        return TwoWayBatchOutcome(number=event.number, skipped=True)
    rows = [row for key in before.keys for row in read_part(container, key)]
    connection = container.definitions.connection(run.connection)
    writer = container.writer(connection)
    connector = container.connector(connection)
    calls_before = connector.api_calls
    counts: dict[str, int] = {
        "crm_records_written": 0,
        "crm_fields_written": 0,
        "profiles_written": 0,
        "marketing_fields_written": 0,
        "rejected": 0,
        "deferred": 0,
        "consent_rows": 0,
    }
    crm_writes = {row["crmId"]: dict(row["crm"]) for row in rows if row["crm"]}
    profile_writes = {row["profileId"]: dict(row["marketing"]) for row in rows if row["marketing"]}
    if before.interrupted:
        _drop_applied(run, container, connector, rows, crm_writes, profile_writes)
    # 1. the CRM side
    written_crm: set[str] = set()
    rejects: list[Reject] = []
    if crm_writes:
        request = WriteRequest(
            object=run.object,
            kind="update",
            records=tuple(
                RecordWrite(ref=crm_id, fields={run.id_field: crm_id, **values})
                for crm_id, values in crm_writes.items()
            ),
            key_field=run.id_field,
        )
        journal: WriteJournal = LedgerJournal(
            ledger, run.sync_id, run.ledger_run, event.number, "update", before.jobs.get("update")
        )
        for result in writer.write(request, journal):
            if result.success:
                written_crm.add(result.ref)
                counts["crm_records_written"] += 1
                counts["crm_fields_written"] += len(crm_writes[result.ref])
                continue
            error = result.errors[0]
            rejects.append(
                Reject(
                    error.code,
                    "; ".join(e.message for e in result.errors),
                    {"crmId": result.ref, "fields": sorted(crm_writes[result.ref])},
                    crm_id=result.ref,
                    fields=error.fields,
                )
            )
    failed_crm = {r.crm_id for r in rejects}
    counts["rejected"] = len(rejects)
    now = _iso(datetime.now(UTC))
    entries = [
        LedgerEntry(run.sync_id, row["crmId"], local, digest, "crm", now, run.ledger_run)
        for row in rows
        if row["crmId"] in written_crm
        for local, digest in row["ledger"].items()
        if row["crm"]
    ]
    container.write_ledger.record(entries)
    # 2. the marketing side
    written_profiles: set[str] = set()
    source = f"crm:{run.connection}"
    for row in rows:
        values = profile_writes.get(row["profileId"])
        if not values or row["crmId"] in failed_crm:
            continue
        applied = container.profiles.apply_synced(
            row["profileId"],
            values,
            {name: row["changedAt"][name] for name in values},
            {name: row["seen"].get(name) for name in values},
            source,
        )
        if applied:
            written_profiles.add(row["profileId"])
            counts["profiles_written"] += 1
            counts["marketing_fields_written"] += len(values)
        else:
            counts["deferred"] += 1
    # 3. the ledgers: what both sides now hold, and each change applied
    entries = []
    consent: list[ConsentChange] = []
    for row in rows:
        crm_done = not row["crm"] or row["crmId"] not in failed_crm
        profile_done = (
            not row["marketing"] or row["profileId"] in written_profiles or row["profileId"] not in profile_writes
        )
        if not (crm_done and profile_done):
            continue
        entries += [
            LedgerEntry(run.sync_id, row["crmId"], local, digest, "both", now, run.ledger_run)
            for local, digest in row["ledger"].items()
        ]
        consent += [
            ConsentChange(
                profile_id=row["profileId"],
                channel=item["channel"],
                value=item["value"],
                source_side=item["side"],
                source_record=item["record"],
                changed_at=item["at"],
                author=item["author"],
                time_source=item["source"],
                run_id=run.ledger_run,
                sync_id=run.sync_id,
                crm_field=item["crmField"],
            )
            for item in row["consent"]
        ]
    container.write_ledger.record(entries)
    counts["consent_rows"] = container.consent.append(consent)
    container.rejects.route(
        rejects, RejectContext(run.sync_id, run.run_id, OPERATION, DIRECTION), enabled=run.route_rejects
    )
    counts["api_calls"] = connector.api_calls - calls_before
    outcomes = [{"crmId": row["crmId"], "profileId": row["profileId"]} for row in rows]
    try:
        ledger.complete(run.sync_id, run.ledger_run, event.number, outcomes, counts)
    except BatchAlreadyDone:
        return TwoWayBatchOutcome(number=event.number, skipped=True)
    logger.info("two-way batch done", extra={"run_id": run.run_id, "batch": event.number, **counts})
    return TwoWayBatchOutcome(number=event.number, counts=counts)


def _drop_applied(
    run: TwoWayRun,
    container: Container,
    connector: CrmConnector,
    rows: list[dict[str, Any]],
    crm_writes: dict[str, dict[str, Any]],
    profile_writes: dict[str, dict[str, Any]],
) -> None:
    """An earlier attempt of this batch stopped half-way: leave out every value already where it goes
    (read back from the CRM and the profile store), so none is written twice."""
    if crm_writes:
        fields = sorted({f for values in crm_writes.values() for f in values})
        query = RecordQuery(object=run.object, fields=(run.id_field, *fields), ids=tuple(crm_writes))
        for record in connector.read_by_ids(query):
            values = crm_writes.get(_crm_id(run, record))
            if values is None:
                continue
            for name in [n for n, v in values.items() if as_flag(record.get(n)) == v]:
                del values[name]
    if profile_writes:
        stamps = {row["profileId"]: row["changedAt"] for row in rows}
        for item in container.profiles.get_many(list(profile_writes)):
            values = profile_writes[item["profileId"]]
            attrs, changed = item.get("attrs") or {}, item.get("attrChangedAt") or {}
            for name in [
                n
                for n, v in values.items()
                if as_flag(attrs.get(n)) == v and changed.get(n) == stamps[item["profileId"]].get(n)
            ]:
                del values[name]
    for mapping in (crm_writes, profile_writes):
        for key in [k for k, v in mapping.items() if not v]:
            del mapping[key]


# ------------------------------------------------------------------------------------- finish
def finish_two_way(state: TwoWayState, container: Container) -> TwoWaySummary:
    """Add the ledger up, move both watermarks, forget the unfinished run, close this one."""
    run = state.run
    counts, undone = ledger_counts(container, run.sync_id, run.ledger_run)
    if undone:
        raise ConfigurationError(
            f"batches {undone[:10]} of run {run.ledger_run} are not done; the run stays resumable"
        )
    decided = run.decided
    window = run.window()
    summary = TwoWaySummary(
        sync_id=run.sync_id,
        run_id=run.run_id,
        direction=run.direction,
        resumed_from=run.resumed_from,
        window={"option": run.option, "start": run.window_start, "end": run.window_end} if window else None,
        marketing_window={"option": run.marketing_option, "end": run.marketing_end}
        if run.marketing_option
        else None,
        crm=SideSummary(
            records_read=decided.get("crm_records_read", 0),
            records_written=counts.get("crm_records_written", 0),
            fields_written=counts.get("crm_fields_written", 0),
            echoes_skipped=decided.get("crm_echoes_skipped", 0),
        ),
        marketing=SideSummary(
            records_read=decided.get("profiles_read", 0),
            records_written=counts.get("profiles_written", 0),
            fields_written=counts.get("marketing_fields_written", 0),
            echoes_skipped=decided.get("marketing_echoes_skipped", 0),
        ),
        changes=decided.get("changes", 0),
        conflicts=decided.get("conflicts", 0),
        decided_by={k.split(":", 1)[1]: v for k, v in decided.items() if k.startswith("decided_by:")},
        time_sources={k.split(":", 1)[1]: v for k, v in decided.items() if k.startswith("source:")},
        tracking=run.tracking,
        consent_rows=counts.get("consent_rows", 0),
        deferred=counts.get("deferred", 0),
        rejected=counts.get("rejected", 0),
        unlinked=decided.get("unlinked", 0),
        api_calls=state.api_calls + counts.get("api_calls", 0),
        batches=run.batches,
    )
    also: list[dict[str, Any]] = [container.batches.finished_action(run.sync_id, OPERATION)]
    if run.marketing_option and run.marketing_end:
        end = parse_watermark(run.marketing_end)
        previous = parse_watermark(run.marketing_previous) if run.marketing_previous else None
        if previous is None or end > previous:
            also.append(container.watermarks.advance_action(run.marketing_option, end, run.run_id))
    close_run(container, run.key, summary, operation=OPERATION, window=window, also=tuple(also))
    return summary


__all__ = [
    "TwoWayBatchEvent",
    "TwoWayBatchOutcome",
    "TwoWayRun",
    "TwoWayState",
    "TwoWaySummary",
    "as_flag",
    "finish_two_way",
    "start_two_way",
    "two_way_batch",
]
