"""The frame of every resumable batched run (export, deletion in the CRM - SPEC E4, D3), written once.

An operation subclasses `BatchedOperation` and supplies hooks only (an operation that reads its population
in steps of its own - the initial transfer's extract - subclasses `BatchedFrame`, the batch and finish
below, and brings its own start): how its sync is checked against the
CRM (`prepare`), which records make its population (`changed`, `given`), how one batch is sent and what
its results mean (`send`), and its summary model. The algorithm stays here, the same for every operation,
as Powertools' `BasePartialProcessor` or Meltano's `BatchSink.process_batch` keep theirs (and as
`runs.py` does for the run lifecycle):

- start: the sync check, the lease, then either the unfinished run of the sync taken over (same
  snapshot, same batches) or a new one planned: window, population -> S3 snapshot in parts -> manifest
  the state machine's Map reads -> every batch recorded as pending in the batch ledger, before any is
  claimed;
- one batch: renew the lease, claim the batch (a done one is skipped), send it with a journal kept in
  its ledger entry - so an attempt that died with its outcome unknown is resolved before anything is
  sent again - route its rejects, complete it with its per-record results and counts;
- finish: add the ledger up (refused while a batch is not done: the run stays resumable), write the
  summary, move the watermark, forget the unfinished run and close this one, in one transaction.

A run that fails leaves its snapshot and ledger behind, marked unfinished: the next run of the sync
resumes it - done batches are skipped, an interrupted one is resolved first - so nothing is sent twice
and nothing is lost (SPEC E4).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from ..config import DynamicsConnection, RejectSettings, SalesforceConnection, SyncDefinition
from ..connectors.port import CrmConnector, CrmWriter, ObjectDescription, WriteJournal, WriteRequest, WriteResult
from ..domain.records import Reject
from ..domain.windows import ImportWindow
from ..errors import ConfigurationError, CrmOutcomeUnknown
from ..stores.batches import BatchAlreadyDone, BatchEntry, BatchLedger, BatchPlan, BatchStatus
from ..stores.rejects import RejectContext
from ..wiring import Container
from .runs import (
    Counts,
    PopulationSource,
    RunIdentity,
    StartRunEvent,
    WindowedSync,
    close_run,
    leased,
    normalize_started_at,
    sync_to_start,
)
from .schema_drift import describe_for_run, mapped_fields

logger = logging.getLogger(__name__)

RESEND_ROUNDS = 3
Connection = SalesforceConnection | DynamicsConnection


# ------------------------------------------------------------------------------------- models
class BatchedRun(RunIdentity):
    """The run context every step carries. `ledger_run` names the run whose snapshot and batches these
    are: this run's own, or the unfinished one it resumes. Kept whole in the unfinished-run item."""

    trigger: str
    connection: str
    object: str
    ledger_run: str
    resumed_from: str | None = None
    mode: str
    prefix: str
    manifest_key: str
    batches: int = 0
    records: int = 0
    rejected_at_start: int = 0
    api: Literal["collections", "bulk"] = "collections"
    max_concurrency: int = 4


class ObjectRun(BatchedRun):
    """A run whose population is records of one CRM object, named by their CRM ids (deletion in the CRM,
    two-way): what every batch needs of the object. `RunSettings.of_object` fills these fields."""

    crm_kind: str
    id_field: str
    route_rejects: bool = True


RunT = TypeVar("RunT", bound=BatchedRun)
TotalsT = TypeVar("TotalsT", bound=Counts)
SyncT = TypeVar("SyncT", bound=WindowedSync)
AnySyncT = TypeVar("AnySyncT")
PlanT = TypeVar("PlanT")
StateT = TypeVar("StateT", bound="BatchedState[Any, Any]")
EventT = TypeVar("EventT", bound="BatchEvent[Any]")
SummaryT = TypeVar("SummaryT", bound="BatchedSummary")


class StartEvent(StartRunEvent):
    """What starts a batched run: the execution's input, with a population instead of the window or not
    (an operation narrows it to its own population model)."""

    population: PopulationSource | None = None


