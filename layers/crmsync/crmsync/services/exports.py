"""Export use cases, one per state-machine step: start, one batch, finish (SPEC E1-E6, R1, R2, N3).

Start takes the lease, resolves the population (the profiles changed since this sync's own watermark,
given profile ids, or an S3 file of records), writes it to S3 under the run as a snapshot in parts,
groups the parts into batches listed in a manifest, and records every batch as pending in the batch
ledger. The state machine maps over the manifest; each batch step claims its batch, exports it and
records its per-record results. Finish adds the ledger up, moves the watermark and closes the run.

A run that fails leaves its snapshot and ledger behind, marked unfinished: the next run of the sync
resumes it - done batches are skipped, an interrupted one is resolved before anything is sent again -
so nothing is exported twice and nothing is lost (SPEC E4).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import ExportSync
from ..connectors.port import ObjectDescription, WriteJournal
from ..domain.conversions import parse_crm_datetime
from ..domain.records import Reject, RejectCode
from ..domain.windows import ImportWindow, compute_window, format_watermark
from ..errors import ConfigurationError
from ..inputs import text_lines
from ..stores.batches import BatchAlreadyDone, BatchLedger
from ..stores.profiles import link_name
from ..stores.rejects import RejectContext
from ..wiring import Container
from .batched_runs import ledger_counts, plan_batches, read_part, resumed_run, write_snapshot
from .enumerations import through_enumerations
from .export_batch import BatchExporter, SnapshotRecord
from .export_plan import ExportPlan, resolve_export_plan
from .runs import (
    S3_URI,
    PopulationSource,
    RunIdentity,
    StartRunEvent,
    close_run,
    leased,
    normalize_started_at,
    sync_to_start,
)
from .schema_drift import describe_for_run, mapped_fields

logger = logging.getLogger(__name__)

OPERATION = "export"
DIRECTION = "marketing-to-crm"
PROFILE_READ_CHUNK = 500


# ------------------------------------------------------------------------------------- payloads
class ExportPopulation(PopulationSource):
    """Instead of the changes since the watermark: these marketing profile ids, or an S3 file of records
    (CSV with a header or JSON lines, local attribute names as columns, and a profileId column)."""


class StartExportEvent(StartRunEvent):
    population: ExportPopulation | None = None


class ExportTotals(BaseModel):
    selected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    owners_unmatched: int = 0
    api_calls: int = 0
    batches: int = 0

    def plus(self, other: ExportTotals | dict[str, int]) -> ExportTotals:
        more = other if isinstance(other, dict) else other.model_dump()
        return ExportTotals(
            **{name: getattr(self, name) + int(more.get(name, 0)) for name in ExportTotals.model_fields}
        )


class ExportRun(RunIdentity):
    """The run context every step carries. `ledger_run` names the run whose snapshot and batches these
    are: this run's own, or the unfinished one it resumes."""

    trigger: str
    connection: str
    object: str
    ledger_run: str
    resumed_from: str | None = None
    mode: Literal["changes", "profiles", "records"]
    prefix: str
    manifest_key: str
    batches: int = 0
    records: int = 0
    rejected_at_start: int = 0
    api: Literal["collections", "bulk"] = "collections"
    max_concurrency: int = 4


class ExportState(BaseModel):
    """The state the export state machine carries between steps."""

    run: ExportRun
    plan: dict[str, Any]
    totals: ExportTotals = Field(default_factory=ExportTotals)


class ExportBatchEvent(BaseModel):
    """One item of the Map over the manifest: the run, the plan, and which batch."""

    model_config = ConfigDict(extra="ignore")
    run: ExportRun
    plan: dict[str, Any]
    number: int


class BatchOutcome(BaseModel):
    number: int
    skipped: bool = False
    totals: ExportTotals = Field(default_factory=ExportTotals)


