"""Import of deletions made in the CRM, one use case per step of the `import-deleted` state machine:
start, page, finish (SPEC D1, D2).

Three ways to learn what was deleted, one per `mode`:
- `period`: the CRM's list of records deleted in a period, both ends included (Salesforce `getDeleted`).
  A start older than the CRM keeps is refused before anything changes; a period holding more ids than
  one answer may is split in two until it fits; the CRM's `latestDateCovered` is the next start.
- `changes`: the deletions of Dataverse change tracking, from the delta link kept beside the watermark.
  Without a usable link (first run, or the CRM forgot it) the run compares id sets instead.
- `compare`: read every id of the object the cheapest way the CRM has, keep them in S3 under the run,
  then flag the local records whose id is gone: the one way to catch deletions older than the CRM's
  retention. A local id the list lacks is asked about once more before it is flagged: the list was read
  first, so a record created and imported meanwhile is missing from it without being deleted.

Every step is a function of the state it is given; applying deletions is idempotent, so a retried step
changes nothing twice. The watermark (and delta link) move in the finish step, under the run's lease.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..config import DeletionImportSync
from ..connectors.port import (
    ChangeTrackingConnector,
    CrmConnector,
    DeletedRecordsConnector,
    IdSetConnector,
    ObjectDescription,
    RecordQuery,
)
from ..domain.records import CrmDeletion
from ..domain.windows import ImportWindow, format_watermark, parse_moment, parse_watermark
from ..errors import ConfigurationError, DeletionPeriodRefused, DeltaTokenExpired, TooManyDeletedIds
from ..wiring import Container
from .local_deletions import LocalTarget, apply_deletions, local_crm_ids
from .runs import Counts, RunIdentity, StartRunEvent, close_run, leased, normalize_started_at, sync_to_start

logger = logging.getLogger(__name__)

OPERATION = "import_deleted"
SWEEP_CHUNK = 2_000
END_LAG = timedelta(minutes=1)
MIN_SPLIT = timedelta(minutes=1)
_crm_id_sets: dict[str, frozenset[str]] = {}


# ------------------------------------------------------------------------------------- payloads
class Period(BaseModel):
    """A period given when a run starts; both ends are included."""

    start: datetime
    end: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))
        if self.end is not None and self.end < self.start:
            raise ValueError(
                f"the period ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )
        return self


class StartDeletionImportEvent(StartRunEvent):
    period: Period | None = None


class DeletionImportTotals(Counts):
    reported: int = Field(default=0, description="deletions the CRM reported (period and changes modes)")
    compared: int = Field(default=0, description="CRM ids read for an id-set comparison")
    checked: int = Field(default=0, description="local records checked against those ids")
    deleted: int = Field(default=0, description="local records flagged (or removed) by this run")
    already: int = Field(default=0, description="local records flagged before")
    unknown: int = Field(default=0, description="deletions of records never imported")
    splits: int = 0
    api_calls: int = 0
    pages: int = 0


class DeletionImportRun(RunIdentity):
    trigger: str
    connection: str
    crm_kind: str
    object: str
    id_field: str
    mode: Literal["period", "changes", "compare"]
    target_kind: Literal["profiles", "resource"]
    resource: str | None = None
    remove: bool = False
    delta_link: str | None = None

    @property
    def target(self) -> LocalTarget:
        return LocalTarget(self.connection, self.object, self.target_kind, self.resource)


class DeletionImportCursor(BaseModel):
    phase: Literal["deleted", "changes", "read_ids", "sweep"]
    periods: list[tuple[datetime, datetime]] = Field(default_factory=list)
    """Periods still to read, the current one first (split ones included)."""
    latest_covered: datetime | None = None
    earliest_available: datetime | None = None
    cursor: str | None = None
    id_files: int = 0
    next_delta_link: str | None = None
    from_earliest: bool = False
    """A first run without a given period: a start older than the CRM keeps moves to its earliest date."""
    done: bool = False


class DeletionImportState(BaseModel):
    run: DeletionImportRun
    page: DeletionImportCursor
    totals: DeletionImportTotals = Field(default_factory=DeletionImportTotals)


class DeletionImportSummary(DeletionImportTotals):
    """The result of a deletion import, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = OPERATION
    mode: str
    window: dict[str, str | None] | None = None
    latest_covered: str | None = None
    earliest_available: str | None = None
    watermark_moved: bool = False


