"""Deletion of records in the CRM, one use case per step of the `delete` state machine: start, one
batch, finish (SPEC D3, R1).

The population is the CRM ids given (a list, or a file in the data bucket), or - without one - the
records linked to the profiles flagged for deletion (the sync's `flag` attribute) since the last run.
It is snapshotted to S3 and split into batches recorded in the batch ledger, like an export, so a run
that stops half-way is resumed by the next one without sending a done batch again. Re-sending a batch
whose outcome is unknown is harmless: a record the CRM no longer has comes back as already gone
(Salesforce `ENTITY_IS_DELETED`, Dataverse 404), counted apart from deletions, never as a reject. Each
deletion is applied on the marketing side too, as the deletion import would (SPEC D2).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import CrmDeleteSync
from ..connectors.dynamics.odata import is_guid
from ..connectors.port import CrmWriter, RecordWrite, WriteJournal, WriteRequest, WriteResult
from ..connectors.salesforce.soql import is_salesforce_id
from ..domain.records import CrmDeletion, Reject, RejectCode
from ..domain.windows import compute_window, format_watermark
from ..errors import ConfigurationError, CrmOutcomeUnknown
from ..inputs import decode_text
from ..stores.batches import BatchAlreadyDone, BatchLedger
from ..stores.profiles import link_name
from ..stores.rejects import RejectContext
from ..wiring import Container
from .batched_runs import ledger_counts, plan_batches, read_part, resumed_run, write_snapshot
from .local_deletions import LocalTarget, apply_deletions
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

logger = logging.getLogger(__name__)

OPERATION = "delete"
DIRECTION = "marketing-to-crm"
PROFILE_READ_CHUNK = 500
RESEND_ROUNDS = 3


# ------------------------------------------------------------------------------------- payloads
class DeletePopulation(PopulationSource):
    """CRM ids to delete: inline, or an S3 file in the data bucket's `populations/` (one id per line, or
    a CSV whose first column is the id)."""


class StartDeleteEvent(StartRunEvent):
    population: DeletePopulation | None = None


class DeleteTotals(BaseModel):
    selected: int = 0
    deleted: int = 0
    already_gone: int = 0
    rejected: int = 0
    api_calls: int = 0
    batches: int = 0

    def plus(self, more: dict[str, int]) -> DeleteTotals:
        return DeleteTotals(
            **{name: getattr(self, name) + int(more.get(name, 0)) for name in DeleteTotals.model_fields}
        )


class DeleteRun(RunIdentity):
    """The run context every step carries; `ledger_run` names the run whose batches these are."""

    trigger: str
    connection: str
    crm_kind: str
    object: str
    id_field: str
    ledger_run: str
    resumed_from: str | None = None
    mode: Literal["flagged", "ids", "file"]
    prefix: str
    manifest_key: str
    batches: int = 0
    records: int = 0
    rejected_at_start: int = 0
    api: Literal["collections", "bulk"] = "collections"
    max_concurrency: int = 4
    route_rejects: bool = True


class DeleteState(BaseModel):
    run: DeleteRun
    totals: DeleteTotals = Field(default_factory=DeleteTotals)


class DeleteBatchEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    run: DeleteRun
    number: int


class DeleteBatchOutcome(BaseModel):
    number: int
    skipped: bool = False
    totals: DeleteTotals = Field(default_factory=DeleteTotals)


class DeleteSummary(DeleteTotals):
    """The result of a deletion run, as `crmsync run --wait --json` prints it."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str = OPERATION
    resumed_from: str | None = None
    window: dict[str, str | None] | None = None
    watermark_moved: bool = False


# ------------------------------------------------------------------------------------- start
def start_delete(event: StartDeleteEvent, container: Container) -> DeleteState:
    """Take the lease, check the object, then resume the unfinished run or snapshot a new population."""
    sync, connection, instance = sync_to_start(container, event, CrmDeleteSync, "delete", "deletions in the CRM")
    with leased(container, sync.id, event.run_id):
        connector = container.connector(connection)
        calls_before = connector.api_calls
        description = connector.describe(sync.object)
        started_at = normalize_started_at(event.started_at)
        run = resumed_run(
            container,
            DeleteRun,
            event,
            operation=OPERATION,
            started_at=started_at,
            max_concurrency=sync.max_concurrency,
            population_given=event.population is not None,
        )
        if run is None:
            run = DeleteRun(
                sync_id=sync.id,
                run_id=event.run_id,
                started_at=started_at,
                trigger=event.trigger,
                connection=connection.name,
                crm_kind=connection.kind,
                object=description.name,
                id_field=description.id_field,
                ledger_run=event.run_id,
                mode="flagged"
                if event.population is None
                else "ids"
                if event.population.ids is not None
                else "file",
                prefix=f"runs/{sync.id}/{event.run_id}",
                manifest_key=f"runs/{sync.id}/{event.run_id}/manifest.json",
                max_concurrency=sync.max_concurrency,
                route_rejects=sync.rejects.route,
            )
            _plan(run, event, container, sync, instance, description.key_prefix)
        container.runs.record_start(
            run.key,
            operation=OPERATION,
            trigger=event.trigger,
            details={
                "window": {"option": run.option, "start": run.window_start, "end": run.window_end},
                "object": run.object,
                "connection": connection.name,
                "mode": run.mode,
                "ledgerRun": run.ledger_run,
                "batches": run.batches,
                "records": run.records,
            },
        )
        logger.info(
            "deletion run resumed" if run.resumed_from else "deletion run started",
            extra={"sync_id": sync.id, "run_id": run.run_id, "batches": run.batches, "records": run.records},
        )
        return DeleteState(run=run, totals=DeleteTotals(api_calls=connector.api_calls - calls_before))