class ExportSummary(ExportTotals):
    """The result of an export run, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = OPERATION
    resumed_from: str | None = None
    window: dict[str, str | None] | None = None
    watermark_moved: bool = False


# ------------------------------------------------------------------------------------- start
def start_export(event: StartExportEvent, container: Container) -> ExportState:
    """Take the lease, check the sync against the CRM, then resume the unfinished run or plan a new one."""
    sync, connection, instance = sync_to_start(container, event, ExportSync, "export", "exports")
    with leased(container, sync.id, event.run_id):
        connector = container.connector(connection)
        calls_before = connector.api_calls
        described = describe_for_run(container.runs, sync, connector, mapped_fields(sync))

        def describe(name: str) -> ObjectDescription:
            return described.description if name.lower() == sync.object.lower() else connector.describe(name)

        plan = resolve_export_plan(sync, describe, connection.kind)
        plan = dataclasses.replace(
            plan,
            primary=dataclasses.replace(
                plan.primary, fields=through_enumerations(plan.primary.fields, container, "export")
            ),
            contact=None
            if plan.contact is None
            else dataclasses.replace(
                plan.contact, fields=through_enumerations(plan.contact.fields, container, "export")
            ),
        )
        started_at = normalize_started_at(event.started_at)
        run = resumed_run(
            container,
            ExportRun,
            event,
            operation=OPERATION,
            started_at=started_at,
            max_concurrency=plan.max_concurrency,
            population_given=event.population is not None,
        ) or _plan_run(event, container, sync, plan, instance, started_at)
        container.runs.record_start(
            run.key,
            operation=OPERATION,
            trigger=event.trigger,
            details={
                "window": {"option": run.option, "start": run.window_start, "end": run.window_end},
                "object": plan.primary.object,
                "connection": connection.name,
                "mode": run.mode,
                "ledgerRun": run.ledger_run,
                "batches": run.batches,
                "records": run.records,
                **({"newFields": described.new_fields} if described.new_fields else {}),
            },
        )
        logger.info(
            "export run resumed" if run.resumed_from else "export run started",
            extra={"sync_id": sync.id, "run_id": event.run_id, "batches": run.batches, "records": run.records},
        )
        return ExportState(
            run=run,
            plan=plan.to_state(),
            totals=ExportTotals(api_calls=connector.api_calls - calls_before, batches=run.batches),
        )


def _plan_run(
    event: StartExportEvent,
    container: Container,
    sync: ExportSync,
    plan: ExportPlan,
    instance: str,
    started_at: str,
) -> ExportRun:
    """Resolve the population, snapshot it to S3 in parts, write the manifest, plan the ledger."""
    population = event.population
    mode: Literal["changes", "profiles", "records"] = (
        "changes" if population is None else "profiles" if population.ids is not None else "records"
    )
    run = ExportRun(
        sync_id=sync.id,
        run_id=event.run_id,
        started_at=started_at,
        trigger=event.trigger,
        connection=sync.connection,
        object=plan.primary.object,
        ledger_run=event.run_id,
        mode=mode,
        prefix=f"runs/{sync.id}/{event.run_id}",
        manifest_key=f"runs/{sync.id}/{event.run_id}/manifest.json",
        max_concurrency=plan.max_concurrency,
    )
    rejects: list[Reject] = []
    if population is None:
        option = sync.watermark_option(instance)
        previous = container.watermarks.get(option)
        now = datetime.now(UTC)
        window = compute_window(
            option,
            previous.value if previous else None,
            now,
            overlap_seconds=sync.watermark.overlap_seconds,
            lag_seconds=sync.watermark.lag_seconds,
        )
        run.option = option
        run.window_start = format_watermark(window.start) if window.start else None
        run.window_end = format_watermark(window.end)
        run.previous_watermark = format_watermark(window.previous) if window.previous else None
        records = _changed_profiles(
            container, plan, sync.id, window, until=now - timedelta(seconds=sync.watermark.lag_seconds)
        )
    elif population.ids is not None:
        records = _given_profiles(container, plan, population.ids, rejects)
    else:
        records = _file_records(container, plan, population.s3_uri or "", rejects)

    parts = write_snapshot(
        container,
        run.prefix,
        (r.to_json() for r in records),
        part_size=plan.batch_size,
        identity=lambda row: str(row["profileId"]),
    )
    total = sum(size for _, size in parts)
    run.records = total
    run.api = "bulk" if plan.bulk_api and total >= plan.bulk_threshold else "collections"
    batches = plan_batches(
        container,
        sync_id=run.sync_id,
        ledger_run=run.ledger_run,
        manifest_key=run.manifest_key,
        parts=parts,
        parts_per_batch=max(1, plan.bulk_batch_size // plan.batch_size) if run.api == "bulk" else 1,
        api=run.api,
    )
    run.batches = len(batches)
    if rejects:
        container.rejects.route(
            rejects, RejectContext(run.sync_id, run.run_id, OPERATION, DIRECTION), enabled=plan.route_rejects
        )
        run.rejected_at_start = len(rejects)
    if batches:
        container.batches.mark_unfinished(run.sync_id, OPERATION, run.model_dump(mode="json"))
    return run


def _snapshot(item: dict[str, Any], plan: ExportPlan) -> SnapshotRecord:
    attrs = item.get("attrs") or {}
    links = item.get("externalIds") or {}
    names = {link_name(plan.connection, t.object) for t in plan.targets}
    return SnapshotRecord(
        profile_id=item["profileId"],
        attributes={k: v for k, v in attrs.items() if k in plan.local_attributes},
        links={k: v for k, v in links.items() if k in names},
        version=item.get("version"),
    )


def _due(item: dict[str, Any], plan: ExportPlan, sync_id: str, since: datetime | None) -> bool:
    """A profile is due when an attribute the export reads changed since `since` and since this sync
    last exported it, unless the change came from this very connection's import: a value the sync wrote
    never echoes back (SPEC O3)."""
    if item.get(f"exportedVersion:{sync_id}") == item.get("version"):
        return False
    own = f"crm:{plan.connection}"
    attrs = item.get("attrs") or {}
    sources = item.get("attrSource") or {}
    changed = item.get("attrChangedAt") or {}
    for name in plan.local_attributes:
        if name not in attrs or sources.get(name) == own:
            continue
        if since is None:
            return True
        try:
            if parse_crm_datetime(str(changed.get(name))) >= since:
                return True
        except ValueError:
            return True
    return False


def _changed_profiles(
    container: Container, plan: ExportPlan, sync_id: str, window: ImportWindow, *, until: datetime
) -> Iterator[SnapshotRecord]:
    """Due profiles changed from the window's start up to `until`, to the microsecond: the watermark
    keeps whole seconds (the window's end), so the next run's overlap covers the second in between."""
    since = window.start.isoformat(timespec="seconds") if window.start else None
    profiles = container.profiles
    for ids in profiles.changed_profile_ids(since, until.isoformat()):
        for item in profiles.get_many(ids):
            if _due(item, plan, sync_id, window.start):
                yield _snapshot(item, plan)


def _given_profiles(
    container: Container, plan: ExportPlan, ids: list[str], rejects: list[Reject]
) -> Iterator[SnapshotRecord]:
    unique = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    for start in range(0, len(unique), PROFILE_READ_CHUNK):
        chunk = unique[start : start + PROFILE_READ_CHUNK]
        found = {item["profileId"]: item for item in container.profiles.get_many(chunk)}
        for profile_id in chunk:
            if profile_id in found:
                yield _snapshot(found[profile_id], plan)
            else:
                rejects.append(
                    Reject(
                        RejectCode.NOT_FOUND,
                        f"no marketing profile {profile_id}",
                        {"profileId": profile_id},
                        profile_id=profile_id,
                    )
                )


def _file_rows(body: Any, key: str) -> Iterator[dict[str, Any]]:
    reader = text_lines(body, key)
    if key.endswith(".csv"):
        yield from csv.DictReader(reader)
    elif key.endswith((".jsonl", ".ndjson", ".json")):
        for number, line in enumerate(reader, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ConfigurationError(
                        f"{key}:{number}: not a JSON object on one line (JSON lines)"
                    ) from None
                if not isinstance(row, dict):
                    raise ConfigurationError(f"{key}:{number}: each line must be a JSON object")
                yield row
    else:
        raise ConfigurationError(f"{key}: a file of records is .csv (with a header) or .jsonl (JSON lines)")


def _file_records(
    container: Container, plan: ExportPlan, uri: str, rejects: list[Reject]
) -> Iterator[SnapshotRecord]:
    """Records given in a file: their values as given, their CRM links from the profile store."""
    match = S3_URI.match(uri)
    assert match is not None
    body = container.aws.client("s3").get_object(Bucket=match.group(1), Key=match.group(2))["Body"]
    pending: list[dict[str, Any]] = []

    def flush() -> Iterator[SnapshotRecord]:
        ids = [str(row["profileId"]) for row in pending]
        stored = {item["profileId"]: item for item in container.profiles.get_many(ids)}
        for row in pending:
            profile_id = str(row["profileId"])
            links = _snapshot(stored[profile_id], plan).links if profile_id in stored else {}
            attributes = {k: v for k, v in row.items() if k in plan.local_attributes and v not in (None, "")}
            yield SnapshotRecord(profile_id, attributes, links)
        pending.clear()

    for row in _file_rows(body, match.group(2)):
        if not str(row.get("profileId") or "").strip():
            rejects.append(
                Reject(RejectCode.MISSING_ID, "the record has no profileId", dict(row), fields=("profileId",))
            )
            continue
        pending.append(row)
        if len(pending) == PROFILE_READ_CHUNK:
            yield from flush()
    yield from flush()


# ------------------------------------------------------------------------------------- one batch
@dataclass
class _LedgerJournal:
    """The writer port's journal, kept in the batch's ledger entry (one slot per write of the batch)."""

    ledger: BatchLedger
    run: ExportRun
    number: int
    slot: str
    job_id: str | None

    def record_job(self, job_id: str | None) -> None:
        self.ledger.record_job(self.run.sync_id, self.run.ledger_run, self.number, self.slot, job_id)
        self.job_id = job_id


def export_batch(event: ExportBatchEvent, container: Container) -> BatchOutcome:
    """Claim one batch, export it, write CRM ids back, route rejects, record its results. A done batch
    is skipped; one an earlier attempt left in flight is resolved before anything is sent again."""
    run, plan = event.run, ExportPlan.from_state(event.plan)
    container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
    ledger = container.batches
    try:
        before = ledger.claim(run.sync_id, run.ledger_run, event.number)
    except BatchAlreadyDone:
        logger.info("batch already done", extra={"run_id": run.run_id, "batch": event.number})
        return BatchOutcome(number=event.number, skipped=True)
    records = [SnapshotRecord.from_json(item) for key in before.keys for item in read_part(container, key)]
    writer = container.writer(container.definitions.connection(run.connection))
    calls_before = writer.api_calls

    def journal(slot: str) -> WriteJournal:
        return _LedgerJournal(ledger, run, event.number, slot, before.jobs.get(slot))

    if before.interrupted:
        logger.warning(
            "batch was interrupted by an earlier attempt; resolving its writes",
            extra={"run_id": run.run_id, "batch": event.number, "attempts": before.attempts},
        )
    result = BatchExporter(
        plan, writer, journal, bulk=before.api == "bulk", interrupted=before.interrupted
    ).export(records)
    linked = container.profiles.record_exported(run.sync_id, result.exported)
    for conflict in linked.conflicts:
        logger.warning(
            "a CRM record is already linked to another profile; not linked again",
            extra={"crm_id": conflict.crm_id, "profile_id": conflict.profile_id, "object": conflict.object},
        )
    container.rejects.route(
        result.rejects, RejectContext(run.sync_id, run.run_id, OPERATION, DIRECTION), enabled=plan.route_rejects
    )
    counts = {**result.counts(), "api_calls": writer.api_calls - calls_before}
    try:
        ledger.complete(run.sync_id, run.ledger_run, event.number, result.outcomes, counts)
    except BatchAlreadyDone:
        return BatchOutcome(number=event.number, skipped=True)
    logger.info(
        "export batch done",
        extra={"run_id": run.run_id, "batch": event.number, **{f"batch_{k}": v for k, v in counts.items()}},
    )
    return BatchOutcome(number=event.number, totals=ExportTotals().plus(counts))


# ------------------------------------------------------------------------------------- finish
def finish_export(state: ExportState, container: Container) -> ExportSummary:
    """Add the ledger up, move the watermark (only forward, under the lease), forget the unfinished run,
    close this one - in one transaction."""
    run = state.run
    totals = ExportTotals(api_calls=state.totals.api_calls, batches=run.batches, rejected=run.rejected_at_start)
    counts, undone = ledger_counts(container, run.sync_id, run.ledger_run)
    totals = totals.plus({k: v for k, v in counts.items() if k != "batches"})
    if undone:
        raise ConfigurationError(
            f"batches {undone[:10]} of run {run.ledger_run} are not done; the run stays resumable"
        )
    window = run.window()
    summary = ExportSummary(
        sync_id=run.sync_id,
        run_id=run.run_id,
        resumed_from=run.resumed_from,
        window={"option": run.option, "start": run.window_start, "end": run.window_end} if window else None,
        **totals.model_dump(),
    )
    close_run(
        container,
        run.key,
        summary,
        operation=OPERATION,
        window=window,
        also=(container.batches.finished_action(run.sync_id, OPERATION),),
    )
    return summary


__all__ = [
    "BatchOutcome",
    "ExportBatchEvent",
    "ExportPopulation",
    "ExportState",
    "ExportSummary",
    "StartExportEvent",
    "export_batch",
    "finish_export",
    "start_export",
]
