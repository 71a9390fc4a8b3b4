"""Import use cases, one per state-machine step: start, page, finish (SPEC I1-I12, D1, D2, R1, R2).

The state machine carries an `ImportState` from step to step. Each step is a pure function of that
state (plus the stores and the CRM), so a retried step - same input - neither double-counts nor
duplicates: applying a page twice leaves the same profiles, and totals are recomputed from the input.

A sync on a Dynamics table with change tracking reads `changes` instead of a window: the first run reads
every record and ends with a delta link; later runs follow the stored delta link, which also reports
deletions. When the CRM forgot the link (0x80044352), or there is none while records of the table are
already known locally (the watermark was set or reset by hand), the run reads every record and then
*sweeps*: every CRM id known locally is checked against the CRM, so a deletion made while there was no
usable link is not lost. The new delta link is stored by the finish step, in the same
conditional write as the watermark.

A Salesforce window run checks that it read its whole window (issue 16): the start step counts the window
(`SELECT COUNT()` with the sync's filter, and without it when there is one, so the summary can say how
many the filter left out); when the last page is read, a shortfall - fewer records read, loaded or
rejected, than counted - sends the run through the window once more (phase `reread`, the same page step
and loop, so the state machine is unchanged). A re-read record that changes the local store was missed
by the first read; a counted record the re-read no longer finds was modified during the run and moved out
of the window (its new `SystemModstamp` is past the window's end): a false alarm, not a loss - the next
run reads it. Dataverse change tracking needs no such check: a delta read returns every change since its
link, complete by construction.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..config import ImportSync
from ..connectors.port import (
    ChangeTrackingConnector,
    CountingConnector,
    CrmConnector,
    ObjectDescription,
    RecordPage,
    RecordQuery,
)
from ..domain.records import CrmDeletion, DeletionResult, LocalRecord, RecordRejected, Reject, RejectCode
from ..domain.windows import ImportWindow
from ..errors import ConfigurationError, DeltaTokenExpired
from ..inputs import decode_text
from ..stores.profiles import ApplyResult
from ..stores.rejects import RejectContext
from ..wiring import Container
from .enumerations import through_enumerations
from .import_plan import ImportPlan, resolve_import_plan
from .local_deletions import apply_deletions, local_crm_ids
from .runs import (
    S3_URI,
    Counts,
    PopulationSource,
    RunIdentity,
    StartRunEvent,
    close_run,
    leased,
    normalize_started_at,
    sync_to_start,
)
from .schema_drift import describe_for_run, mapped_fields
from .store_guard import apply_isolating, too_large

logger = logging.getLogger(__name__)

POPULATION_CHUNK = 500
SWEEP_CHUNK = 500


# ------------------------------------------------------------------------------------- payloads
class ImportPopulation(PopulationSource):
    """Record identification: exactly these CRM ids instead of a window (SPEC I8)."""

    s3_uri: str | None = Field(default=None, description="s3://bucket/key of a file with one id per line")


class StartImportEvent(StartRunEvent):
    population: ImportPopulation | None = None


class ImportTotals(Counts):
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0
    deleted_unknown: int = 0
    api_calls: int = 0
    pages: int = 0


class ImportRun(RunIdentity):
    trigger: str
    connection: str
    object: str
    mode: Literal["window", "population", "changes"]
    delta_link: str | None = None
    resync: bool = False
    population_prefix: str | None = None
    population_chunks: int = 0
    new_fields: list[str] = Field(default_factory=list)
    """CRM fields the object gained since the sync's last run (schema drift, reported)."""

    @property
    def change_tracking(self) -> Literal["initial", "delta", "resync"] | None:
        """How a change-tracking run reads: every record (first run), a delta link, or every record and
        an id comparison (no usable delta link)."""
        if self.mode != "changes":
            return None
        if self.resync:
            return "resync"
        return "delta" if self.delta_link else "initial"

    def window(self) -> ImportWindow | None:
        return None if self.mode == "population" else super().window()


class ImportCursor(BaseModel):
    number: int = 0
    cursor: str | None = None
    done: bool = False
    phase: Literal["read", "sweep", "reread"] = "read"