# ------------------------------------------------------------------------------------- start
def _mode(
    sync: DeletionImportSync, connector: CrmConnector, description: ObjectDescription
) -> Literal["period", "changes", "compare"]:
    mode = sync.mode
    if mode == "auto":
        if isinstance(connector, DeletedRecordsConnector):
            mode = "period"
        elif isinstance(connector, ChangeTrackingConnector) and description.change_tracking:
            mode = "changes"
        else:
            raise ConfigurationError(
                f"sync {sync.id!r}: {description.name} has no change tracking in this {connector.kind} org, so "
                "its deletions can only be found by comparing id sets; set mode: compare"
            )
    if mode == "period" and not isinstance(connector, DeletedRecordsConnector):
        raise ConfigurationError(
            f"sync {sync.id!r}: mode period reads the CRM's deleted-records list, which {connector.kind} has not; "
            "use changes or compare"
        )
    if mode == "changes" and not (isinstance(connector, ChangeTrackingConnector) and description.change_tracking):
        raise ConfigurationError(
            f"sync {sync.id!r}: mode changes needs change tracking on {description.name}; use compare"
        )
    if mode == "compare" and not isinstance(connector, IdSetConnector):
        raise ConfigurationError(f"sync {sync.id!r}: {connector.kind} connections cannot list every id")
    return mode


def start_deletion_import(event: StartDeletionImportEvent, container: Container) -> DeletionImportState:
    """Take the lease, check the object, choose the period or the delta link, record the run."""
    sync, connection, instance = sync_to_start(
        container, event, DeletionImportSync, "import-deleted", "deletion imports"
    )
    with leased(container, sync, event.run_id):
        connector = container.connector(connection)
        calls_before = connector.api_calls
        description = connector.describe(sync.object)
        mode = _mode(sync, connector, description)
        if event.period is not None and mode != "period":
            raise ConfigurationError(f"sync {sync.id!r} reads {mode}; a period is given to period mode only")
        run = DeletionImportRun(
            sync_id=sync.id,
            run_id=event.run_id,
            started_at=normalize_started_at(event.started_at),
            trigger=event.trigger,
            connection=connection.name,
            crm_kind=connection.kind,
            object=description.name,
            id_field=description.id_field,
            mode=mode,
            target_kind=sync.target.kind,
            resource=sync.target.resource,
            remove=sync.apply == "remove",
        )
        option = sync.watermark_option(instance)
        previous = container.watermarks.get(option)
        now = connector.server_time().astimezone(UTC)
        if mode == "period":
            end = (event.period.end if event.period and event.period.end else None) or now - END_LAG
            start = (
                event.period.start
                if event.period
                else previous.value
                if previous
                else now - timedelta(days=sync.lookback_days)
            )
            if start > end:
                raise ConfigurationError(
                    f"the period starts ({start.isoformat()}) after it ends ({end.isoformat()})"
                )
            page = DeletionImportCursor(
                phase="deleted", periods=[(start, end)], from_earliest=event.period is None and previous is None
            )
            if event.period is None:
                run.option = option
            run.window_start, run.window_end = format_watermark(start), format_watermark(end)
        else:
            run.option = option
            run.window_end = format_watermark(now.replace(microsecond=0))
            run.delta_link = previous.delta_link if previous and mode == "changes" else None
            if run.delta_link:
                assert isinstance(connector, ChangeTrackingConnector)
                connector.check_delta_link(run.delta_link, description.name)
            page = DeletionImportCursor(phase="changes" if run.delta_link else "read_ids")
        run.previous_watermark = format_watermark(previous.value) if previous else None
        container.runs.record_start(
            run.key,
            operation=OPERATION,
            trigger=event.trigger,
            details={
                "window": run.window_summary(),
                "object": run.object,
                "connection": connection.name,
                "mode": mode,
            },
        )
        logger.info(
            "deletion import started",
            extra={"sync_id": sync.id, "run_id": run.run_id, "mode": mode, "phase": page.phase},
        )
        return DeletionImportState(
            run=run, page=page, totals=DeletionImportTotals(api_calls=connector.api_calls - calls_before)
        )


