"""The Lambda side of every step: Powertools logger, tracer and metrics, and the thin-handler factories.

A handler module is two lines: parse the event into the step's pydantic model, call the service with
the container, return the result as JSON. Errors are raised unchanged, so their class name becomes the
`errorType` that the state machines' Retry and Catch blocks match.

`queue_handler` is the same for a function an SQS event-source mapping triggers (e-mail events): the
service settles the whole batch at once (it writes to the CRM in batches, not one record at a time), and
Powertools batch processing turns the messages it wants again into `batchItemFailures`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from .domain.conversions import parse_stored_time
from .errors import ConfigurationError
from .services.runs import RunIdentity
from .stores.runs import stop_heartbeats
from .wiring import Container, container

logger = Logger(service="crmsync")
tracer = Tracer(service="crmsync")
metrics = Metrics(namespace="crmsync", service="crmsync")
# The same metrics without the sync dimension: the stack-wide series that alarms can watch (an alarm cannot
# SEARCH over syncs) and that anything built before the sync dimension existed reads. One more custom metric
# per name, whatever the number of syncs.
stack_metrics = EphemeralMetrics(namespace="crmsync", service="crmsync")
copy_config_to_registered_loggers(source_logger=logger, include={"crmsync"})

EventT = TypeVar("EventT", bound=BaseModel)

COUNTED = {
    "read": "RecordsRead",
    "created": "RecordsCreated",
    "updated": "RecordsUpdated",
    "unchanged": "RecordsUnchanged",
    "rejected": "RecordsRejected",
    "deleted": "RecordsDeleted",
    "api_calls": "CrmApiCalls",
}


def _identity(request: BaseModel) -> tuple[str | None, str | None]:
    """The step's sync id and run id, from the event or the run context it carries."""
    run = getattr(request, "run", None)
    sync_id = getattr(request, "sync_id", None) or getattr(run, "sync_id", None)
    run_id = getattr(request, "run_id", None) or getattr(run, "run_id", None)
    return sync_id, run_id


def _step_counts(request: BaseModel, result: BaseModel) -> dict[str, int]:
    """What this step added to the run's totals: states carry running totals, so the difference; a
    batch of a Map gets no totals and returns its own."""
    after, before = getattr(result, "totals", None), getattr(request, "totals", None)
    if not isinstance(after, BaseModel):
        return {}
    counts: dict[str, int] = {}
    for field, value in after:
        if isinstance(value, int) and not isinstance(value, bool):
            added = value - (getattr(before, field, 0) if isinstance(before, BaseModel) else 0)
            if added:
                counts[field] = added
    return counts


def _seconds_since(started_at: Any) -> float | None:
    started = parse_stored_time(started_at)
    return None if started is None else max(0.0, (datetime.now(UTC) - started).total_seconds())


def _metric(name: str, unit: MetricUnit, value: float) -> None:
    """One value, per sync (the step's dimension) and stack-wide."""
    metrics.add_metric(name=name, unit=unit, value=value)
    stack_metrics.add_metric(name=name, unit=unit, value=value)


def _record_metrics(request: BaseModel, result: BaseModel, counts: dict[str, int]) -> None:
    """Counts, and at a run's end its status and duration; the CRM's API allowance when the step read it.
    Every metric has the `sync` dimension: one custom metric per sync and name (never one per run)."""
    for field, metric in COUNTED.items():
        if counts.get(field):
            _metric(metric, MetricUnit.Count, counts[field])
    status = getattr(result, "status", None)
    if isinstance(status, str):
        _metric(f"Runs{status.title()}", MetricUnit.Count, 1)
        run = getattr(request, "run", None)
        seconds = _seconds_since(getattr(run, "started_at", None) or getattr(request, "started_at", None))
        if seconds is not None and status != "REFUSED":
            _metric("RunDuration", MetricUnit.Seconds, round(seconds, 3))
    usage = getattr(result, "crm_api_usage", None)
    if isinstance(usage, dict) and usage.get("max"):
        _metric("CrmApiRemaining", MetricUnit.Count, usage.get("remaining", 0))
        used = 100.0 * (usage["max"] - usage.get("remaining", 0)) / usage["max"]
        _metric("CrmApiUsedPercent", MetricUnit.Percent, round(used, 2))
    new_fields = getattr(getattr(result, "run", None), "new_fields", None)
    if new_fields and getattr(request, "run", None) is None:  # the start step: once per run (schema drift)
        _metric("SchemaNewFields", MetricUnit.Count, len(new_fields))