class BatchedState(BaseModel, Generic[RunT, TotalsT]):
    """The state the state machine carries from start to finish: the run and the start step's counts."""

    run: RunT
    totals: TotalsT


class BatchEvent(BaseModel, Generic[RunT]):
    """One item of the Map over the manifest: the run and which batch (plus what the operation adds)."""

    model_config = ConfigDict(extra="ignore")
    run: RunT
    number: int


class BatchOutcome(BaseModel, Generic[TotalsT]):
    """What a batch step answers (the Map keeps only `number`; the ledger holds the results)."""

    number: int
    skipped: bool = False
    totals: TotalsT


class BatchedSummary(Counts):
    """The result of a batched run, as `crmsync run --wait --json` prints it: the operation's counts first
    (a summary model subclasses this and its counts model, in that order), then these."""

    sync_id: str
    run_id: str
    status: Literal["SUCCEEDED"] = "SUCCEEDED"
    operation: str
    resumed_from: str | None = None
    window: dict[str, str | None] | None = None
    watermark_moved: bool = False


@dataclass(frozen=True)
class RunSettings:
    """What a start step learnt from the sync and the CRM, for the run it opens."""

    object: str
    max_concurrency: int
    part_size: int
    route_rejects: bool
    fields: Mapping[str, Any] = field(default_factory=dict)
    """The operation's own fields of its run model."""

    @classmethod
    def of_object(
        cls, sync: ObjectSync, connection: Connection, description: ObjectDescription, **fields: Any
    ) -> RunSettings:
        """The settings of an `ObjectRun` over `description`'s records, as the sync sizes its batches;
        `fields` are the operation's other fields of its run model."""
        return cls(
            object=description.name,
            max_concurrency=sync.max_concurrency,
            part_size=sync.batch_size,
            route_rejects=sync.rejects.route,
            fields={
                "crm_kind": connection.kind,
                "id_field": description.id_field,
                "route_rejects": sync.rejects.route,
                **fields,
            },
        )


class ObjectSync(Protocol):
    """What `RunSettings.of_object` reads of a sync: how its batches are sized and sent, where rejects go."""

    @property
    def batch_size(self) -> int: ...

    @property
    def max_concurrency(self) -> int: ...

    @property
    def rejects(self) -> RejectSettings: ...


@dataclass(frozen=True)
class BatchResult:
    """What an operation made of one batch: each record's outcome (kept in the ledger), the batch's
    counts, its rejects and whether they go to the rejects queue."""

    outcomes: list[dict[str, Any]]
    counts: dict[str, int]
    rejects: list[Reject]
    route_rejects: bool


@dataclass
class LedgerJournal:
    """The writer port's journal, kept in the batch's ledger entry (one slot per write of the batch), so
    the bulk job a dead attempt started is found again instead of started twice."""

    ledger: BatchLedger
    run: BatchedRun
    number: int
    slot: str
    job_id: str | None

    def record_job(self, job_id: str | None) -> None:
        self.ledger.record_job(self.run.sync_id, self.run.ledger_run, self.number, self.slot, job_id)
        self.job_id = job_id


