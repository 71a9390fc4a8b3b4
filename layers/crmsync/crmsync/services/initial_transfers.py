"""The initial transfer (SPEC T1, N3): the first import of a large object by files, one use case per step.

An `initial_transfer` sync names an import sync; the transfer loads with that sync's rules and sets that
sync's watermark, so the import's incremental runs take over where the transfer stopped.

- start: take the lease, check the import sync against the CRM, count the object (Salesforce `COUNT()`,
  Dataverse `RetrieveTotalRecordCount`). Below the sync's `threshold` the state machine runs the import
  sync's ordinary first import (its own three functions) and the transfer only records it. At or above
  it the transfer reads the CRM's clock - the extract's start, less the import's overlap, becomes the
  window's end and so the watermark - and the extract begins. An unfinished transfer of the sync (its
  parts planned, some not loaded) is resumed instead: nothing is extracted again.
- extract (a loop of steps, each within a time budget): the whole object, through the CRM's cheapest
  read - a Bulk API 2.0 query job read in `Sforce-Locator` pages, or a Dataverse change-tracking read in
  pages of 5,000 whose last page carries the delta link - written to S3 as JSON Lines parts of
  `part_records` records. Each step carries the read's cursor, so a retried step rewrites the same parts.
  Once read, the parts become the batch ledger and the manifest the Distributed Map reads.
- one part (a child of the Map, up to `max_concurrency` side by side): claimed in the ledger (a loaded
  part is skipped), loaded with the import's own load path (`imports.load_records`: mapping, conversions,
  reconciliation by CRM id then key with conditional lookup writes, so parallel parts never make two
  profiles for one record or one key; rejects to the reject store under the import sync).
- completeness (a loop of steps, one id page each): every id of the object (the id pages of the deletion
  import's id-set comparison) accounted for as loaded, rejected or filtered; a missing one is re-read by
  id and loaded (`services/completeness.py`); the summary reports the figures.
- finish: add the ledger up, set the import sync's watermark (only forward) and, for Dataverse, store the
  delta link with it, close the run - in one transaction (`batched_runs.BatchedOperation.finish`).

A failed part is retried alone by the Map's Retry; a run that failed anyway stays unfinished, and the next
run of the transfer sync loads only the parts not yet loaded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..config import ImportSync, InitialTransferSync
from ..connectors.port import CrmConnector, CrmWriter, ExtractConnector, RecordPage, WriteJournal
from ..domain.records import Reject
from ..domain.windows import format_watermark
from ..errors import ConfigurationError
from ..stores.batches import BatchEntry
from ..wiring import Container
from . import batched_runs as batched
from .completeness import Completeness, CompletenessCheck, completeness_step
from .import_plan import ImportPlan
from .imports import ImportSummary, load_records, resolved_import_plan
from .runs import Counts, close_run, leased, next_window, normalize_started_at, sync_to_start

logger = logging.getLogger(__name__)

OPERATION = "initial_transfer"
EXTRACT_STEP_SECONDS = 600.0
"""How long one extract step reads before it hands its cursor back (the function's timeout is 900 s)."""
IMPORTED_COUNTS = ("read", "created", "updated", "unchanged", "rejected", "api_calls")


# ------------------------------------------------------------------------------------- payloads
class StartTransferEvent(batched.StartEvent):
    """What starts a transfer: the execution's input. A transfer takes no population."""


class TransferTotals(Counts):
    counted: int = 0
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    parts: int = 0
    api_calls: int = 0


class TransferRun(batched.BatchedRun):
    """The run context every step carries; kept whole in the unfinished-run item once the parts exist."""

    mode: Literal["files", "import"]
    import_sync: str
    counted: int = 0
    threshold: int
    part_records: int
    tracking: bool = False
    """Dataverse change tracking: the extract ends with a delta link for the import's later runs."""
    extract_cursor: str | None = None
    extracted: bool = False
    part_sizes: list[int] = Field(default_factory=list)
    delta_link: str | None = None


class TransferState(batched.BatchedState[TransferRun, TransferTotals]):
    """The state the transfer's state machine carries; `imported` is the ordinary import's summary when the
    object was below the threshold, `completeness` where the check after the parts' load stands."""

    plan: dict[str, Any]
    totals: TransferTotals = Field(default_factory=TransferTotals)
    imported: dict[str, Any] | None = None
    completeness: CompletenessCheck | None = None


class TransferPartEvent(batched.BatchEvent[TransferRun]):
    """One item of the Map over the manifest: the run, the import plan, and which part."""

    plan: dict[str, Any]


class InitialTransferSummary(batched.BatchedSummary, TransferTotals):
    """The result of a transfer, as `crmsync run --wait --json` prints it."""

    mode: Literal["files", "import"]
    import_sync: str
    threshold: int
    delta_link_kept: bool = False
    completeness: Completeness | None = Field(
        default=None, description="files: every CRM id loaded, rejected or filtered; missing ones re-read"
    )


# ------------------------------------------------------------------------------------- the operation
class InitialTransfer(
    batched.BatchedFrame[
        InitialTransferSync,
        ImportPlan,
        TransferRun,
        TransferTotals,
        TransferState,
        TransferPartEvent,
        InitialTransferSummary,
    ]
):
    operation = OPERATION
    noun = "initial transfer"
    direction = "crm-to-marketing"
    machine = "initial-transfer"
    runs = "initial transfers"
    identity_field = "Id"
    sync_model = InitialTransferSync
    run_model = TransferRun
    totals_model = TransferTotals
    state_model = TransferState
    summary_model = InitialTransferSummary

    # -- hooks -----------------------------------------------------------------------------------
    def state_fields(self, plan: ImportPlan) -> dict[str, Any]:
        return {"plan": plan.to_state()}

    def delta_link(self, run: TransferRun) -> str | None:
        return run.delta_link

    def summary_extra(self, state: TransferState) -> dict[str, Any]:
        run = state.run
        return {
            "counted": run.counted,
            "mode": run.mode,
            "import_sync": run.import_sync,
            "threshold": run.threshold,
            "delta_link_kept": run.delta_link is not None,
            "completeness": state.completeness.figures if state.completeness else None,
        }

    def send(
        self,
        container: Container,
        event: TransferPartEvent,
        claim: BatchEntry,
        rows: list[dict[str, Any]],
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
    ) -> batched.BatchResult:
        """Load one part with the import's load path; its rejects go to the reject store under the import
        sync (so `crmsync rejects replay` re-reads them by CRM id through the import). The part's results
        name the CRM ids it rejected: the completeness check reads them when the import sync routes no
        rejects (`rejects.route: false`), so they count as rejected, not missing."""
        run = event.run
        rejects: list[Reject] = []
        loaded = load_records(
            container,
            ImportPlan.from_state(event.plan),
            rows,
            rejects,
            sync_id=run.import_sync,
            run_id=run.run_id,
            connection=run.connection,
        )
        counts = {
            "read": len(rows),
            "created": loaded.created,
            "updated": loaded.updated,
            "unchanged": loaded.unchanged,
            "rejected": loaded.rejected,
            "parts": 1,
        }
        outcomes = [{"crmId": crm_id, "status": "rejected"} for crm_id in loaded.rejected_ids]
        return batched.BatchResult(outcomes=outcomes, counts=counts, rejects=[], route_rejects=False)

    # -- start -----------------------------------------------------------------------------------
    def start(self, event: batched.StartEvent, container: Container) -> TransferState:
        """Take the lease, resume the unfinished transfer or count the object and choose the route."""
        if event.population is not None:
            raise ConfigurationError("an initial transfer reads the whole object; it takes no ids or population")
        sync, connection, instance = sync_to_start(container, event, self.sync_model, self.machine, self.runs)
        import_sync = _import_sync(container, sync)
        with leased(container, sync, event.run_id):  # refused while the import sync runs, and vice versa
            connector = container.connector(connection)
            calls_before = connector.api_calls
            description = connector.describe(import_sync.object)
            plan = resolved_import_plan(container, import_sync, description, connection.kind)
            started_at = normalize_started_at(event.started_at)
            run = self._resumed(container, event, started_at, sync.max_concurrency, False)
            if run is None:
                counted = _extractor(connector).count_records(import_sync.object)
                run = TransferRun.model_validate(
                    {
                        **batched.new_run(event, started_at, connection.name, plan.object, sync.max_concurrency),
                        "mode": "files" if counted >= sync.threshold else "import",
                        "import_sync": import_sync.id,
                        "counted": counted,
                        "threshold": sync.threshold,
                        "part_records": sync.part_records,
                        "tracking": plan.change_tracking,
                    }
                )
                if run.mode == "files":
                    _open_window(container, run, import_sync, instance, connector.server_time())
            container.runs.record_start(
                run.key,
                operation=self.operation,
                trigger=event.trigger,
                details={**batched.run_details(run), "importSync": run.import_sync, "counted": run.counted},
            )
            logger.info(
                "initial transfer resumed" if run.resumed_from else "initial transfer started",
                extra={"sync_id": run.sync_id, "run_id": run.run_id, "mode": run.mode, "counted": run.counted},
            )
            totals = TransferTotals(counted=run.counted, api_calls=connector.api_calls - calls_before)
            return TransferState(run=run, totals=totals, plan=plan.to_state())

    # -- extract ---------------------------------------------------------------------------------
    def extract(self, state: TransferState, container: Container) -> TransferState:
        """Read the extract from its cursor into JSON Lines parts until it ends or the step's time is
        spent; once it ends, plan the parts as the batch ledger and write the Map's manifest."""
        run = state.run.model_copy(deep=True)
        if run.extracted:
            return state
        plan = ImportPlan.from_state(state.plan)
        connector = _extractor(container.connector(container.definitions.connection(run.connection)))
        calls_before = connector.api_calls
        deadline = time.monotonic() + EXTRACT_STEP_SECONDS
        s3 = container.aws.client("s3")
        pending: list[dict[str, Any]] = []
        cursor = run.extract_cursor
        started = False
        while not started or cursor is not None:
            container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
            page = _extract_page(connector, plan, run, cursor)
            started = True
            pending.extend(page.records)
            cursor = page.next_cursor
            if page.delta_link:
                run.delta_link = page.delta_link
            if len(pending) >= run.part_records or (cursor is None and pending):
                key = _part_key(run, len(run.part_sizes) + 1)
                body = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in pending)
                s3.put_object(
                    Bucket=container.settings.data_bucket,
                    Key=key,
                    Body=body.encode(),
                    ContentType="application/x-ndjson",
                )
                run.part_sizes.append(len(pending))
                pending = []
                run.extract_cursor = cursor
                logger.info(
                    "transfer part extracted",
                    extra={"run_id": run.run_id, "part": len(run.part_sizes), "records": run.part_sizes[-1]},
                )
                if cursor is not None and time.monotonic() > deadline:
                    break
            elif not page.records and cursor is not None:
                run.extract_cursor = cursor  # a query job still running: the next step asks again
                break
        if cursor is None and not pending:
            run.extracted = True
            parts = [(_part_key(run, n), size) for n, size in enumerate(run.part_sizes, start=1)]
            batches = batched.plan_batches(
                container,
                sync_id=run.sync_id,
                ledger_run=run.ledger_run,
                manifest_key=run.manifest_key,
                parts=parts,
                parts_per_batch=1,
                api="collections",
            )
            run.batches = len(batches)
            run.records = sum(run.part_sizes)
            if batches:
                container.batches.mark_unfinished(run.sync_id, self.operation, run.model_dump(mode="json"))
        totals = state.totals.plus({"api_calls": connector.api_calls - calls_before})
        return state.model_copy(update={"run": run, "totals": totals})

    # -- completeness ----------------------------------------------------------------------------
    def check(self, state: TransferState, container: Container) -> TransferState:
        """One page of the completeness check once every part is loaded: the object's ids against what
        was loaded or rejected; a missing record is re-read by id and loaded (`services/completeness.py`)."""
        run = state.run
        container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
        if state.completeness is None:
            batched.done_ledger_counts(container, run)  # every part loaded, or no check (nor finish)
        plan = ImportPlan.from_state(state.plan)
        check = completeness_step(
            container,
            plan,
            state.completeness or CompletenessCheck(),
            sync_id=run.import_sync,
            run_id=run.run_id,
            connection=run.connection,
            rejected_ids=() if plan.route_rejects else _parts_rejected_ids(container, run),
        )
        return state.model_copy(update={"completeness": check})

    # -- finish ----------------------------------------------------------------------------------
    def finish(self, state: TransferState, container: Container) -> InitialTransferSummary:
        """Files: the frame's finish (ledger added up, watermark and delta link set, run closed). Below the
        threshold: the ordinary import already set the watermark; record its counts and close the run."""
        run = state.run
        if run.mode == "files":
            return super().finish(state, container)
        imported = ImportSummary.model_validate(
            state.imported or {"sync_id": run.import_sync, "run_id": run.run_id}
        )
        totals = state.totals.plus({name: getattr(imported, name) for name in IMPORTED_COUNTS})
        summary = InitialTransferSummary.model_validate(
            {
                **totals.model_dump(),
                "sync_id": run.sync_id,
                "run_id": run.run_id,
                "operation": self.operation,
                "mode": run.mode,
                "import_sync": run.import_sync,
                "threshold": run.threshold,
                "window": imported.window,
                "delta_link_kept": imported.change_tracking is not None,
            }
        )
        close_run(container, run.key, summary, operation=self.operation, window=None)
        return summary.model_copy(update={"watermark_moved": imported.watermark_moved})