# ------------------------------------------------------------------------------------- pages
def deletion_import_page(state: DeletionImportState, container: Container) -> DeletionImportState:
    """One step: a period (or half of one), a page of changes, a page of CRM ids, or a chunk of the sweep."""
    run, page = state.run, state.page
    if page.done:
        return state
    container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
    connector = container.connector(container.definitions.connection(run.connection))
    calls_before = connector.api_calls
    if page.phase == "deleted":
        page, totals = _deleted_period(run, page, connector, container)
    elif page.phase == "changes":
        page, totals = _changes(run, page, connector, container)
    elif page.phase == "read_ids":
        page, totals = _read_ids(run, page, connector, container)
    else:
        page, totals = _sweep(run, page, connector, container)
    totals.api_calls = connector.api_calls - calls_before
    totals.pages = 1
    logger.info(
        "deletion import step",
        extra={"sync_id": run.sync_id, "run_id": run.run_id, "phase": state.page.phase, **totals.model_dump()},
    )
    return DeletionImportState(run=run, page=page, totals=state.totals.plus(totals))


def _apply(
    container: Container, run: DeletionImportRun, deletions: list[CrmDeletion], totals: DeletionImportTotals
) -> None:
    result = apply_deletions(container, run.target, deletions, run_id=run.run_id, remove=run.remove)
    totals.deleted += result.marked
    totals.already += result.already
    totals.unknown += result.unknown


def _deleted_period(
    run: DeletionImportRun, page: DeletionImportCursor, connector: CrmConnector, container: Container
) -> tuple[DeletionImportCursor, DeletionImportTotals]:
    assert isinstance(connector, DeletedRecordsConnector)
    totals = DeletionImportTotals()
    start, end = page.periods[0]
    try:
        found = connector.read_deleted(run.object, start, end)
    except DeletionPeriodRefused as refused:
        if not (page.from_earliest and refused.earliest_available):
            raise
        earliest = datetime.fromisoformat(refused.earliest_available)
        logger.info(
            "first run: starting at the earliest date the CRM keeps", extra={"start": earliest.isoformat()}
        )
        periods = [(earliest, end), *page.periods[1:]]
        return page.model_copy(
            update={"periods": periods, "from_earliest": False, "earliest_available": earliest}
        ), totals
    except TooManyDeletedIds:
        if end - start <= MIN_SPLIT:
            raise ConfigurationError(
                f"more deletions of {run.object} between {start.isoformat()} and {end.isoformat()} than the CRM "
                "returns at once, in a period that cannot be split further"
            ) from None
        middle = start + (end - start) / 2
        totals.splits = 1
        logger.info(
            "too many deleted ids in one period; splitting it",
            extra={"run_id": run.run_id, "start": start.isoformat(), "end": end.isoformat()},
        )
        return page.model_copy(update={"periods": [(start, middle), (middle, end), *page.periods[1:]]}), totals
    deletions = [CrmDeletion(r.crm_id, r.deleted_at) for r in found.records]
    totals.reported = len(deletions)
    _apply(container, run, deletions, totals)
    rest = page.periods[1:]
    covered = min(found.latest_covered, end) if found.latest_covered else end
    return (
        page.model_copy(
            update={
                "periods": rest,
                "done": not rest,
                "latest_covered": covered if not rest else page.latest_covered,
                "earliest_available": found.earliest_available or page.earliest_available,
            }
        ),
        totals,
    )