# ------------------------------------------------------------------------------------- the frame
class BatchedFrame(ABC, Generic[AnySyncT, PlanT, RunT, TotalsT, StateT, EventT, SummaryT]):
    """What every batched run shares past its start: its names and models, one batch (claim, send, route
    rejects, complete) and the finish (ledger added up, watermark moved, run closed). An operation whose
    population is read by steps of its own (an initial transfer's extract) subclasses this with its own
    start; the others subclass `BatchedOperation`, whose start plans the population too."""

    operation: ClassVar[str]
    """The registry's name of the operation, recorded on runs, rejects and the unfinished-run item."""
    noun: ClassVar[str]
    """How logs name its runs ("export", "deletion")."""
    direction: ClassVar[str] = "marketing-to-crm"
    machine: ClassVar[str]
    runs: ClassVar[str]
    """For the refusal of a sync of another operation: "the {machine} state machine runs {runs} only"."""
    identity_field: ClassVar[str]
    """The snapshot row's field that names a record: a population holds each record once."""

    sync_model: type[AnySyncT]
    run_model: type[RunT]
    totals_model: type[TotalsT]
    state_model: type[StateT]
    summary_model: type[SummaryT]

    # -- hooks -----------------------------------------------------------------------------------
    def state_fields(self, plan: PlanT) -> dict[str, Any]:
        """What the state (and every batch event) carries beside the run and the totals."""
        return {}

    def summary_extra(self, state: StateT) -> dict[str, Any]:
        """What the operation's summary says beside the ledger's counts (none but a transfer's route)."""
        return {}

    def delta_link(self, run: RunT) -> str | None:
        """The change-tracking link the finish stores with the watermark (none but a Dataverse transfer's)."""
        return None

    @abstractmethod
    def send(
        self,
        container: Container,
        event: EventT,
        claim: BatchEntry,
        rows: list[dict[str, Any]],
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
    ) -> BatchResult:
        """Send one batch's records through `writer` (its calls journaled by slot) and apply what came back."""

    def _resumed(
        self, container: Container, event: StartRunEvent, started_at: str, max_concurrency: int, given: bool
    ) -> RunT | None:
        """The sync's unfinished run, taken over by this execution - same snapshot, same batches, done
        ones skipped - or None. A new population is refused while one is unfinished."""
        unfinished = container.batches.unfinished(event.sync_id, self.operation)
        if unfinished is None:
            return None
        ledger_run = str(unfinished["ledger_run"])
        if ledger_run != event.run_id and given:
            raise ConfigurationError(
                f"sync {event.sync_id!r} has an unfinished {self.operation} run ({ledger_run}); run the sync "
                "without a population first: it resumes that run and sends nothing twice"
            )
        return self.run_model.model_validate(unfinished).model_copy(
            update={
                "run_id": event.run_id,
                "started_at": started_at,
                "trigger": event.trigger,
                "resumed_from": None if ledger_run == event.run_id else ledger_run,
                "max_concurrency": max_concurrency,
            }
        )

    def _context(self, run: BatchedRun) -> RejectContext:
        return RejectContext(run.sync_id, run.run_id, self.operation, self.direction)

    # -- one batch -------------------------------------------------------------------------------
    def batch(self, event: EventT, container: Container) -> BatchOutcome[TotalsT]:
        """Claim one batch, send it, route its rejects, record its results. A done batch is skipped; one an
        earlier attempt left in flight is resolved before anything is sent again."""
        run: BatchedRun = event.run
        container.runs.renew(run.sync_id, run.run_id, container.settings.lease_seconds)
        ledger = container.batches
        skipped = BatchOutcome[TotalsT](number=event.number, skipped=True, totals=self.totals_model())
        try:
            claim = ledger.claim(run.sync_id, run.ledger_run, event.number)
        except BatchAlreadyDone:
            logger.info("batch already done", extra={"run_id": run.run_id, "batch": event.number})
            return skipped
        rows = [row for key in claim.keys for row in read_part(container, key)]
        writer = container.writer(container.definitions.connection(run.connection))
        calls_before = writer.api_calls
        if claim.interrupted:
            logger.warning(
                "batch was interrupted by an earlier attempt; resolving its writes",
                extra={"run_id": run.run_id, "batch": event.number, "attempts": claim.attempts},
            )

        def journal(slot: str) -> WriteJournal:
            return LedgerJournal(ledger, run, event.number, slot, claim.jobs.get(slot))

        result = self.send(container, event, claim, rows, writer, journal)
        container.rejects.route(result.rejects, self._context(run), enabled=result.route_rejects)
        counts = {**result.counts, "api_calls": writer.api_calls - calls_before}
        try:
            ledger.complete(run.sync_id, run.ledger_run, event.number, result.outcomes, counts)
        except BatchAlreadyDone:
            return skipped
        logger.info(
            f"{self.noun} batch done",
            extra={"run_id": run.run_id, "batch": event.number, **{f"batch_{k}": v for k, v in counts.items()}},
        )
        return BatchOutcome[TotalsT](number=event.number, totals=self.totals_model().plus(counts))

    # -- finish ----------------------------------------------------------------------------------
    def finish(self, state: StateT, container: Container) -> SummaryT:
        """Add the ledger up, move the watermark (only forward, under the lease), forget the unfinished run,
        close this one - in one transaction."""
        run: BatchedRun = state.run
        counts = done_ledger_counts(container, run)
        totals = (
            self.totals_model()
            .plus({"api_calls": state.totals.api_calls, "batches": run.batches, "rejected": run.rejected_at_start})
            .plus({k: v for k, v in counts.items() if k != "batches"})
        )
        window = run.window()
        summary = self.summary_model.model_validate(
            {
                **totals.model_dump(),
                "sync_id": run.sync_id,
                "run_id": run.run_id,
                "operation": self.operation,
                "resumed_from": run.resumed_from,
                "window": run.window_summary() if window else None,
                **self.summary_extra(state),
            }
        )
        close_run(
            container,
            run.key,
            summary,
            operation=self.operation,
            window=window,
            delta_link=self.delta_link(cast(RunT, run)),
            also=(container.batches.finished_action(run.sync_id, self.operation),),
        )
        return summary