# ------------------------------------------------------------------------------------- pieces
def _import_sync(container: Container, sync: InitialTransferSync) -> ImportSync:
    target = container.definitions.sync(sync.import_sync).sync
    if not isinstance(target, ImportSync):
        raise ConfigurationError(
            f"sync {sync.id!r} transfers for {sync.import_sync!r}, which is an {target.operation}, not an import"
        )
    return target


def _extractor(connector: CrmConnector) -> ExtractConnector:
    if not isinstance(connector, ExtractConnector):
        raise ConfigurationError(f"{connector.kind} connections cannot extract an object by files")
    return connector


def _extract_page(
    connector: ExtractConnector, plan: ImportPlan, run: TransferRun, cursor: str | None
) -> RecordPage:
    return connector.extract_page(plan.query(), cursor, records=run.part_records, tracking=run.tracking)


def _parts_rejected_ids(container: Container, run: TransferRun) -> list[str]:
    """The CRM ids the parts rejected, from their batch results: the reject store holds none of them when
    the import sync routes no rejects. One read per part, made only then."""
    ledger = container.batches
    return [
        str(result["crmId"])
        for entry in ledger.entries(run.sync_id, run.ledger_run)
        for result in ledger.results(entry)
        if result.get("status") == "rejected" and result.get("crmId")
    ]