class WindowCheck(BaseModel):
    """A Salesforce window run's count check: COUNT() of the window at the start against what was read."""

    counted: int = Field(description="records of the window the sync selects, COUNT() when the run started")
    filtered: int = Field(default=0, description="records of the window the sync's filter leaves out")
    read: int = Field(default=0, description="records the run read (loaded or rejected)")
    shortfall: int = Field(default=0, description="counted minus read, when positive: the window was re-read")
    re_read: int = Field(default=0, description="records the re-read found in the window")
    recovered: int = Field(default=0, description="re-read records that changed the local store: missed before")
    moved_out: int = Field(
        default=0, description="counted records no longer in the window: modified during the run, read next run"
    )
    false_alarm: bool = Field(default=False, description="the shortfall was records that moved out: nothing lost")
    note: str = ""

    def concluded(self) -> WindowCheck:
        """The figures after the re-read, and what they mean in a sentence for the summary."""
        moved_out = max(0, self.counted - self.re_read)
        false_alarm = self.recovered == 0 and moved_out >= self.shortfall
        if false_alarm:
            note = (
                f"{self.shortfall} counted record(s) were not read: they were modified during the run and moved "
                "out of the window (false alarm, not a loss; the next run reads them)"
            )
        else:
            note = (
                f"{self.shortfall} counted record(s) were not read; the window was re-read and "
                f"{self.recovered} missed record(s) loaded"
                + (f"; {moved_out} moved out of the window during the run" if moved_out else "")
            )
        return self.model_copy(update={"moved_out": moved_out, "false_alarm": false_alarm, "note": note})


class ImportState(BaseModel):
    """The state the import state machine carries between steps."""

    run: ImportRun
    plan: dict[str, Any]
    page: ImportCursor = Field(default_factory=ImportCursor)
    totals: ImportTotals = Field(default_factory=ImportTotals)
    crm_api_usage: dict[str, int] | None = None
    next_delta_link: str | None = None
    window_check: WindowCheck | None = None


class ImportSummary(ImportTotals):
    """The result of a run, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = "import"
    window: dict[str, str | None] | None = None
    watermark_moved: bool = False
    crm_api_usage: dict[str, int] | None = Field(
        default=None,
        description="the CRM's API allowance as it last reported it (Salesforce: daily; Dataverse: the 300 s service-protection window): used, max, remaining",
    )
    change_tracking: Literal["initial", "delta", "resync"] | None = None
    new_fields: list[str] = Field(
        default_factory=list, description="CRM fields the object gained since the sync's last run (schema drift)"
    )
    variables: dict[str, str | None] = Field(default_factory=dict)
    window_check: WindowCheck | None = Field(
        default=None, description="Salesforce window runs: COUNT() of the window against what was read"
    )
    error: dict[str, str] | None = None


# ------------------------------------------------------------------------------------- steps
def start_import(event: StartImportEvent, container: Container) -> ImportState:
    """Take the lease, check the sync against the CRM, compute the window, record the run."""
    sync, connection, instance = sync_to_start(container, event, ImportSync, "import", "imports")
    ledger = container.runs
    with leased(container, sync, event.run_id):
        connector = container.connector(connection)
        calls_before = connector.api_calls
        described = describe_for_run(ledger, sync, connector, mapped_fields(sync))
        plan = resolved_import_plan(container, sync, described.description, connection.kind)
        started_at = normalize_started_at(event.started_at)
        run = ImportRun(
            sync_id=sync.id,
            run_id=event.run_id,
            started_at=started_at,
            trigger=event.trigger,
            connection=connection.name,
            object=plan.object,
            mode="population" if event.population else "changes" if plan.change_tracking else "window",
            new_fields=described.new_fields,
        )
        done = False
        window_check: WindowCheck | None = None
        if event.population is not None:
            run.population_prefix, run.population_chunks = _stage_population(
                container, run, event.population, connector
            )
            done = run.population_chunks == 0
        else:
            window, previous = run.open_window(container, sync, instance, connector.server_time())
            done = window.is_empty
            if run.mode == "changes":
                run.delta_link = previous.delta_link if previous else None
                run.resync = previous is not None and run.delta_link is None
                if run.delta_link:
                    _check_delta_link(connector, run.delta_link, plan, window.option, sync.id)
                done = False
            elif not done:
                window_check = _count_window(connector, plan, run)
        ledger.record_start(
            run.key,
            operation="import",
            trigger=event.trigger,
            details={
                "window": run.window_summary(),
                "object": plan.object,
                "connection": connection.name,
                "mode": run.mode,
                **({"changeTracking": run.change_tracking} if run.change_tracking else {}),
                **({"newFields": run.new_fields} if run.new_fields else {}),
            },
        )
        logger.info(
            "import run started",
            extra={
                "sync_id": sync.id,
                "run_id": event.run_id,
                "window_start": run.window_start,
                "window_end": run.window_end,
            },
        )
        return ImportState(
            run=run,
            plan=plan.to_state(),
            page=ImportCursor(done=done),
            totals=ImportTotals(api_calls=connector.api_calls - calls_before),
            crm_api_usage=api_usage_of(connector, run),
            window_check=window_check,
        )


def resolved_import_plan(
    container: Container, sync: ImportSync, description: ObjectDescription, crm_kind: str
) -> ImportPlan:
    """The sync checked against the object's description, its enumeration conversions read (SPEC S2)."""
    plan = resolve_import_plan(sync, description, crm_kind)
    return dataclasses.replace(plan, fields=through_enumerations(plan.fields, container, "import"))