class BatchedOperation(BatchedFrame[SyncT, PlanT, RunT, TotalsT, StateT, EventT, SummaryT]):
    """One batched operation whose start step plans its population: the hooks the frame's start calls."""

    # -- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, sync: SyncT, connection: Connection, connector: CrmConnector) -> tuple[PlanT, RunSettings]:
        """Check the sync against the CRM (describe); the plan the steps follow, and the run's settings."""

    def resolved(self, plan: PlanT, container: Container) -> PlanT:
        """The plan completed from the stores, once per run (an export's enumeration conversions)."""
        return plan

    @abstractmethod
    def mode(self, population: PopulationSource | None) -> str:
        """The run's mode: how its population was given."""

    @abstractmethod
    def changed(
        self, container: Container, run: RunT, sync: SyncT, plan: PlanT, window: ImportWindow, until: datetime
    ) -> Iterable[dict[str, Any]]:
        """Without a given population: the records due since the window's start, up to `until`."""

    @abstractmethod
    def given(
        self, container: Container, run: RunT, plan: PlanT, population: PopulationSource, rejects: list[Reject]
    ) -> Iterable[dict[str, Any]]:
        """The records of a given population; those refused at once go to `rejects`."""

    @abstractmethod
    def api(self, sync: SyncT, plan: PlanT, run: RunT) -> tuple[Literal["collections", "bulk"], int]:
        """The API the run's batches use, given its size, and how many snapshot parts make a batch."""

    # -- start -----------------------------------------------------------------------------------
    def start(self, event: StartEvent, container: Container) -> StateT:
        """Take the lease, check the sync against the CRM, then resume the unfinished run or plan a new one."""
        population = event.population
        sync, connection, instance = sync_to_start(container, event, self.sync_model, self.machine, self.runs)
        definition = cast(SyncDefinition, sync)  # every batched operation's sync is a configured one
        with leased(container, definition, event.run_id):
            connector = container.connector(connection)
            calls_before = connector.api_calls
            # Schema drift on every run (SPEC S3): a retyped mapped field is refused before anything is read.
            described = describe_for_run(container.runs, definition, connector, mapped_fields(definition))
            plan, settings = self.prepare(sync, connection, described.connector(connector))
            plan = self.resolved(plan, container)
            started_at = normalize_started_at(event.started_at)
            run = self._resumed(container, event, started_at, settings.max_concurrency, population is not None)
            if run is None:
                run = self.run_model.model_validate(
                    {
                        **new_run(event, started_at, connection.name, settings.object, settings.max_concurrency),
                        "mode": self.mode(population),
                        **settings.fields,
                    }
                )
                self._plan(container, run, sync, instance, plan, settings, population)
            container.runs.record_start(
                run.key,
                operation=self.operation,
                trigger=event.trigger,
                details={
                    **run_details(run),
                    **({"newFields": described.new_fields} if described.new_fields else {}),
                },
            )
            logger.info(
                f"{self.noun} run resumed" if run.resumed_from else f"{self.noun} run started",
                extra={
                    "sync_id": run.sync_id,
                    "run_id": run.run_id,
                    "batches": run.batches,
                    "records": run.records,
                },
            )
            totals = self.totals_model().plus(
                {"api_calls": connector.api_calls - calls_before, "batches": run.batches}
            )
            return self.state_model.model_validate({"run": run, "totals": totals, **self.state_fields(plan)})

    def _plan(
        self,
        container: Container,
        run: RunT,
        sync: SyncT,
        instance: str,
        plan: PlanT,
        settings: RunSettings,
        population: PopulationSource | None,
    ) -> None:
        """Resolve the population, snapshot it to S3 in parts, write the manifest, plan the ledger."""
        rejects: list[Reject] = []
        rows: Iterable[dict[str, Any]]
        if population is None:
            now = datetime.now(UTC)
            window, _ = run.open_window(container, sync, instance, now)
            until = now - timedelta(seconds=sync.watermark.lag_seconds)
            rows = self.changed(container, run, sync, plan, window, until)
        else:
            rows = self.given(container, run, plan, population, rejects)
        parts = write_snapshot(
            container,
            run.prefix,
            rows,
            part_size=settings.part_size,
            identity=lambda row: str(row[self.identity_field]),
        )
        run.records = sum(size for _, size in parts)
        run.api, parts_per_batch = self.api(sync, plan, run)
        batches = plan_batches(
            container,
            sync_id=run.sync_id,
            ledger_run=run.ledger_run,
            manifest_key=run.manifest_key,
            parts=parts,
            parts_per_batch=parts_per_batch,
            api=run.api,
        )
        run.batches = len(batches)
        if rejects:
            container.rejects.route(rejects, self._context(run), enabled=settings.route_rejects)
            run.rejected_at_start = len(rejects)
        if batches:
            container.batches.mark_unfinished(run.sync_id, self.operation, run.model_dump(mode="json"))


