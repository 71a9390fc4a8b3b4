"""`LocalStack`: the real template, ASL and handlers running in moto, in-process or behind a server.

In-process (`start()` / `with LocalStack() as stack`): moto's `mock_aws` with the state machine
interpreter on and Docker off; boto3 clients anywhere in the process reach the stack. Server mode
(`serve()`): `moto.server.ThreadedMotoServer` in this process with the same hooks, so other processes
and the AWS CLI reach it at `endpoint_url`.

moto reads both settings from the process-wide dict `moto.core.config.default_user_config`: `mock_aws`
patches it for the mock's lifetime; server mode patches the same dict (what `POST /moto-api/config` does
to a standalone `moto_server`). Without a mock, the interpreter's own service calls (DynamoDB, SQS, S3,
Lambda tasks) go to `http://localhost:$MOTO_PORT`, hence MOTO_PORT = the server's port.

Known moto gap (DESIGN §3): `arn:aws:states:::states:startExecution` as an ASL task fails in moto 5.2.5;
start child workflows from a Lambda or restructure them as Map/Parallel.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from moto import mock_aws
from moto.core.base_backend import BackendDict
from moto.core.config import DefaultConfig, default_user_config
from moto.server import ThreadedMotoServer

from crmsync_local.stack import runtime, speedups, timing
from crmsync_local.stack.errors import StackError
from crmsync_local.stack.provision import FunctionSpec, Provisioned, Provisioner, QueueMapping, ResourceInfo
from crmsync_local.stack.runtime import LambdaLogLine, LambdaRuntime, LogSink
from crmsync_local.stack.template import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    DEFAULT_STACK_NAME,
    StackPlan,
    Template,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = PROJECT_ROOT / "template.yaml"
LOG_FILE = Path(".crmsync") / "local-stack.log"  # under the template's directory, git-ignored

MOTO_CONFIG: DefaultConfig = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_CLIENT_CONFIG = Config(
    # One attempt: a retried Invoke would run a handler twice; nothing local is transiently unavailable.
    retries={"total_max_attempts": 1, "mode": "standard"},
    read_timeout=900,
    connect_timeout=10,
)
_session = boto3.session.Session()
_clients: dict[tuple[str, str, str | None], BaseClient] = {}
_clients_lock = threading.Lock()
_active_stack: LocalStack | None = None

log = logging.getLogger(__name__)

# Loggers whose lines belong in the stack's log sink, not the console: moto's interpreter logs every failed
# state at ERROR with a page-long repr; the server's werkzeug logs one line per request.
_ROUTED_LOGGERS = {"moto.stepfunctions.parser": "states", "werkzeug": "server"}
_ROUTED_LINE_LIMIT = 500


class _SinkLogHandler(logging.Handler):
    """Sends a library's log lines to the stack's log sink, shortened."""

    def __init__(self, sink: LogSink, label: str) -> None:
        super().__init__(level=logging.INFO)
        self._sink = sink
        self._label = label

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip()
        if len(message) > _ROUTED_LINE_LIMIT:
            message = message[:_ROUTED_LINE_LIMIT] + " …"
        self._sink.note(f"[{self._label}] {record.levelname} {message}")


@dataclass(frozen=True)
class ExecutionResult:
    """A finished (or timed-out) execution as `describe_execution` reports it, output parsed."""

    arn: str
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


@dataclass(frozen=True)
class InvokeResult:
    """A Lambda Invoke through the stack: status code, parsed payload, FunctionError, decoded log tail."""

    status_code: int
    payload: Any
    function_error: str | None
    log: str


@dataclass
class DrainResult:
    """What one `drain_queue` pass delivered; failed messages stay in the queue."""

    batches: int = 0
    delivered: int = 0
    succeeded: int = 0
    failed_message_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failed_message_ids)


class LocalStack:
    """The crmsync stack in moto: resources from the template, handlers dispatched in-process.

    `time_scale` scales Step Functions Retry intervals and Wait states (0 in tests, 1.0 for the demo).
    Handler output goes to `log_stream`, else to `log_path` (default `.crmsync/local-stack.log` next to
    the template), and is kept in `lambda_logs`. Only one stack runs per process at a time: moto's backends are process-wide.
    """

    def __init__(
        self,
        template: str | Path | Template = DEFAULT_TEMPLATE,
        *,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str = DEFAULT_REGION,
        parameters: Mapping[str, Any] | None = None,
        time_scale: float = 1.0,
        log_stream: TextIO | None = None,
        log_path: str | Path | None = None,
        enforce_lambda_timeouts: bool = True,
    ) -> None:
        self.template = template if isinstance(template, Template) else Template.load(template)
        self.plan = StackPlan(
            self.template,
            stack_name=stack_name,
            region=region,
            account_id=DEFAULT_ACCOUNT_ID,
            parameters=parameters,
        )
        self.stack_name = stack_name
        self.region = region
        self.account_id = DEFAULT_ACCOUNT_ID
        self.time_scale = time_scale
        self._log_stream = log_stream
        self._log_path = Path(log_path) if log_path is not None else self.template.root / LOG_FILE
        self._enforce_lambda_timeouts = enforce_lambda_timeouts
        self._provisioned = Provisioned()
        self._runtime: LambdaRuntime | None = None
        self._sink: LogSink | None = None
        self._mock: Any = None
        self._config_patch: Any = None
        self._server: ThreadedMotoServer | None = None
        self._saved_moto_port: str | None = None
        self._endpoint_url: str | None = None
        self._started = False
        self._routed_logs: list[tuple[logging.Logger, logging.Handler, bool]] = []
        self.outputs: dict[str, Any] = {}

    # -------------------------------------------------------------- lifecycle

    def start(self) -> LocalStack:
        """Start in-process: moto's mock intercepts every boto3 client of this process."""
        if not self._started:
            self._start(serve_at=None)
        return self

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve the stack over HTTP and return the endpoint URL (port 0 picks a free port).

        On a started stack the server shares its state; otherwise the stack starts in server mode and
        creates its resources through the server. Either way MOTO_PORT is set to the server's port (the
        interpreter's own service calls go there when no mock is active) and handlers get
        AWS_ENDPOINT_URL.
        """
        if self._server is None:
            if self._started:
                self._start_server(host, port)
            else:
                self._start(serve_at=(host, port))
        assert self._endpoint_url is not None
        return self._endpoint_url

    def stop(self) -> None:
        """Stop executions and the server, undo every patch, restore the process as it was."""
        global _active_stack
        if not self._started:
            return
        try:
            self._stop_running_executions()
            if self._runtime is not None:
                self._runtime.close()
                runtime.uninstall(self._runtime)
            timing.uninstall()
            speedups.uninstall()
            self._stop_server()
            if self._mock is not None:
                self._mock.stop()
            if self._config_patch is not None:
                BackendDict.reset()
                self._config_patch.stop()
        finally:
            _active_stack = None
            self._mock = self._config_patch = self._runtime = None
            self._started = False
            _reset_core_caches()
            for logger, handler, propagate in self._routed_logs:
                logger.removeHandler(handler)
                logger.propagate = propagate
            self._routed_logs.clear()
            if self._sink is not None:
                self._sink.close()  # its lines stay readable through lambda_logs

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str | None:
        """The server's URL in server mode, else None (in-process clients need no endpoint)."""
        return self._endpoint_url

    def client_environment(self) -> dict[str, str]:
        """Environment variables that point a subprocess (or the AWS CLI) at the served stack."""
        if self._endpoint_url is None:
            raise StackError("client_environment() needs server mode: call serve() first")
        return {
            "AWS_ENDPOINT_URL": self._endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    # -------------------------------------------------------------- what exists

    @property
    def resources(self) -> dict[str, ResourceInfo]:
        """Logical id -> {"type", "physical_id" (name, URL or ARN: the Ref value), "arn"}."""
        return dict(self._provisioned.resources)

    def resource_names(self) -> dict[str, str]:
        """Logical id -> what `!Ref` of it evaluates to in this stack."""
        return {logical_id: str(self.plan.ref(logical_id)) for logical_id in self._provisioned.resources}

    @property
    def functions(self) -> dict[str, FunctionSpec]:
        """Logical id -> how the in-process runtime runs that function (code dir, handler, environment)."""
        return dict(self._provisioned.functions)

    @property
    def definitions(self) -> dict[str, str]:
        """State machine logical id -> the ASL as deployed (DefinitionSubstitutions applied)."""
        return dict(self._provisioned.definitions)

    @property
    def lambda_logs(self) -> list[LambdaLogLine]:
        """Every line the handlers wrote (stdout, stderr, logging, uncaught errors), in order."""
        return list(self._sink.lines) if self._sink is not None else []

    def lambda_log_text(self, function: str | None = None) -> str:
        """The handlers' output as text, optionally of one function (logical id)."""
        return "\n".join(line.text for line in self.lambda_logs if function in (None, line.function))

    def client(self, service: str) -> BaseClient:
        """A boto3 client bound to the stack (cached: creating clients is the slow part of a stack)."""
        key = (service, self.region, self._endpoint_url)
        with _clients_lock:
            if key not in _clients:
                _clients[key] = _session.client(
                    service,
                    region_name=self.region,
                    endpoint_url=self._endpoint_url,
                    config=_CLIENT_CONFIG,
                    **FAKE_CREDENTIALS,
                )
            return _clients[key]

    # -------------------------------------------------------------- Lambda

    def invoke(
        self, function: str, event: Any = None, *, invocation_type: str = "RequestResponse"
    ) -> InvokeResult:
        """Invoke a function (logical id or name) through moto's Lambda API, as Step Functions does."""
        name = self._function_name(function)
        response = self.client("lambda").invoke(
            FunctionName=name,
            Payload=json.dumps({} if event is None else event).encode(),
            InvocationType=invocation_type,
            LogType="Tail",
        )
        raw = response["Payload"].read()
        return InvokeResult(
            status_code=response["StatusCode"],
            payload=json.loads(raw) if raw else None,
            function_error=response.get("FunctionError"),
            log=base64.b64decode(response.get("LogResult", "")).decode(errors="replace"),
        )

    def wait_for_async_invocations(self, timeout: float = 30.0) -> None:
        """Block until every `InvocationType=Event` call made so far has run."""
        if self._runtime is not None:
            self._runtime.wait_for_async(timeout)

    # -------------------------------------------------------------- Step Functions

    def start_execution(self, state_machine: str, input: Any = None, name: str | None = None) -> str:
        """Start an execution and return its ARN; a unique name is generated when none is given.

        moto names an unnamed execution `…:None`, so a second one would collide: always send a name.
        """
        arn = self._state_machine_arn(state_machine)
        execution_name = name or f"{arn.rsplit(':', 1)[-1][:40]}-{uuid.uuid4().hex[:20]}"
        payload = input if isinstance(input, str) else json.dumps({} if input is None else input)
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=arn, name=execution_name, input=payload
        )
        return str(response["executionArn"])

    def wait_for_execution(
        self, execution_arn: str, timeout: float = 30.0, poll_interval: float = 0.02
    ) -> ExecutionResult:
        """Poll until the execution leaves RUNNING; TimeoutError (with recent history) if it does not."""
        client = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            description = client.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                return ExecutionResult(
                    arn=execution_arn,
                    name=description["name"],
                    status=description["status"],
                    output=_parse_output(description.get("output")),
                    error=description.get("error"),
                    cause=description.get("cause"),
                )
            if time.monotonic() > deadline:
                recent = [event["type"] for event in self.execution_history(execution_arn)[-10:]]
                raise TimeoutError(f"{execution_arn} still RUNNING after {timeout}s; last events: {recent}")
            time.sleep(poll_interval)

    def run_execution(
        self, state_machine: str, input: Any = None, name: str | None = None, timeout: float = 30.0
    ) -> ExecutionResult:
        """Start an execution and wait for it."""
        return self.wait_for_execution(self.start_execution(state_machine, input, name), timeout)

    def execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every history event of an execution, oldest first (for debugging failed runs)."""
        paginator = self.client("stepfunctions").get_paginator("get_execution_history")
        events: list[dict[str, Any]] = []
        for page in paginator.paginate(executionArn=execution_arn, includeExecutionData=True):
            events.extend(page["events"])
        return events

    # -------------------------------------------------------------- SQS event sources

    def drain_queue(self, queue: str, *, max_batches: int = 100, release_failed: bool = True) -> DrainResult:
        """Deliver the queue's messages to its mapped functions in batches, as Lambda's poller does.

        Messages of a successful batch are deleted; with `ReportBatchItemFailures` only the ones not
        listed in `batchItemFailures` are (an invalid identifier fails the whole batch, as on AWS).
        Failed messages become visible again after the pass when `release_failed` (their visibility
        timeout has passed, in local time), so the next pass retries them and the queue's
        `maxReceiveCount` moves them to the dead-letter queue.
        """
        queue_arn = self._queue_arn(queue)
        mappings = [m for m in self._provisioned.queue_mappings.values() if m.queue_arn == queue_arn and m.enabled]
        if not mappings:
            raise StackError(f"{queue}: no enabled SQS event source mapping reads this queue")
        result = DrainResult()
        for mapping in mappings:
            self._drain(mapping, max_batches, release_failed, result)
        return result

    def drain_queues(self) -> dict[str, DrainResult]:
        """`drain_queue` for every queue that has an event source mapping, by queue logical id."""
        by_arn = {info["arn"]: logical_id for logical_id, info in self._provisioned.resources.items()}
        queues = sorted({by_arn[m.queue_arn] for m in self._provisioned.queue_mappings.values() if m.enabled})
        return {queue: self.drain_queue(queue) for queue in queues}

    # -------------------------------------------------------------- internals

    def _start(self, serve_at: tuple[str, int] | None) -> None:
        global _active_stack
        if _active_stack is not None:
            raise StackError("another LocalStack is running in this process; stop it first")
        _active_stack = self
        self._started = True
        try:
            _reset_core_caches()
            self._sink = (
                LogSink(self._log_stream) if self._log_stream is not None else LogSink.to_file(self._log_path)
            )
            self._route_library_logs(self._sink)
            if serve_at is None:
                moto_mock = mock_aws(config=MOTO_CONFIG)
                moto_mock.start()
                self._mock = moto_mock
                speedups.share_service_models()
            else:
                BackendDict.reset()
                config_patch = mock.patch.dict(default_user_config, MOTO_CONFIG)
                config_patch.start()
                self._config_patch = config_patch
                self._start_server(*serve_at)
            timing.install(self.time_scale)
            speedups.install()
            self._provisioned = Provisioner(self.plan, self.client).create_all()
            self.outputs = self.plan.outputs()
            self._runtime = LambdaRuntime(
                self._provisioned.functions,
                region=self.region,
                sink=self._sink,
                enforce_timeouts=self._enforce_lambda_timeouts,
            )
            self._runtime.endpoint_url = self._endpoint_url
            runtime.install(self._runtime)
        except BaseException:
            self.stop()
            raise

    def _route_library_logs(self, sink: LogSink) -> None:
        for name, label in _ROUTED_LOGGERS.items():
            logger = logging.getLogger(name)
            handler = _SinkLogHandler(sink, label)
            self._routed_logs.append((logger, handler, logger.propagate))
            logger.addHandler(handler)
            logger.propagate = False

    def _start_server(self, host: str, port: int) -> None:
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        server.start()
        self._server = server
        bound_host, bound_port = server.get_host_and_port()
        self._endpoint_url = f"http://{bound_host}:{bound_port}"
        self._saved_moto_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(bound_port)
        if self._runtime is not None:
            self._runtime.endpoint_url = self._endpoint_url

    def _stop_server(self) -> None:
        if self._server is None:
            return
        self._server.stop()
        self._server = None
        self._endpoint_url = None
        if self._saved_moto_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._saved_moto_port

    def _stop_running_executions(self) -> None:
        """Stop executions still running so their interpreter threads do not outlive the mock."""
        arns = [
            info["arn"] for info in self._provisioned.resources.values() if ":stateMachine:" in str(info["arn"])
        ]
        try:
            client = self.client("stepfunctions")
            for arn in arns:
                for execution in client.list_executions(stateMachineArn=str(arn), statusFilter="RUNNING")[
                    "executions"
                ]:
                    client.stop_execution(executionArn=execution["executionArn"], error="LocalStack.Stopped")
        except Exception:  # the stack is going away: a failure here must not hide the original error
            log.debug("could not stop running executions", exc_info=True)

    def _state_machine_arn(self, state_machine: str) -> str:
        if state_machine.startswith("arn:"):
            return state_machine
        info = self._provisioned.resources.get(state_machine)
        if info is None or "StateMachine" not in info["type"]:
            known = sorted(k for k, v in self._provisioned.resources.items() if "StateMachine" in v["type"])
            raise StackError(f"{state_machine} is not a state machine of this stack (known: {', '.join(known)})")
        return str(info["arn"])

    def _function_name(self, function: str) -> str:
        spec = self._provisioned.functions.get(function)
        if spec is not None:
            return spec.name
        if any(s.name == function or s.arn == function for s in self._provisioned.functions.values()):
            return function
        known = ", ".join(sorted(self._provisioned.functions))
        raise StackError(f"{function} is not a function of this stack (known: {known})")

    def _queue_arn(self, queue: str) -> str:
        info = self._provisioned.resources.get(queue)
        if info is None or info["type"] != "AWS::SQS::Queue":
            known = sorted(k for k, v in self._provisioned.resources.items() if v["type"] == "AWS::SQS::Queue")
            raise StackError(f"{queue} is not a queue of this stack (known: {', '.join(known)})")
        return str(info["arn"])

    def _drain(self, mapping: QueueMapping, max_batches: int, release_failed: bool, result: DrainResult) -> None:
        sqs = self.client("sqs")
        seen: set[str] = set()
        failed_handles: list[str] = []
        for _ in range(max_batches):
            messages = self._receive_batch(mapping)
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                failed_handles.extend(m["ReceiptHandle"] for m in messages)
                break
            seen.update(m["MessageId"] for m in fresh)
            result.batches += 1
            result.delivered += len(fresh)
            event = {"Records": [self._sqs_record(message, mapping) for message in fresh]}
            invocation = self.invoke(mapping.function_name, event)
            failed_ids = _failed_message_ids(invocation, mapping, [m["MessageId"] for m in fresh])
            done = [m for m in fresh if m["MessageId"] not in failed_ids]
            for start in range(0, len(done), 10):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ]
                sqs.delete_message_batch(QueueUrl=mapping.queue_url, Entries=entries)
            result.succeeded += len(done)
            result.failed_message_ids.extend(m["MessageId"] for m in fresh if m["MessageId"] in failed_ids)
            failed_handles.extend(m["ReceiptHandle"] for m in fresh if m["MessageId"] in failed_ids)
        if release_failed:
            for handle in failed_handles:
                sqs.change_message_visibility(
                    QueueUrl=mapping.queue_url, ReceiptHandle=handle, VisibilityTimeout=0
                )

    def _receive_batch(self, mapping: QueueMapping) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        messages: list[dict[str, Any]] = []
        while len(messages) < mapping.batch_size:
            received = sqs.receive_message(
                QueueUrl=mapping.queue_url,
                MaxNumberOfMessages=min(10, mapping.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not received:
                break
            messages.extend(received)
        return messages

    def _sqs_record(self, message: Mapping[str, Any], mapping: QueueMapping) -> dict[str, Any]:
        """The record shape Lambda's SQS poller sends (camelCase, binary values base64)."""
        attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            attributes[name] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(value["BinaryValue"]).decode() if "BinaryValue" in value else None,
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])],
                "dataType": value["DataType"],
            }
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes,
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": mapping.queue_arn,
            "awsRegion": self.region,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