def _count_window(connector: CrmConnector, plan: ImportPlan, run: ImportRun) -> WindowCheck | None:
    """COUNT() of the run's window as the read selects it - and without the filter, when there is one -
    on a CRM that counts exactly (Salesforce); None elsewhere."""
    window = run.window()
    if not isinstance(connector, CountingConnector) or window is None:
        return None
    query = plan.query(window_field=plan.watermark_field, window_start=window.start, window_end=window.end)
    counted = connector.count(query)
    everything = connector.count(dataclasses.replace(query, filter=None)) if plan.filter is not None else counted
    return WindowCheck(counted=counted, filtered=max(0, everything - counted))


def api_usage_of(connector: CrmConnector, run: ImportRun) -> dict[str, int] | None:
    """The CRM's allowance after this step; a warning when less than a tenth of it is left."""
    usage = connector.api_usage()
    if usage is None or usage.used is None or usage.maximum is None or usage.remaining is None:
        return None
    if usage.remaining < usage.maximum / 10:
        logger.warning(
            "CRM API allowance nearly used up",
            extra={"sync_id": run.sync_id, "run_id": run.run_id, "used": usage.used, "max": usage.maximum},
        )
    return {"used": usage.used, "max": usage.maximum, "remaining": usage.remaining}


def _change_tracking(connector: CrmConnector) -> ChangeTrackingConnector:
    if not isinstance(connector, ChangeTrackingConnector):
        raise ConfigurationError(f"{connector.kind} connections have no change tracking")
    return connector


def _check_delta_link(
    connector: CrmConnector, delta_link: str, plan: ImportPlan, option: str, sync_id: str
) -> None:
    """Refuse, before any data moves, a stored delta link of another table or host (the sync's object was
    changed, or the item was edited): following it would import the wrong records."""
    try:
        _change_tracking(connector).check_delta_link(delta_link, plan.object)
    except ConfigurationError as refused:
        raise ConfigurationError(
            f"the delta link stored with watermark {option} cannot be followed: {refused}; "
            f"`crmsync watermark reset {sync_id}` starts the sync over"
        ) from None


def _stage_population(
    container: Container, run: ImportRun, population: ImportPopulation, connector: CrmConnector
) -> tuple[str, int]:
    """Write the population in chunks under the run's prefix, so each page reads one small object."""
    s3 = container.aws.client("s3")
    if population.ids is not None:
        ids = population.ids
    else:
        match = S3_URI.match(population.s3_uri or "")
        assert match is not None
        if match.group(1) != container.settings.data_bucket or not match.group(2).startswith("populations/"):
            raise ConfigurationError(
                f"population files are read from s3://{container.settings.data_bucket}/populations/ only "
                f"(the functions may read nothing else); got {population.s3_uri}"
            )
        data = s3.get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
        body = decode_text(data, population.s3_uri or "")
        ids = [line.split(",")[0].strip().strip('"') for line in body.splitlines()]
        ids = [i for i in ids if i and i.lower() not in ("id", "crmid", "externalid")]
    cleaned = (connector.normalize_id(i.strip()) for i in ids)
    unique = list(dict.fromkeys(i for i in cleaned if i))
    prefix = f"runs/{run.sync_id}/{run.run_id}/population"
    chunks = 0
    for chunks, start in enumerate(range(0, len(unique), POPULATION_CHUNK), start=1):
        s3.put_object(
            Bucket=container.settings.data_bucket,
            Key=f"{prefix}/{chunks:06d}.json",
            Body=json.dumps(unique[start : start + POPULATION_CHUNK]).encode(),
            ContentType="application/json",
        )
    return prefix, chunks


