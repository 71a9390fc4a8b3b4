"""What every run shares, whatever its operation: the execution event it starts from, and its error
path - record the failure, release the lease, leave the watermark where it was (SPEC R2).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import DynamicsConnection, ImportSync, InitialTransferSync, SalesforceConnection, SyncDefinition
from ..domain.windows import ImportWindow, compute_window, format_watermark, parse_watermark
from ..errors import ConfigurationError, LeaseLost, RunAlreadyInProgress
from ..stores.dynamo import TransactionConflict, transact_write
from ..stores.runs import RunKey
from ..stores.watermarks import Watermark
from ..wiring import Container

logger = logging.getLogger(__name__)

MAX_INLINE_POPULATION = 5_000
S3_URI = re.compile(r"^s3://([a-z0-9.-]{3,63})/(.+)$")


class ExecutionEvent(BaseModel):
    """A step event built by the state machine: the execution's input under `input`, plus its identity."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _flatten_input(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("input"), dict):
            return {**raw["input"], **{k: v for k, v in raw.items() if k != "input"}}
        return raw


def normalize_started_at(started_at: str | None) -> str:
    """The execution's start time in UTC to the second (the run ledger's sort key), or now."""
    if started_at:
        try:
            return (
                datetime.fromisoformat(started_at.replace("Z", "+00:00"))
                .astimezone(UTC)
                .isoformat(timespec="seconds")
            )
        except ValueError:
            pass
    return datetime.now(UTC).isoformat(timespec="seconds")


class PopulationSource(BaseModel):
    """A population given when a run starts, instead of a window: ids inline, or an S3 object."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None = Field(default=None, max_length=MAX_INLINE_POPULATION)
    s3_uri: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PopulationSource:
        if (self.ids is None) == (self.s3_uri is None):
            raise ValueError("a population gives either 'ids' or 's3_uri'")
        if self.s3_uri is not None and not S3_URI.match(self.s3_uri):
            raise ValueError(f"{self.s3_uri!r} is not an s3://bucket/key URI")
        return self


class StartRunEvent(ExecutionEvent):
    """What the state machine hands a start step: the execution's input and identity."""

    sync_id: str
    run_id: str
    started_at: str | None = None
    trigger: Literal["schedule", "manual", "replay"] = "manual"


SyncT = TypeVar("SyncT")


def sync_to_start(
    container: Container, event: StartRunEvent, kind: type[SyncT], machine: str, runs: str
) -> tuple[SyncT, SalesforceConnection | DynamicsConnection, str]:
    """The sync a start step runs, its connection and the instance name: refused when it is of another
    operation than this state machine's, or disabled and started by its schedule."""
    stored = container.definitions.sync(event.sync_id)
    sync = stored.sync
    if not isinstance(sync, kind):
        raise ConfigurationError(
            f"sync {sync.id!r} is an {sync.operation}; the {machine} state machine runs {runs} only"
        )
    if not sync.enabled and event.trigger == "schedule":
        raise ConfigurationError(f"sync {sync.id!r} is disabled; scheduled runs are refused")
    return sync, stored.connection, stored.instance


def lease_partners(container: Container, sync: SyncDefinition) -> dict[str, str]:
    """The syncs whose runs must not overlap `sync`'s, by id, with what each is to it: an import sync and
    the initial transfers that load it (SPEC T1). While a transfer extracts and loads, an import of the
    same object would read the records the parts are loading and move the watermark the transfer sets;
    while an import runs, a transfer would start from a window the import is still closing."""
    if isinstance(sync, InitialTransferSync):
        return {sync.import_sync: "its import sync"}
    if isinstance(sync, ImportSync):
        return {transfer: "its initial transfer" for transfer in container.definitions.transfers_of(sync.id)}
    return {}


@contextmanager
def leased(container: Container, sync: SyncDefinition, run_id: str) -> Iterator[None]:
    """The sync's lease, taken by a start step and released again if the step fails: two runs of one
    sync never overlap, and a refused start leaves nothing held. The leases of its `lease_partners` are
    checked in the same write: an import and its initial transfer never overlap either (the transfer's
    own import route starts the import under the transfer's run id, so it passes)."""
    sync_id = sync.id
    container.runs.acquire(
        sync_id, run_id, container.settings.lease_seconds, apart_from=lease_partners(container, sync)
    )
    try:
        yield
    except Exception:
        container.runs.release(sync_id, run_id)
        raise