# ------------------------------------------------------------------------------------- pieces
def run_details(run: BatchedRun) -> dict[str, Any]:
    """What the run ledger shows of a batched run when it starts."""
    return {
        "window": run.window_summary(),
        "object": run.object,
        "connection": run.connection,
        "mode": run.mode,
        "ledgerRun": run.ledger_run,
        "batches": run.batches,
        "records": run.records,
    }


def new_run(
    event: StartRunEvent, started_at: str, connection: str, object_name: str, max_concurrency: int
) -> dict[str, Any]:
    """The fields every new batched run starts with: its identity, its own ledger, its S3 prefix."""
    return {
        "sync_id": event.sync_id,
        "run_id": event.run_id,
        "started_at": started_at,
        "trigger": event.trigger,
        "connection": connection,
        "object": object_name,
        "ledger_run": event.run_id,
        "prefix": f"runs/{event.sync_id}/{event.run_id}",
        "manifest_key": f"runs/{event.sync_id}/{event.run_id}/manifest.json",
        "max_concurrency": max_concurrency,
    }


def send_again_unanswered(writer: CrmWriter, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]:
    """Unknown-outcome resolution for an idempotent write (a deletion): a call whose outcome is unknown
    is sent again for the records it did not answer, which come back done or already done."""
    done: list[WriteResult] = []
    for _ in range(RESEND_ROUNDS):
        try:
            return done + writer.write(request, journal)
        except CrmOutcomeUnknown as unknown:
            done += list(unknown.completed)
            answered = {r.ref for r in unknown.completed}
            request = WriteRequest(
                object=request.object,
                kind=request.kind,
                records=tuple(r for r in request.records if r.ref not in answered),
                key_field=request.key_field,
                bulk=request.bulk,
            )
            logger.warning("%s call outcome unknown; sending the unanswered records again", request.kind)
    raise CrmOutcomeUnknown(f"{request.kind} of {len(request.records)} records kept ending without an answer")