def import_page(state: ImportState, container: Container) -> ImportState:
    """Read one page, map it, reconcile and apply it, route its rejects; return the next cursor."""
    run, plan = state.run, ImportPlan.from_state(state.plan)
    if state.page.done:
        return state
    container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
    connection = container.definitions.connection(run.connection)
    connector = container.connector(connection)
    calls_before = connector.api_calls
    if state.page.phase == "sweep":
        return _sweep(state, plan, container, connector)
    if state.page.phase == "reread":
        return _reread(state, plan, container, connector)
    rejects: list[Reject] = []
    deleted_ids: tuple[str, ...] = ()
    next_delta_link = state.next_delta_link

    next_cursor: str | None
    if run.mode == "population":
        ids = _population_chunk(container, run, state.page.number)
        valid = [i for i in ids if connector.is_record_id(i)]
        for invalid in (i for i in ids if i not in set(valid)):
            rejects.append(
                Reject(
                    RejectCode.INVALID_ID,
                    f"{invalid!r} is not a {connector.kind} record id",
                    {"Id": invalid},
                    crm_id=invalid,
                )
            )
        records = connector.read_by_ids(plan.query(ids=tuple(valid))) if valid else []
        # Given ids are in the form the CRM answers (`_population_chunk` normalised them): compared as they are.
        found = {connector.normalize_id(str(r.get(plan.id_field))) for r in records}
        for missing in (i for i in valid if i not in found):
            rejects.append(
                Reject(
                    RejectCode.NOT_FOUND,
                    f"{plan.object} {missing} does not exist in the CRM",
                    {"Id": missing},
                    crm_id=missing,
                )
            )
        next_cursor = str(state.page.number + 1) if state.page.number + 1 < run.population_chunks else None
    elif run.mode == "changes":
        page, run = _read_changes(state, plan, container, connector)
        records, next_cursor, deleted_ids = page.records, page.next_cursor, page.deleted_ids
        next_delta_link = page.delta_link or next_delta_link
    else:
        window = run.window()
        assert window is not None
        if state.page.cursor is None:
            page = connector.read_first_page(
                plan.query(window_field=plan.watermark_field, window_start=window.start, window_end=window.end)
            )
        else:
            page = connector.read_next_page(state.page.cursor)
        records, next_cursor = page.records, page.next_cursor

    result = load_records(
        container, plan, records, rejects, sync_id=run.sync_id, run_id=run.run_id, connection=run.connection
    )
    deletions = _apply_deletions(container, plan, run, deleted_ids)
    page_totals = ImportTotals(
        read=len(records),
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        rejected=result.rejected,
        deleted=deletions.marked,
        deleted_unknown=deletions.unknown,
        api_calls=connector.api_calls - calls_before,
        pages=1,
    )
    logger.info(
        "import page applied",
        extra={
            "sync_id": run.sync_id,
            "run_id": run.run_id,
            "page": state.page.number,
            **{f"page_{name}": value for name, value in page_totals.model_dump().items()},
        },
    )
    read_done = next_cursor is None
    totals = state.totals.plus(page_totals)
    window_check = state.window_check
    if read_done and window_check is not None:
        window_check = window_check.model_copy(
            update={"read": totals.read, "shortfall": max(0, window_check.counted - totals.read)}
        )
    phase: Literal["read", "sweep", "reread"] = "read"
    if read_done and run.mode == "changes" and run.resync:
        phase = "sweep"
    elif read_done and window_check is not None and window_check.shortfall:
        phase = "reread"
        logger.warning(
            "import read fewer records than its window counted; reading the window again",
            extra={
                "sync_id": run.sync_id,
                "run_id": run.run_id,
                "counted": window_check.counted,
                "read": totals.read,
            },
        )
    return ImportState(
        run=run,
        plan=state.plan,
        totals=totals,
        page=ImportCursor(
            number=state.page.number + 1,
            cursor=next_cursor,
            done=read_done and phase == "read",
            phase=phase,
        ),
        next_delta_link=next_delta_link,
        crm_api_usage=api_usage_of(connector, run) or state.crm_api_usage,
        window_check=window_check,
    )