def _valid_crm_id(value: str, kind: str) -> bool:
    return is_salesforce_id(value) if kind == "salesforce" else is_guid(value)


def _given_ids(container: Container, population: DeletePopulation) -> list[str]:
    if population.ids is not None:
        return population.ids
    match = S3_URI.match(population.s3_uri or "")
    assert match is not None
    if match.group(1) != container.settings.data_bucket or not match.group(2).startswith("populations/"):
        raise ConfigurationError(
            f"id files are read from s3://{container.settings.data_bucket}/populations/ only "
            f"(the functions may read nothing else); got {population.s3_uri}"
        )
    body = container.aws.client("s3").get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
    rows = csv.reader(io.StringIO(decode_text(body, population.s3_uri or "")))
    ids = [row[0].strip() for row in rows if row and row[0].strip()]
    return [i for i in ids if i.lower() not in ("id", "crmid", "externalid")]


def _plan(
    run: DeleteRun,
    event: StartDeleteEvent,
    container: Container,
    sync: CrmDeleteSync,
    instance: str,
    key_prefix: str | None,
) -> None:
    """Resolve the population, snapshot it in parts, write the manifest, plan the ledger. A given id of
    another object is refused: Salesforce deletes whatever id it is sent, of any object."""
    rejects: list[Reject] = []
    rows: Iterator[dict[str, Any]]
    if event.population is None:
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
        since = window.start.isoformat(timespec="seconds") if window.start else None
        until = now - timedelta(seconds=sync.watermark.lag_seconds)
        rows = _flagged(container, run, sync.flag, since, until.isoformat())
    else:
        given: list[dict[str, Any]] = []
        for value in _given_ids(container, event.population):
            crm_id = value.lower() if run.crm_kind == "dynamics" else value
            if not _valid_crm_id(crm_id, run.crm_kind):
                rejects.append(
                    Reject(RejectCode.INVALID_ID, f"{value!r} is not a {run.crm_kind} record id", {"crmId": value})
                )
            elif key_prefix and not crm_id.startswith(key_prefix):
                rejects.append(
                    Reject(
                        RejectCode.INVALID_ID,
                        f"{value!r} is not a {run.object} id ({run.object} ids start {key_prefix}); not deleted",
                        {"crmId": value},
                    )
                )
            else:
                given.append({"crmId": crm_id})
        rows = iter(given)
    parts = write_snapshot(container, run.prefix, rows, part_size=sync.batch_size, identity=lambda r: r["crmId"])
    run.records = sum(size for _, size in parts)
    run.api = "bulk" if run.records >= sync.bulk_threshold and run.crm_kind == "salesforce" else "collections"
    batches = plan_batches(
        container,
        sync_id=run.sync_id,
        ledger_run=run.ledger_run,
        manifest_key=run.manifest_key,
        parts=parts,
        parts_per_batch=1,
        api=run.api,
    )
    run.batches = len(batches)
    if rejects:
        container.rejects.route(
            rejects, RejectContext(run.sync_id, run.run_id, OPERATION, DIRECTION), enabled=run.route_rejects
        )
        run.rejected_at_start = len(rejects)
    if batches:
        container.batches.mark_unfinished(run.sync_id, OPERATION, run.model_dump(mode="json"))


