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
from typing import Any, Protocol, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError
from .stores.runs import stop_heartbeats
from .wiring import Container, container

logger = Logger(service="crmsync")
tracer = Tracer(service="crmsync")
metrics = Metrics(namespace="crmsync", service="crmsync")
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


def _record_metrics(request: BaseModel, result: BaseModel) -> None:
    """What this step added to the run's totals (states carry running totals, so take the difference)."""
    after, before = getattr(result, "totals", None), getattr(request, "totals", None)
    if not isinstance(after, BaseModel):
        return
    for field, metric in COUNTED.items():
        value = getattr(after, field, 0) - (getattr(before, field, 0) if isinstance(before, BaseModel) else 0)
        if value:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)
    status = getattr(result, "status", None)
    if isinstance(status, str):
        metrics.add_metric(name=f"Runs{status.title()}", unit=MetricUnit.Count, value=1)
    new_fields = getattr(getattr(result, "run", None), "new_fields", None)
    if new_fields and getattr(request, "run", None) is None:  # the start step: once per run
        metrics.add_metric(name="SchemaNewFields", unit=MetricUnit.Count, value=len(new_fields))


def step_handler(
    event_model: type[EventT], step: Callable[[EventT, Container], BaseModel], *, name: str
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """A Lambda handler running `step` on the parsed event with the environment's container."""

    @logger.inject_lambda_context(log_event=False, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
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
        for key in ("sync_id", "run_id"):
            value = getattr(request, key, None) or getattr(getattr(request, "run", None), key, None)
            if value:
                logger.append_keys(**{key: value})
        metrics.add_metric(name="StepInvocations", unit=MetricUnit.Count, value=1)
        try:
            result = step(request, container())
        finally:
            stop_heartbeats()  # the leases this step kept alive are the next step's to renew
        _record_metrics(request, result)
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