def _reread(state: ImportState, plan: ImportPlan, container: Container, connector: CrmConnector) -> ImportState:
    """One page of the window read again after a count shortfall, loaded like any page (idempotent: what
    the first read applied comes back unchanged). Created and updated records were missed by the first
    read; they count in the run's totals and as `recovered`."""
    run, check = state.run, state.window_check
    window = run.window()
    assert window is not None
    assert check is not None
    calls_before = connector.api_calls
    if state.page.cursor is None:
        page = connector.read_first_page(
            plan.query(window_field=plan.watermark_field, window_start=window.start, window_end=window.end)
        )
    else:
        page = connector.read_next_page(state.page.cursor)
    result = load_records(
        container, plan, page.records, [], sync_id=run.sync_id, run_id=run.run_id, connection=run.connection
    )
    done = page.next_cursor is None
    check = check.model_copy(
        update={
            "re_read": check.re_read + len(page.records),
            "recovered": check.recovered + result.created + result.updated,
        }
    )
    if done:
        check = check.concluded()
        logger.warning(
            "import window re-read",
            extra={"sync_id": run.sync_id, "run_id": run.run_id, **check.model_dump(exclude={"note"})},
        )
    totals = ImportTotals(
        created=result.created, updated=result.updated, api_calls=connector.api_calls - calls_before, pages=1
    )
    return state.model_copy(
        update={
            "totals": state.totals.plus(totals),
            "page": ImportCursor(number=state.page.number + 1, cursor=page.next_cursor, done=done, phase="reread"),
            "window_check": check,
        }
    )


@dataclass(frozen=True)
class Loaded:
    """What one page of records did to the local store: counted as the run summary counts."""

    created: int
    updated: int
    unchanged: int
    rejected: int
    rejected_ids: tuple[str, ...] = ()
    """The CRM ids of the rejected records, routed to the reject store or not (`rejects.route: false`):
    a run that checks its completeness counts them as rejected, not missing, from the run itself."""
    loaded_ids: tuple[str, ...] = ()
    """The CRM ids of the records created, updated or found unchanged: the completeness check tells what
    this run loaded from what the store held already."""


def load_records(
    container: Container,
    plan: ImportPlan,
    records: Sequence[dict[str, Any]],
    rejects: list[Reject],
    *,
    sync_id: str,
    run_id: str,
    connection: str,
) -> Loaded:
    """The import's load path, whatever read the records (a CRM page, a transfer file): map each record
    with the sync's fields and conversions, reconcile and write them (by CRM id, then the unique key),
    and route every reject - `rejects` already holds the page's own - to the reject store."""
    mapper = plan.mapper()
    mapped: list[LocalRecord] = []
    for record in records:
        try:
            mapped.append(mapper.map(record))
        except RecordRejected as refused:
            rejects.append(
                Reject(
                    refused.code.value,
                    refused.message,
                    record,
                    crm_id=record.get(plan.id_field),
                    fields=refused.fields,
                )
            )

    mapped, oversized = too_large(mapped)
    rejects.extend(oversized)
    result, not_stored = apply_isolating(mapped, lambda chunk: _store(container, plan, connection, run_id, chunk))
    rejects.extend(not_stored)
    for local, duplicate in result.rejects:
        rejects.append(
            Reject(
                duplicate.code.value, duplicate.message, local.source, crm_id=local.crm_id, fields=duplicate.fields
            )
        )

    container.rejects.route(
        rejects,
        RejectContext(sync_id, run_id, "import", "crm-to-marketing"),
        enabled=plan.route_rejects,
    )
    rejected_ids = tuple(dict.fromkeys(str(r.crm_id) for r in rejects if r.crm_id))
    not_loaded = set(rejected_ids)
    loaded_ids = tuple(m.crm_id for m in mapped if m.crm_id and m.crm_id not in not_loaded)
    return Loaded(result.created, result.updated, result.unchanged, len(rejects), rejected_ids, loaded_ids)


def _store(
    container: Container, plan: ImportPlan, connection: str, run_id: str, records: list[LocalRecord]
) -> ApplyResult:
    """Reconcile and write mapped records into the sync's target: profiles or a resource table."""
    if plan.target_kind == "resource":
        assert plan.resource is not None
        return container.resources.apply_import(
            records, resource=plan.resource, connection=connection, run_id=run_id
        )
    return container.profiles.apply_import(
        records,
        connection=connection,
        object_name=plan.object,
        key_attribute=plan.key_attribute,
        case_insensitive=plan.case_insensitive,
        run_id=run_id,
    )