def _flagged_value(value: Any) -> bool:
    """A flag set by a form, a CSV or an API: true, "true", "yes", "1" or 1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return value is True or value == 1


def _flagged(
    container: Container, run: DeleteRun, flag: str, since: str | None, until: str
) -> Iterator[dict[str, Any]]:
    """The CRM records linked to profiles flagged for deletion since the last run (not deleted already)."""
    link = link_name(run.connection, run.object)
    profiles = container.profiles
    for ids in profiles.changed_profile_ids(since, until):
        for start in range(0, len(ids), PROFILE_READ_CHUNK):
            for item in profiles.get_many(ids[start : start + PROFILE_READ_CHUNK]):
                crm_id = (item.get("externalIds") or {}).get(link)
                if crm_id and _flagged_value((item.get("attrs") or {}).get(flag)) and not item.get("deletedInCrm"):
                    yield {"crmId": crm_id, "profileId": item["profileId"]}


# ------------------------------------------------------------------------------------- one batch
class _LedgerJournal:
    """The writer port's journal kept in the batch's ledger entry (the bulk job a batch started)."""

    def __init__(self, ledger: BatchLedger, run: DeleteRun, number: int, job_id: str | None) -> None:
        self.ledger, self.run, self.number, self.job_id = ledger, run, number, job_id

    def record_job(self, job_id: str | None) -> None:
        self.ledger.record_job(self.run.sync_id, self.run.ledger_run, self.number, "delete", job_id)
        self.job_id = job_id


def _send(writer: CrmWriter, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]:
    """Deleting is idempotent: a call whose outcome is unknown is sent again for the records it did not
    answer, which come back deleted or already gone."""
    done: list[WriteResult] = []
    for _ in range(RESEND_ROUNDS):
        try:
            return done + writer.write(request, journal)
        except CrmOutcomeUnknown as unknown:
            done += list(unknown.completed)
            answered = {r.ref for r in unknown.completed}
            request = WriteRequest(
                object=request.object,
                kind="delete",
                records=tuple(r for r in request.records if r.ref not in answered),
                key_field=request.key_field,
                bulk=request.bulk,
            )
            logger.warning("deletion call outcome unknown; sending the unanswered ids again")
    raise CrmOutcomeUnknown(f"deleting {len(request.records)} records kept ending without an answer")


def delete_batch(event: DeleteBatchEvent, container: Container) -> DeleteBatchOutcome:
    """Claim one batch, delete its records in the CRM, apply the deletions locally, route the rejects."""
    run = event.run
    container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
    ledger = container.batches
    try:
        before = ledger.claim(run.sync_id, run.ledger_run, event.number)
    except BatchAlreadyDone:
        return DeleteBatchOutcome(number=event.number, skipped=True)
    rows = [row for key in before.keys for row in read_part(container, key)]
    profile_of = {row["crmId"]: row.get("profileId") for row in rows}
    writer = container.writer(container.definitions.connection(run.connection))
    calls_before = writer.api_calls
    request = WriteRequest(
        object=run.object,
        kind="delete",
        records=tuple(RecordWrite(ref=row["crmId"], fields={run.id_field: row["crmId"]}) for row in rows),
        key_field=run.id_field,
        bulk=before.api == "bulk",
    )
    results = _send(writer, request, _LedgerJournal(ledger, run, event.number, before.jobs.get("delete")))
    counts = {"deleted": 0, "already_gone": 0, "rejected": 0, "selected": len(rows)}
    rejects: list[Reject] = []
    outcomes: list[dict[str, Any]] = []
    removed: list[CrmDeletion] = []
    now = datetime.now(UTC)
    for result in results:
        if result.gone or result.success:
            counts["already_gone" if result.gone else "deleted"] += 1
            removed.append(CrmDeletion(result.ref, now))
            outcomes.append({"crmId": result.ref, "status": "already_gone" if result.gone else "deleted"})
            continue
        counts["rejected"] += 1
        error = result.errors[0]
        rejects.append(
            Reject(
                error.code,
                "; ".join(e.message for e in result.errors),
                {"crmId": result.ref, "profileId": profile_of.get(result.ref)},
                crm_id=result.ref,
                fields=error.fields,
                profile_id=profile_of.get(result.ref),
            )
        )
        outcomes.append({"crmId": result.ref, "status": "rejected", "error": error.code})
    apply_deletions(container, LocalTarget(run.connection, run.object), removed, run_id=run.run_id)
    container.rejects.route(
        rejects, RejectContext(run.sync_id, run.run_id, OPERATION, DIRECTION), enabled=run.route_rejects
    )
    counts["api_calls"] = writer.api_calls - calls_before
    try:
        ledger.complete(run.sync_id, run.ledger_run, event.number, outcomes, counts)
    except BatchAlreadyDone:
        return DeleteBatchOutcome(number=event.number, skipped=True)
    logger.info("deletion batch done", extra={"run_id": run.run_id, "batch": event.number, **counts})
    return DeleteBatchOutcome(number=event.number, totals=DeleteTotals().plus(counts))


# ------------------------------------------------------------------------------------- finish
def finish_delete(state: DeleteState, container: Container) -> DeleteSummary:
    """Add the ledger up, move the watermark, forget the unfinished run, close this one - one transaction."""
    run = state.run
    counts, undone = ledger_counts(container, run.sync_id, run.ledger_run)
    if undone:
        raise ConfigurationError(
            f"batches {undone[:10]} of run {run.ledger_run} are not done; the run stays resumable"
        )
    totals = DeleteTotals(api_calls=state.totals.api_calls, batches=run.batches, rejected=run.rejected_at_start)
    totals = totals.plus({k: v for k, v in counts.items() if k != "batches"})
    window = run.window()
    summary = DeleteSummary(
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
    "DeleteBatchEvent",
    "DeleteBatchOutcome",
    "DeletePopulation",
    "DeleteState",
    "DeleteSummary",
    "StartDeleteEvent",
    "delete_batch",
    "finish_delete",
    "start_delete",
]