def _record_progress(request: BaseModel, container: Container, counts: dict[str, int]) -> None:
    """A page or batch step adds what it did to the run's item, which `crmsync run --wait` shows as the
    run goes. Start steps are left out (their own run item was just written); a failure to record is
    logged, never the step's failure."""
    run = getattr(request, "run", None)
    if not isinstance(run, RunIdentity) or not counts:
        return
    batches = getattr(run, "batches", None)
    try:
        container.runs.add_progress(
            run.key, counts, total=batches if isinstance(batches, int) and batches > 0 else None
        )
    except ClientError as exc:
        logger.warning(
            "run progress not recorded", extra={"error_code": exc.response.get("Error", {}).get("Code")}
        )


def step_handler(
    event_model: type[EventT], step: Callable[[EventT, Container], BaseModel], *, name: str
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A Lambda handler running `step` on the parsed event with the environment's container."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    @stack_metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            request = event_model.model_validate(event)
        except ValidationError as exc:
            raise ConfigurationError(
                [
                    f"{name} event: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                ]
            ) from None
        sync_id, run_id = _identity(request)
        logger.append_keys(**{k: v for k, v in (("sync_id", sync_id), ("run_id", run_id)) if v})
        if sync_id:
            metrics.add_dimension(name="sync", value=sync_id)
        _metric("StepInvocations", MetricUnit.Count, 1)
        services = container()
        try:
            result = step(request, services)
        finally:
            stop_heartbeats()  # the leases this step kept alive are the next step's to renew
        counts = _step_counts(request, result)
        _record_metrics(request, result, counts)
        _record_progress(request, services, counts)
        return result.model_dump(mode="json")

    handler.__name__ = f"{name}_handler"
    return cast(Callable[[dict[str, Any], LambdaContext], dict[str, Any]], handler)


class MessageDeliveredAgain(Exception):
    """Raised for a message the service wants delivered again, so Powertools lists it in batchItemFailures."""


class QueueBatchResult(Protocol):
    """What a queue service answers for one batch: the message ids to deliver again, and counts."""

    retry: set[str]

    def metrics(self) -> dict[str, int]: ...


def queue_handler(
    service: Callable[[list[dict[str, Any]], Container], QueueBatchResult], *, name: str
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A Lambda handler for an SQS event-source mapping with `ReportBatchItemFailures`."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        records = list(event.get("Records") or [])
        result = service(records, container())
        for metric, value in result.metrics().items():
            if value:
                metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)

        def settle(record: SQSRecord) -> None:
            if record.message_id in result.retry:
                raise MessageDeliveredAgain(record.message_id)

        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        response = process_partial_response(
            event=event, record_handler=settle, processor=processor, context=context
        )
        return dict(response)

    handler.__name__ = f"{name}_handler"
    return cast(Callable[[dict[str, Any], LambdaContext], dict[str, Any]], handler)


class SyncGauge(Protocol):
    """What a scheduled service answers: one value per sync of one metric."""

    name: str
    unit: str
    values: dict[str, float]

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def scheduled_handler(
    event_model: type[EventT], service: Callable[[EventT, Container], SyncGauge], *, name: str
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A Lambda handler for a schedule of the whole stack: runs `service` and emits its value for each sync
    under the `sync` dimension (one custom metric per sync, whatever the number of runs), and stack-wide
    their maximum, which an alarm can watch."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @stack_metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        result = service(event_model.model_validate(event), container())
        unit = MetricUnit(result.unit)
        for sync_id, value in sorted(result.values.items()):
            with single_metric(
                name=result.name,
                unit=unit,
                value=value,
                namespace="crmsync",
                default_dimensions={"service": "crmsync", "sync": sync_id},
            ):
                pass  # emitted when the block ends
        stack_metrics.add_metric(name=result.name, unit=unit, value=max(result.values.values(), default=0.0))
        return result.model_dump(mode="json")

    handler.__name__ = f"{name}_handler"
    return cast(Callable[[dict[str, Any], LambdaContext], dict[str, Any]], handler)