class Counts(BaseModel):
    """A run's counts (every field an int). Steps add up their part with `plus`; the state machine carries
    the running sum, so a retried step recomputes its part from its input instead of counting twice."""

    def plus(self, more: BaseModel | Mapping[str, int]) -> Self:
        """These counts plus `more` (another run's counts, or a batch's counts from its ledger entry);
        names this model has not are left out."""
        other = more.model_dump() if isinstance(more, BaseModel) else more
        return self.model_copy(
            update={name: getattr(self, name) + int(other.get(name, 0)) for name in type(self).model_fields}
        )


class WindowedSync(Protocol):
    """What a windowed sync says about its watermark (imports, exports, deletions in the CRM)."""

    @property
    def watermark(self) -> Any: ...

    def watermark_option(self, instance: str) -> str: ...


class RunIdentity(BaseModel):
    """What every operation's run context has: who it is and, for a windowed run, its window. The error
    path reads any operation's context through this."""

    model_config = ConfigDict(extra="ignore")

    sync_id: str
    run_id: str
    started_at: str
    option: str | None = None
    window_start: str | None = None
    window_end: str | None = None
    previous_watermark: str | None = None

    @property
    def key(self) -> RunKey:
        return RunKey(self.sync_id, self.run_id, self.started_at)

    def window(self) -> ImportWindow | None:
        """The window a windowed run reads (a run given a population has none)."""
        if self.option is None or self.window_end is None:
            return None
        return ImportWindow(
            option=self.option,
            start=parse_watermark(self.window_start) if self.window_start else None,
            end=parse_watermark(self.window_end),
            previous=parse_watermark(self.previous_watermark) if self.previous_watermark else None,
        )

    def open_window(
        self, container: Container, sync: WindowedSync, instance: str, now: datetime
    ) -> tuple[ImportWindow, Watermark | None]:
        """The window this run reads, from the sync's watermark to `now` (less the lag, with the overlap),
        kept in the run so every step and the finish read the same one; and the watermark as it was."""
        option = sync.watermark_option(instance)
        window, previous = next_window(
            container,
            option,
            now,
            overlap_seconds=sync.watermark.overlap_seconds,
            lag_seconds=sync.watermark.lag_seconds,
        )
        self.option = option
        self.window_start = format_watermark(window.start) if window.start else None
        self.window_end = format_watermark(window.end)
        self.previous_watermark = format_watermark(window.previous) if window.previous else None
        return window, previous

    def window_summary(self) -> dict[str, str | None]:
        """The window as a summary and the run ledger show it."""
        return {"option": self.option, "start": self.window_start, "end": self.window_end}


class RunFailedEvent(ExecutionEvent):
    """The state at the failed step, with the error Step Functions caught (`Error`, `Cause`)."""

    sync_id: str | None = None
    run_id: str | None = None
    started_at: str | None = None
    operation: str = "import"
    run: RunIdentity | None = None
    totals: dict[str, Any] | None = None
    error: dict[str, Any] = Field(default_factory=dict)


class FailedRunSummary(BaseModel):
    """The result of a run that took its error path, with the totals it had reached."""

    model_config = ConfigDict(extra="allow")

    sync_id: str
    run_id: str
    status: Literal["FAILED", "REFUSED"]
    operation: str
    window: dict[str, str | None] | None = None
    error: dict[str, str]