def _changes(
    run: DeletionImportRun, page: DeletionImportCursor, connector: CrmConnector, container: Container
) -> tuple[DeletionImportCursor, DeletionImportTotals]:
    assert isinstance(connector, ChangeTrackingConnector)
    totals = DeletionImportTotals()
    try:
        result = (
            connector.read_next_page(page.cursor)
            if page.cursor
            else connector.read_changes(_id_query(run), run.delta_link)
        )
    except DeltaTokenExpired:
        logger.warning(
            "delta link expired; comparing id sets so no deletion is lost",
            extra={"sync_id": run.sync_id, "run_id": run.run_id},
        )
        return DeletionImportCursor(phase="read_ids"), totals
    seen = datetime.fromisoformat(run.started_at)
    deletions = [CrmDeletion(crm_id, seen) for crm_id in result.deleted_ids]
    totals.reported = len(deletions)
    _apply(container, run, deletions, totals)
    done = result.next_cursor is None
    return (
        page.model_copy(
            update={
                "cursor": result.next_cursor,
                "done": done,
                "next_delta_link": result.delta_link if done else page.next_delta_link,
            }
        ),
        totals,
    )


def _id_query(run: DeletionImportRun) -> RecordQuery:
    return RecordQuery(object=run.object, fields=(run.id_field,), page_size=5000)


def _ids_prefix(run: DeletionImportRun) -> str:
    return f"runs/{run.sync_id}/{run.run_id}/crm-ids"


def _read_ids(
    run: DeletionImportRun, page: DeletionImportCursor, connector: CrmConnector, container: Container
) -> tuple[DeletionImportCursor, DeletionImportTotals]:
    """One page of every id of the object, kept in S3 for the sweep. On a change-tracking sync the
    ids come from a full change-tracking read, whose last page gives the next delta link."""
    next_delta_link = page.next_delta_link
    if run.mode == "changes":
        assert isinstance(connector, ChangeTrackingConnector)
        result = (
            connector.read_next_page(page.cursor) if page.cursor else connector.read_changes(_id_query(run), None)
        )
        ids = [str(r[run.id_field]) for r in result.records if r.get(run.id_field)]
        next_cursor = result.next_cursor
        if next_cursor is None:
            next_delta_link = result.delta_link
    else:
        assert isinstance(connector, IdSetConnector)
        id_page = connector.read_ids_next(page.cursor) if page.cursor else connector.read_ids_first(run.object)
        ids, next_cursor = id_page.ids, id_page.next_cursor
    number = page.id_files + 1
    container.aws.client("s3").put_object(
        Bucket=container.settings.data_bucket,
        Key=f"{_ids_prefix(run)}/{number:06d}.json",
        Body=json.dumps([connector.normalize_id(i) for i in ids]).encode(),
        ContentType="application/json",
    )
    done_reading = next_cursor is None
    return (
        page.model_copy(
            update={
                "cursor": None if done_reading else next_cursor,
                "id_files": number,
                "phase": "sweep" if done_reading else "read_ids",
                "next_delta_link": next_delta_link,
            }
        ),
        DeletionImportTotals(compared=len(ids)),
    )


def _crm_ids(run: DeletionImportRun, page: DeletionImportCursor, container: Container) -> frozenset[str]:
    """Every CRM id the read phase kept, loaded once per warm function and run."""
    cached = _crm_id_sets.get(run.run_id)
    if cached is not None:
        return cached
    s3 = container.aws.client("s3")
    ids: set[str] = set()
    for number in range(1, page.id_files + 1):
        body = s3.get_object(Bucket=container.settings.data_bucket, Key=f"{_ids_prefix(run)}/{number:06d}.json")
        ids.update(json.loads(body["Body"].read()))
    _crm_id_sets.clear()
    _crm_id_sets[run.run_id] = frozenset(ids)
    return _crm_id_sets[run.run_id]