def _parse_output(output: str | None) -> Any:
    """Parse an execution's output; moto 5.2.5 returns a bare string output without JSON-encoding it."""
    if not output:
        return None
    try:
        return json.loads(output)
    except json.JSONDecodeError:
        return output


def _failed_message_ids(invocation: InvokeResult, mapping: QueueMapping, batch_ids: list[str]) -> set[str]:
    """Which messages of a batch failed, by Lambda's rules for SQS event sources."""
    if invocation.function_error:
        return set(batch_ids)
    if not mapping.report_batch_item_failures or not isinstance(invocation.payload, dict):
        return set()
    failures = invocation.payload.get("batchItemFailures") or []
    identifiers = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
    valid = {identifier for identifier in identifiers if isinstance(identifier, str) and identifier in batch_ids}
    if len(valid) != len(set(map(str, identifiers))):
        return set(batch_ids)  # a missing or unknown identifier fails the whole batch, as on AWS
    return valid


def _reset_core_caches() -> None:
    """Call `crmsync.wiring.reset_caches()` when it exists: a new stack is a new Lambda container."""
    try:
        wiring = importlib.import_module("crmsync.wiring")
    except ModuleNotFoundError as exc:
        if exc.name in {"crmsync", "crmsync.wiring"}:
            return
        raise
    reset = getattr(wiring, "reset_caches", None)
    if callable(reset):
        reset()
