"""Every operation crmsync runs, in one table: its sync model, its state machine, its steps (function,
ASL state, event model, use case) and the counts its summary shows.

Whatever needs the list of operations reads it here: `Operator.start` and the schedules (which state
machine runs a sync), the rejects replay (which id a replay run is given), the CLI's summaries, and the
tests that check the template, the state machines, the handlers and the sample events. The configuration,
which this table reads, names its operations by its sync models (`config.SYNC_OPERATIONS`, used by error
locations); a test holds the two equal. Adding an operation is its sync model
(`config.py`), its hooks module under `services/` (a `batched_runs.BatchedOperation` for a batched run),
its ASL file, its functions and template block, and one row here; the checks then cover it unasked.

Steps name their event model and use case by import path, so this table loads without the services (the
configuration reads it, and the services read the configuration).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from .config import (
    CrmDeleteSync,
    DeletionImportSync,
    EnumerationSync,
    EventsSync,
    ExportSync,
    ImportSync,
    InitialTransferSync,
    TwoWaySync,
)


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Step:
    """One Lambda step of a state machine."""

    function: str
    """Its folder under `functions/` and `events/`; the template's resource is `<CamelCase>Function`."""
    state: str
    """The ASL Task state that invokes it."""
    event: str
    """`module:Model` its handler parses the event into."""
    use_case: str
    """`module:function` its handler runs."""
    talks_to_crm: bool = False
    """Reads or writes the CRM at length (a page, a batch): its Retry lists every retryable error."""

    @property
    def logical_id(self) -> str:
        return "".join(part.title() for part in self.function.split("_")) + "Function"

    def event_model(self) -> type[BaseModel]:
        model: type[BaseModel] = _load(self.event)
        return model

    def run(self) -> Callable[..., BaseModel]:
        use_case: Callable[..., BaseModel] = _load(self.use_case)
        return use_case


@dataclass(frozen=True)
class Operation:
    name: str
    """The sync's `operation` in the configuration, and on runs, rejects and the batch ledger."""
    sync_model: type[BaseModel]
    machine: str
    """The state machine is `<stack>-<machine>`, defined by `statemachines/<machine>.asl.json`."""
    logical_id: str
    """The state machine's resource in `template.yaml` (its output is `<logical_id>Arn`)."""
    steps: tuple[Step, ...]
    summary_fields: tuple[str, ...]
    """The counts of a run's summary, in the order the CLI shows them."""
    window_end_included: bool = False
    takes_period: bool = False
    """A run may be given a period (`crmsync run --from/--to`)."""
    takes_population: bool = True
    """A run may be given ids or a file of them (`crmsync run --ids/--population`)."""
    replay_id: str | None = None
    """The id of its rejects that `crmsync rejects replay` gives a run of it as its population (none: its
    rejects are not replayed)."""
    found_by: Mapping[str, str] = field(default_factory=dict)
    """What each `mode` of its summary means, shown as "found by"."""
    window_clock: Literal["crm", "marketing"] = "crm"
    """Whose clock a run's window ends on: the CRM's for a sync that reads the CRM, this machine's for one
    that reads the marketing side's changes. A watermark set by hand past it is refused."""

    @property
    def asl(self) -> str:
        return f"statemachines/{self.machine}.asl.json"