def _read_changes(
    state: ImportState, plan: ImportPlan, container: Container, connector: CrmConnector
) -> tuple[RecordPage, ImportRun]:
    """The next page of a change-tracking read. An expired delta link, or none while the table's records
    are known locally, turns the run into a resync (a full read, then the id comparison)."""
    run = state.run
    if state.page.cursor is not None:
        return connector.read_next_page(state.page.cursor), run
    if run.delta_link is None and not run.resync and any(_local_crm_ids(container, plan, run, limit=1)):
        run = run.model_copy(update={"resync": True})
    changes = _change_tracking(connector)
    if run.delta_link and not run.resync:
        try:
            return changes.read_changes(plan.query(), run.delta_link), run
        except DeltaTokenExpired:
            logger.warning(
                "delta link expired; reading every record and comparing ids",
                extra={"sync_id": run.sync_id, "run_id": run.run_id, "option": run.option},
            )
            run = run.model_copy(update={"resync": True})
    return changes.read_changes(plan.query(), None), run


def _apply_deletions(
    container: Container, plan: ImportPlan, run: ImportRun, crm_ids: Sequence[str]
) -> DeletionResult:
    """Flag the local records of CRM deletions (SPEC D2, the default), dated by the run that saw them:
    change tracking does not say when a record was deleted."""
    seen = datetime.fromisoformat(run.started_at)
    deletions = [CrmDeletion(crm_id, seen) for crm_id in crm_ids]
    return apply_deletions(container, plan.target(run.connection), deletions, run_id=run.run_id)


def _local_crm_ids(
    container: Container, plan: ImportPlan, run: ImportRun, *, after: str | None = None, limit: int
) -> tuple[list[str], str | None]:
    return local_crm_ids(container, plan.target(run.connection), after=after, limit=limit)


def _sweep(state: ImportState, plan: ImportPlan, container: Container, connector: CrmConnector) -> ImportState:
    """One chunk of the id comparison after a full read: local CRM ids the CRM no longer has were deleted."""
    run = state.run
    calls_before = connector.api_calls
    ids, after = _local_crm_ids(container, plan, run, after=state.page.cursor, limit=SWEEP_CHUNK)
    query = RecordQuery(object=plan.object, fields=(plan.id_field,), ids=tuple(ids), field_types=plan.field_types)
    existing = {str(r[plan.id_field]).lower() for r in connector.read_by_ids(query)} if ids else set()
    deletions = _apply_deletions(container, plan, run, [i for i in ids if i.lower() not in existing])
    logger.info(
        "deletion sweep chunk",
        extra={"sync_id": run.sync_id, "run_id": run.run_id, "checked": len(ids), "deleted": deletions.marked},
    )
    totals = ImportTotals(
        deleted=deletions.marked, deleted_unknown=deletions.unknown, api_calls=connector.api_calls - calls_before
    )
    return state.model_copy(
        update={
            "totals": state.totals.plus(totals),
            "page": ImportCursor(number=state.page.number + 1, cursor=after, done=after is None, phase="sweep"),
        }
    )


def _population_chunk(container: Container, run: ImportRun, number: int) -> list[str]:
    key = f"{run.population_prefix}/{number + 1:06d}.json"
    body = container.aws.client("s3").get_object(Bucket=container.settings.data_bucket, Key=key)["Body"].read()
    ids = json.loads(body)
    if not isinstance(ids, list):
        raise ConfigurationError(f"population chunk {key} is not a JSON list")
    return [str(i) for i in ids]


def finish_import(state: ImportState, container: Container) -> ImportSummary:
    """Move the watermark to the window's end - only forward, only under this run's lease - and close."""
    run = state.run
    if not state.page.done:
        raise ConfigurationError("finish was called before the last page was applied")
    window = run.window()
    summary = ImportSummary(
        sync_id=run.sync_id,
        run_id=run.run_id,
        status="SUCCEEDED",
        window=run.window_summary() if window else None,
        variables=window.variables() if window else {},
        crm_api_usage=state.crm_api_usage,
        change_tracking=run.change_tracking,
        new_fields=run.new_fields,
        window_check=state.window_check,
        **state.totals.model_dump(),
    )
    close_run(
        container,
        run.key,
        summary,
        operation="import",
        window=window,
        delta_link=state.next_delta_link if run.mode == "changes" else None,
    )
    return summary


__all__ = [
    "ImportPopulation",
    "ImportState",
    "ImportSummary",
    "StartImportEvent",
    "WindowCheck",
    "finish_import",
    "import_page",
    "load_records",
    "start_import",
]