def _part_key(run: TransferRun, number: int) -> str:
    return f"{run.prefix}/parts/{number:06d}.jsonl"


def _open_window(
    container: Container, run: TransferRun, sync: ImportSync, instance: str, extract_start: datetime
) -> None:
    """The window the transfer covers, ending at the extract's start less the import's overlap: the
    import's first incremental run starts there (less the overlap again), so a record changed while the
    extract ran is read by it."""
    option = sync.watermark_option(instance)
    overlap = sync.watermark.overlap_seconds
    window, _ = next_window(container, option, extract_start, overlap_seconds=overlap, lag_seconds=overlap)
    run.option = option
    run.window_start = format_watermark(window.start) if window.start else None
    run.window_end = format_watermark(window.end)
    run.previous_watermark = format_watermark(window.previous) if window.previous else None
    logger.info(
        "transfer window set",
        extra={"run_id": run.run_id, "window_end": run.window_end, "extract_start": extract_start.isoformat()},
    )


INITIAL_TRANSFER = InitialTransfer()
start_transfer = INITIAL_TRANSFER.start
extract_transfer = INITIAL_TRANSFER.extract
load_transfer_part = INITIAL_TRANSFER.batch
check_transfer = INITIAL_TRANSFER.check
finish_transfer = INITIAL_TRANSFER.finish

__all__ = [
    "INITIAL_TRANSFER",
    "InitialTransferSummary",
    "StartTransferEvent",
    "TransferPartEvent",
    "TransferState",
    "check_transfer",
    "extract_transfer",
    "finish_transfer",
    "load_transfer_part",
    "start_transfer",
]