def _still_missing(run: DeletionImportRun, connector: CrmConnector, missing: list[str]) -> list[str]:
    """Of the local ids the CRM's id list lacks, those the CRM still does not have.

    The CRM's ids were read before the local ones: a record created in the CRM after its id was listed,
    and imported by another sync before the sweep read the local ids, is in the local list only. It must
    not be flagged (nor removed): the CRM is asked about each missing id once more. Only the missing are
    asked - the records deleted since the last run, and those flagged already (`ID_CHUNK` a call).
    """
    if not missing:
        return []
    query = RecordQuery(object=run.object, fields=(run.id_field,), ids=tuple(missing))
    present = {
        connector.normalize_id(str(r[run.id_field])) for r in connector.read_by_ids(query) if r.get(run.id_field)
    }
    return [i for i in missing if connector.normalize_id(i) not in present]


def _sweep(
    run: DeletionImportRun, page: DeletionImportCursor, connector: CrmConnector, container: Container
) -> tuple[DeletionImportCursor, DeletionImportTotals]:
    """A chunk of the local records, checked against the CRM's ids: those whose id is gone were deleted."""
    crm_ids = _crm_ids(run, page, container)
    local, after = local_crm_ids(container, run.target, after=page.cursor, limit=SWEEP_CHUNK)
    if not crm_ids and local:
        raise ConfigurationError(
            f"the CRM listed no {run.object} at all while {run.object} records are known locally; refusing to "
            "flag every one of them (check that the integration user can read the object)"
        )
    seen = datetime.fromisoformat(run.started_at)
    missing = [i for i in local if connector.normalize_id(i) not in crm_ids]
    gone = [CrmDeletion(i, seen) for i in _still_missing(run, connector, missing)]
    totals = DeletionImportTotals(checked=len(local))
    _apply(container, run, gone, totals)
    return page.model_copy(update={"cursor": after, "done": after is None}), totals


# ------------------------------------------------------------------------------------- finish
def finish_deletion_import(state: DeletionImportState, container: Container) -> DeletionImportSummary:
    """Move the watermark to the latest moment the CRM vouched for (or store the new delta link), close."""
    run, page = state.run, state.page
    if not page.done:
        raise ConfigurationError("finish was called before the last step was applied")
    _crm_id_sets.pop(run.run_id, None)
    window: ImportWindow | None = None
    if run.option is not None and run.window_end is not None:
        previous = parse_watermark(run.previous_watermark) if run.previous_watermark else None
        end = (
            page.latest_covered.replace(microsecond=0) if page.latest_covered else parse_watermark(run.window_end)
        )
        window = ImportWindow(
            option=run.option,
            start=parse_watermark(run.window_start) if run.window_start else None,
            end=end,
            previous=previous,
        )
    summary = DeletionImportSummary(
        sync_id=run.sync_id,
        run_id=run.run_id,
        mode=run.mode,
        window=run.window_summary(),
        latest_covered=page.latest_covered.isoformat() if page.latest_covered else None,
        earliest_available=page.earliest_available.isoformat() if page.earliest_available else None,
        **state.totals.model_dump(),
    )
    close_run(
        container,
        run.key,
        summary,
        operation=OPERATION,
        window=window,
        delta_link=page.next_delta_link if run.mode == "changes" else None,
    )
    return summary


def parse_period(start: str, end: str | None) -> dict[str, Any]:
    """A period from the CLI's text (ISO 8601, or the watermark's `yyyy/MM/dd hh:mm:ss`), UTC."""
    return {"start": parse_moment(start).isoformat(), **({"end": parse_moment(end).isoformat()} if end else {})}


__all__ = [
    "DeletionImportState",
    "DeletionImportSummary",
    "Period",
    "StartDeletionImportEvent",
    "deletion_import_page",
    "finish_deletion_import",
    "parse_period",
    "start_deletion_import",
]