class RunSummaryModel(Protocol):
    """A successful run's summary, whatever its operation."""

    watermark_moved: bool

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def close_run(
    container: Container,
    key: RunKey,
    summary: RunSummaryModel,
    *,
    operation: str,
    window: ImportWindow | None,
    delta_link: str | None = None,
    also: tuple[dict[str, Any], ...] = (),
) -> None:
    """End a successful run in one transaction: release the lease, move the watermark to the window's
    end (only forward, only under this run's lease), record `summary` - its `watermark_moved` set to
    what happened - plus the caller's `also` actions. A change-tracking run stores its new `delta_link`
    even when the clock did not move past the last end."""
    ledger = container.runs
    client = container.aws.client("dynamodb")
    moves = window is not None and (
        window.previous is None
        or window.end > window.previous
        or (delta_link is not None and window.end == window.previous)
    )

    def recorded(moved: bool) -> dict[str, Any]:
        summary.watermark_moved = moved
        return summary.model_dump(mode="json")

    actions = [ledger.release_action(key.sync_id, key.run_id)]
    if moves:
        assert window is not None
        actions.append(
            container.watermarks.advance_action(window.option, window.end, key.run_id, delta_link=delta_link)
        )
    try:
        transact_write(client, [*actions, ledger.finish_action(key, "SUCCEEDED", recorded(moves)), *also])
    except TransactionConflict as conflict:
        if 0 in conflict.failed:
            raise LeaseLost(
                f"run {key.run_id} lost its lease before finishing; the watermark was not moved"
            ) from None
        # The watermark is already past this window's end (moved by hand): keep it, close the run.
        transact_write(client, [actions[0], ledger.finish_action(key, "SUCCEEDED", recorded(False)), *also])
    logger.info(
        "%s run finished",
        operation,
        extra={
            "sync_id": key.sync_id,
            "run_id": key.run_id,
            "watermark_moved": summary.watermark_moved,
        },
    )


def next_window(
    container: Container, option: str, now: datetime, *, overlap_seconds: int, lag_seconds: int
) -> tuple[ImportWindow, Watermark | None]:
    """The window after the one the stored watermark `option` ended (every record before `now - lag` on
    a first run), and that watermark as it was."""
    previous = container.watermarks.get(option)
    window = compute_window(
        option,
        previous.value if previous else None,
        now,
        overlap_seconds=overlap_seconds,
        lag_seconds=lag_seconds,
    )
    return window, previous


def error_fields(error: dict[str, Any]) -> dict[str, str]:
    """The caught error's type and message (a Lambda's `Unhandled` error names its class in the cause)."""
    name = str(error.get("Error", "States.Runtime"))
    cause = error.get("Cause", "")
    message = cause
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
            if isinstance(parsed, dict):
                message = parsed.get("errorMessage", cause)
                name = parsed.get("errorType", name) if name == "Unhandled" else name
        except ValueError:
            pass
    return {"type": name, "message": str(message)[:2000]}


def record_failure(event: RunFailedEvent, container: Container) -> FailedRunSummary:
    """Record the failed run and release its lease; the watermark stays where it was (SPEC R2)."""
    error = error_fields(event.error)
    run = event.run
    sync_id = run.sync_id if run else event.sync_id
    run_id = run.run_id if run else event.run_id
    if not sync_id or not run_id:
        raise ConfigurationError("a failed run without sync_id and run_id cannot be recorded")
    refused = error["type"] == RunAlreadyInProgress.__name__
    status: Literal["FAILED", "REFUSED"] = "REFUSED" if refused else "FAILED"
    summary = FailedRunSummary(
        sync_id=sync_id,
        run_id=run_id,
        status=status,
        operation=event.operation,
        error=error,
        window=run.window_summary() if run and run.option else None,
        **(event.totals or {}),
    )
    ledger = container.runs
    key = run.key if run else RunKey(sync_id, run_id, normalize_started_at(event.started_at))
    if run is None:
        ledger.record_start(key, operation=event.operation, trigger="unknown", details={})
    ledger.record_end(key, status, summary.model_dump(mode="json"))
    if not refused:
        ledger.release(sync_id, run_id)
    log = logger.info if refused else logger.error
    log("run %s", status.lower(), extra={"sync_id": sync_id, "run_id": run_id, "error_type": error["type"]})
    return summary


__all__ = [
    "Counts",
    "ExecutionEvent",
    "FailedRunSummary",
    "PopulationSource",
    "RunFailedEvent",
    "RunIdentity",
    "StartRunEvent",
    "close_run",
    "lease_partners",
    "leased",
    "next_window",
    "normalize_started_at",
    "record_failure",
    "sync_to_start",
]