def _steps(module: str, *steps: tuple[str, str, str, str, bool]) -> tuple[Step, ...]:
    return tuple(
        Step(function, state, f"crmsync.services.{module}:{event}", f"crmsync.services.{module}:{use_case}", crm)
        for function, state, event, use_case, crm in steps
    )


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            name="import",
            sync_model=ImportSync,
            machine="import",
            logical_id="ImportStateMachine",
            steps=_steps(
                "imports",
                ("import_start", "StartRun", "StartImportEvent", "start_import", False),
                ("import_page", "ImportPage", "ImportState", "import_page", True),
                ("import_finish", "FinishRun", "ImportState", "finish_import", False),
            ),
            summary_fields=(
                "read",
                "created",
                "updated",
                "unchanged",
                "rejected",
                "deleted",
                "api_calls",
                "pages",
            ),
            replay_id="crmId",
        ),
        Operation(
            name="export",
            sync_model=ExportSync,
            machine="export",
            logical_id="ExportStateMachine",
            steps=_steps(
                "exports",
                ("export_start", "StartRun", "StartExportEvent", "start_export", False),
                ("export_batch", "ExportBatch", "ExportBatchEvent", "export_batch", True),
                ("export_finish", "FinishRun", "ExportState", "finish_export", False),
            ),
            summary_fields=(
                "selected",
                "created",
                "updated",
                "unchanged",
                "rejected",
                "owners_unmatched",
                "api_calls",
                "batches",
            ),
            replay_id="profileId",
            window_clock="marketing",
        ),
        Operation(
            name="import_deleted",
            sync_model=DeletionImportSync,
            machine="import-deleted",
            logical_id="DeletionImportStateMachine",
            steps=_steps(
                "deletion_imports",
                ("deletion_import_start", "StartRun", "StartDeletionImportEvent", "start_deletion_import", False),
                ("deletion_import_page", "DeletionPage", "DeletionImportState", "deletion_import_page", True),
                ("deletion_import_finish", "FinishRun", "DeletionImportState", "finish_deletion_import", False),
            ),
            summary_fields=(
                "reported",
                "compared",
                "checked",
                "deleted",
                "already",
                "unknown",
                "splits",
                "api_calls",
                "pages",
            ),
            window_end_included=True,
            takes_period=True,
            takes_population=False,
            found_by={
                "period": "the CRM's deleted-records list for the period (both ends included)",
                "changes": "change tracking: the deletions since the delta link",
                "compare": "id-set comparison: every CRM id against the local records",
            },
        ),
        Operation(
            name="delete",
            sync_model=CrmDeleteSync,
            machine="delete",
            logical_id="DeleteStateMachine",
            steps=_steps(
                "crm_deletes",
                ("delete_start", "StartRun", "StartDeleteEvent", "start_delete", False),
                ("delete_batch", "DeleteBatch", "DeleteBatchEvent", "delete_batch", True),
                ("delete_finish", "FinishRun", "DeleteState", "finish_delete", False),
            ),
            summary_fields=("selected", "rejected", "deleted", "already_gone", "api_calls", "batches"),
            replay_id="crmId",
        ),
        Operation(
            name="two_way",
            sync_model=TwoWaySync,
            machine="two-way",
            logical_id="TwoWayStateMachine",
            steps=_steps(
                "two_way",
                ("two_way_start", "StartRun", "StartTwoWayEvent", "start_two_way", False),
                ("two_way_batch", "WriteBatch", "TwoWayBatchEvent", "two_way_batch", True),
                ("two_way_finish", "FinishRun", "TwoWayState", "finish_two_way", False),
            ),
            # The summary nests its per-side counts (crm, marketing); these are shown flat when present.
            summary_fields=(
                "crm_records_written",
                "crm_fields_written",
                "profiles_written",
                "marketing_fields_written",
                "consent_rows",
                "deferred",
                "rejected",
                "api_calls",
                "batches",
            ),
        ),
        Operation(
            name="enumerations",
            sync_model=EnumerationSync,
            machine="enumerations",
            logical_id="EnumerationsStateMachine",
            steps=_steps(
                "enumerations",
                ("enumerations_sync", "SyncEnumerations", "StartEnumerationsEvent", "sync_enumerations", True),
            ),
            summary_fields=("added", "updated", "unchanged", "removed", "api_calls"),
        ),
        Operation(
            name="initial_transfer",
            sync_model=InitialTransferSync,
            machine="initial-transfer",
            logical_id="InitialTransferStateMachine",
            steps=_steps(
                "initial_transfers",
                ("initial_transfer_start", "StartRun", "StartTransferEvent", "start_transfer", False),
                ("initial_transfer_extract", "ExtractParts", "TransferState", "extract_transfer", True),
                ("initial_transfer_part", "LoadPart", "TransferPartEvent", "load_transfer_part", False),
                ("initial_transfer_check", "CheckCompleteness", "TransferState", "check_transfer", True),
                ("initial_transfer_finish", "FinishRun", "TransferState", "finish_transfer", False),
            ),
            summary_fields=(
                "counted",
                "read",
                "created",
                "updated",
                "unchanged",
                "rejected",
                "parts",
                "api_calls",
            ),
            takes_population=False,
            found_by={
                "files": "the object's extract in S3 parts (Bulk API 2.0 query / change tracking), loaded side by side",
                "import": "the import sync's ordinary first import (the object was below the threshold)",
            },
        ),
    )
}


@dataclass(frozen=True)
class QueueOperation:
    """An operation a queue triggers instead of a state machine (e-mail events, DESIGN §1): its sync
    model, and the queue (its logical id in `template.yaml`) whose event-source mapping invokes its one
    function with batches of messages. It has no runs, schedules or summaries."""

    name: str
    sync_model: type[BaseModel]
    queue: str
    step: Step


QUEUE_OPERATIONS: dict[str, QueueOperation] = {
    op.name: op
    for op in (
        QueueOperation(
            name="events",
            sync_model=EventsSync,
            queue="EventsQueue",
            step=Step(
                "events_push",
                "",
                "aws_lambda_powertools.utilities.parser.models:SqsModel",
                "crmsync.services.events:push_events",
                True,
            ),
        ),
    )
}

SCHEDULED_FUNCTIONS: tuple[Step, ...] = (
    Step(
        "rejects_age",
        "",
        "crmsync.services.rejects:ScheduledEvent",
        "crmsync.services.rejects:measure_reject_ages",
    ),
)
"""Functions a schedule of the template invokes for the whole stack (not a sync's run): each measures one
value per sync (`runtime.scheduled_handler`)."""

RUN_FAILED = Step(
    "run_failed", "RecordFailure", "crmsync.services.runs:RunFailedEvent", "crmsync.services.runs:record_failure"
)
"""The error path every state machine shares."""


def operation(name: str) -> Operation:
    """The operation called `name`; a clear error for one that does not exist."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KeyError(f"no operation {name!r} (known: {', '.join(OPERATIONS)})") from None


def all_steps() -> tuple[Step, ...]:
    """Every Lambda step of the stack's state machines, once."""
    return (*(step for op in OPERATIONS.values() for step in op.steps), RUN_FAILED)


def all_functions() -> tuple[Step, ...]:
    """Every Lambda function of the stack, once: the state machines' steps, the queues' functions, then the
    scheduled ones."""
    return (*all_steps(), *(op.step for op in QUEUE_OPERATIONS.values()), *SCHEDULED_FUNCTIONS)


def summary_fields(name: str | None) -> tuple[str, ...]:
    """The counts a summary of operation `name` shows; of every operation when it is not known."""
    if name in OPERATIONS:
        return OPERATIONS[name].summary_fields
    return tuple(dict.fromkeys(name for op in OPERATIONS.values() for name in op.summary_fields))


__all__ = [
    "OPERATIONS",
    "QUEUE_OPERATIONS",
    "RUN_FAILED",
    "Operation",
    "QueueOperation",
    "Step",
    "all_functions",
    "all_steps",
    "operation",
    "summary_fields",
]