def write_snapshot(
    container: Container,
    prefix: str,
    rows: Iterable[dict[str, Any]],
    *,
    part_size: int,
    identity: Callable[[dict[str, Any]], str],
) -> list[tuple[str, int]]:
    """The population in parts of `part_size` rows under `prefix/snapshot/`, each row once (by
    `identity`); answers (key, size) of each part."""
    s3 = container.aws.client("s3")
    parts: list[tuple[str, int]] = []
    part: list[dict[str, Any]] = []
    seen: set[str] = set()

    def flush() -> None:
        if part:
            key = f"{prefix}/snapshot/{len(parts) + 1:06d}.json"
            s3.put_object(
                Bucket=container.settings.data_bucket,
                Key=key,
                Body=json.dumps(part, ensure_ascii=False, default=str).encode(),
                ContentType="application/json",
            )
            parts.append((key, len(part)))
            part.clear()

    for row in rows:
        name = identity(row)
        if name in seen:
            continue
        seen.add(name)
        part.append(row)
        if len(part) == part_size:
            flush()
    flush()
    return parts


def plan_batches(
    container: Container,
    *,
    sync_id: str,
    ledger_run: str,
    manifest_key: str,
    parts: list[tuple[str, int]],
    parts_per_batch: int,
    api: str,
) -> list[BatchPlan]:
    """Group the parts into batches, write the manifest the Map reads, record every batch as pending."""
    batches = [
        BatchPlan(
            number=n,
            keys=tuple(key for key, _ in parts[start : start + parts_per_batch]),
            size=sum(size for _, size in parts[start : start + parts_per_batch]),
            api=api,
        )
        for n, start in enumerate(range(0, len(parts), parts_per_batch), start=1)
    ]
    container.aws.client("s3").put_object(
        Bucket=container.settings.data_bucket,
        Key=manifest_key,
        Body=json.dumps([{"number": b.number, "size": b.size} for b in batches]).encode(),
        ContentType="application/json",
    )
    if batches:
        container.batches.plan(sync_id, ledger_run, batches)
    return batches


def read_part(container: Container, key: str) -> list[dict[str, Any]]:
    """The rows of a part: a JSON array, or JSON Lines (`.jsonl`, an initial transfer's extract)."""
    body = container.aws.client("s3").get_object(Bucket=container.settings.data_bucket, Key=key)["Body"].read()
    if key.endswith(".jsonl"):
        return [json.loads(line) for line in body.splitlines() if line.strip()]
    rows: list[dict[str, Any]] = json.loads(body)
    return rows


def done_ledger_counts(container: Container, run: BatchedRun) -> dict[str, int]:
    """Every batch's counts added up; refused while a batch is not done (the run stays resumable)."""
    counts, undone = ledger_counts(container, run.sync_id, run.ledger_run)
    if undone:
        raise ConfigurationError(
            f"batches {undone[:10]} of run {run.ledger_run} are not done; the run stays resumable"
        )
    return counts


def ledger_counts(container: Container, sync_id: str, ledger_run: str) -> tuple[dict[str, int], list[int]]:
    """Every batch's counts added up, and the numbers of the batches not done."""
    counts: dict[str, int] = {}
    undone: list[int] = []
    for entry in container.batches.entries(sync_id, ledger_run):
        if entry.status is not BatchStatus.DONE:
            undone.append(entry.number)
        for name, value in entry.counts.items():
            counts[name] = counts.get(name, 0) + value
    return counts, undone


__all__ = [
    "BatchEvent",
    "BatchOutcome",
    "BatchResult",
    "BatchedFrame",
    "BatchedOperation",
    "BatchedRun",
    "BatchedState",
    "BatchedSummary",
    "LedgerJournal",
    "ObjectRun",
    "ObjectSync",
    "RunSettings",
    "StartEvent",
    "done_ledger_counts",
    "ledger_counts",
    "new_run",
    "plan_batches",
    "read_part",
    "run_details",
    "send_again_unanswered",
    "write_snapshot",
]
