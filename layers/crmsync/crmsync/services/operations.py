"""What an operator does to a deployed stack: apply configuration and schedules, start and follow runs,
move watermarks, read rejects. The `crmsync` CLI is a thin layer over this; everything goes through the
standard boto3 credential chain, so `AWS_ENDPOINT_URL` points it at the local stack unchanged.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..config import CrmsyncConfig, DynamicsConnection, SalesforceConnection, SyncDefinition
from ..connectors.port import ApiLimits, CrmConnector, ObjectSummary
from ..domain.windows import parse_watermark
from ..errors import ConfigurationError
from ..stores.watermarks import Watermark
from ..wiring import AwsClients, Container, Settings

OPERATIONS = ("import", "export", "import_deleted", "delete", "enumerations")
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class StackNames:
    """Physical names `template.yaml` derives from the stack name."""

    stack: str
    region: str
    account: str
    partition: str = "aws"

    def state_machine_arn(self, operation: str) -> str:
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{self.stack}-{operation.replace('_', '-')}"

    @property
    def schedule_group(self) -> str:
        return f"{self.stack}-syncs"

    @property
    def scheduler_role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{self.stack}-scheduler"

    @property
    def rejects_queue(self) -> str:
        return f"{self.stack}-rejects"


@dataclass(frozen=True)
class StartedRun:
    sync_id: str
    run_id: str
    execution_arn: str


@dataclass
class ReplayReport:
    sync_id: str
    rejects: int
    profiles: int
    summary: dict[str, Any] = field(default_factory=dict)
    exported: int = 0
    rejected_again: int = 0
    consumed: int = 0


@dataclass(frozen=True)
class ConnectionCheck:
    """What `crmsync connection test` found: the login worked, these objects are visible, these limits left."""

    connection: str
    kind: str
    source: str
    objects: list[ObjectSummary]
    limits: ApiLimits
    api_calls: int


@dataclass(frozen=True)
class ScheduleChange:
    sync_id: str
    action: str
    expression: str | None


def execution_name(sync_id: str, trigger: str) -> str:
    """Unique, sortable and valid as a Step Functions execution name (80 chars, no spaces)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{sync_id}-{trigger}-{stamp}-{uuid.uuid4().hex[:6]}")[:80]


class Operator:
    def __init__(self, stack: str = "crmsync", *, clients: AwsClients | None = None) -> None:
        self.aws = clients or AwsClients()
        sts = self.aws.client("sts")
        identity = sts.get_caller_identity()
        region = self.aws.client("sqs").meta.region_name
        partition = identity["Arn"].split(":")[1] if identity.get("Arn", "").startswith("arn:") else "aws"
        self.names = StackNames(stack=stack, region=region, account=identity["Account"], partition=partition)
        try:
            queue_url = self.aws.client("sqs").get_queue_url(QueueName=self.names.rejects_queue)["QueueUrl"]
        except ClientError as exc:
            raise ConfigurationError(
                f"stack {stack!r} was not found in {region} (no queue {self.names.rejects_queue}); "
                "deploy it with `sam deploy` or pass --stack"
            ) from exc
        settings = Settings.for_stack(stack, account_id=self.names.account, region=region, queue_url=queue_url)
        self.container = Container(settings, self.aws)

    # -- configuration -------------------------------------------------------------------------------
    def apply(self, config: CrmsyncConfig) -> list[ScheduleChange]:
        self.container.definitions.apply(config)
        return [self._schedule(sync) for sync in config.syncs]

    def _schedule(self, sync: SyncDefinition) -> ScheduleChange:
        scheduler = self.aws.client("scheduler")
        group = self.names.schedule_group
        try:
            scheduler.get_schedule(Name=sync.id, GroupName=group)
            exists = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            exists = False
        if sync.schedule is None:
            if exists:
                scheduler.delete_schedule(Name=sync.id, GroupName=group)
                return ScheduleChange(sync.id, "deleted", None)
            return ScheduleChange(sync.id, "none", None)
        request = {
            "Name": sync.id,
            "GroupName": group,
            "ScheduleExpression": sync.schedule,
            "ScheduleExpressionTimezone": sync.schedule_timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if sync.enabled else "DISABLED",
            "Description": f"crmsync {sync.operation} {sync.id}",
            "Target": {
                "Arn": self.names.state_machine_arn(sync.operation),
                "RoleArn": self.names.scheduler_role_arn,
                "Input": json.dumps({"sync_id": sync.id, "trigger": "schedule"}),
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
            },
        }
        (scheduler.update_schedule if exists else scheduler.create_schedule)(**request)
        return ScheduleChange(sync.id, "updated" if exists else "created", sync.schedule)

    # -- connections (SPEC C3) -------------------------------------------------------------------------
    def connection(
        self, name: str, config: CrmsyncConfig | None = None
    ) -> tuple[SalesforceConnection | DynamicsConnection, str]:
        """A connection from `config` when given (before it is applied), else from the stack's applied
        definitions; and where it came from. Its credentials always come from Secrets Manager."""
        if config is None:
            return self.container.definitions.connection(name), f"stack {self.names.stack}"
        try:
            return config.connection(name), "the configuration file"
        except KeyError:
            defined = ", ".join(c.name for c in config.connections) or "none"
            raise ConfigurationError(f"no connection named {name!r} in the file (defined: {defined})") from None

    def connector(self, name: str, config: CrmsyncConfig | None = None) -> CrmConnector:
        """A signed-in connector of the named connection (schema discovery, `config validate --online`)."""
        return self.container.connector(self.connection(name, config)[0])

    def check_connection(self, name: str, config: CrmsyncConfig | None = None) -> ConnectionCheck:
        """Sign in with the connection's secret, list what it can see and the API limits the CRM reports.

        The connection comes from `config` when given (before it is applied), else from the stack's
        applied definitions; the credentials always come from Secrets Manager.
        """
        connection, source = self.connection(name, config)
        connector = self.container.connector(connection)
        objects = connector.list_objects()
        limits = connector.limits()
        return ConnectionCheck(
            connection=connection.name,
            kind=connection.kind,
            source=source,
            objects=objects,
            limits=limits,
            api_calls=connector.api_calls,
        )

    # -- runs ------------------------------------------------------------------------------------------
    def start(
        self,
        sync_id: str,
        *,
        population: dict[str, Any] | None = None,
        period: dict[str, Any] | None = None,
        trigger: str = "manual",
    ) -> StartedRun:
        stored = self.container.definitions.sync(sync_id)
        if period is not None and stored.sync.operation != "import_deleted":
            raise ConfigurationError(
                f"sync {sync_id!r} is an {stored.sync.operation}; a period is given to deletion imports only"
            )
        run_id = execution_name(sync_id, trigger)
        payload: dict[str, Any] = {"sync_id": sync_id, "trigger": trigger}
        if population is not None:
            payload["population"] = population
        if period is not None:
            payload["period"] = period
        response = self.aws.client("stepfunctions").start_execution(
            stateMachineArn=self.names.state_machine_arn(stored.sync.operation),
            name=run_id,
            input=json.dumps(payload),
        )
        return StartedRun(sync_id=sync_id, run_id=run_id, execution_arn=response["executionArn"])

    def wait(
        self,
        run: StartedRun,
        *,
        timeout: float = 3600,
        poll: float = 0.5,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the run ends; the summary as `crmsync run --wait --json` prints it."""
        sfn = self.aws.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            execution = sfn.describe_execution(executionArn=run.execution_arn)
            if on_poll is not None:
                on_poll(execution)
            if execution["status"] in TERMINAL:
                return self._summary(run, execution)
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.run_id} still {execution['status']} after {timeout:.0f}s")
            time.sleep(poll)

    def _summary(self, run: StartedRun, execution: dict[str, Any]) -> dict[str, Any]:
        if execution["status"] == "SUCCEEDED":
            return dict(json.loads(execution.get("output") or "{}"))
        for record in self.container.runs.recent(run.sync_id, limit=50):
            if record.get("runId") == run.run_id and isinstance(record.get("result"), dict):
                return dict(record["result"])
        return {
            "sync_id": run.sync_id,
            "run_id": run.run_id,
            "status": execution["status"],
            "error": {"type": execution.get("error", ""), "message": execution.get("cause", "")},
        }

    def runs(self, sync_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return self.container.runs.recent(sync_id, limit)

    # -- watermarks ------------------------------------------------------------------------------------
    def _option(self, sync_id: str) -> str:
        stored = self.container.definitions.sync(sync_id)
        return stored.sync.watermark_option(stored.instance)

    def watermark(self, sync_id: str) -> tuple[str, Watermark | None]:
        option = self._option(sync_id)
        return option, self.container.watermarks.get(option)

    def set_watermark(self, sync_id: str, text: str) -> Watermark:
        try:
            value = parse_watermark(text)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return self.container.watermarks.set(self._option(sync_id), value)

    def reset_watermark(self, sync_id: str) -> str:
        option = self._option(sync_id)
        self.container.watermarks.delete(option)
        return option

    # -- rejects ---------------------------------------------------------------------------------------
    def rejects(self, sync_id: str, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Peek at the sync's rejects: read the queue, then make every message visible again at once."""
        return list(self._peek(sync_id, limit))

    def _peek(
        self, sync_id: str, limit: int | None, *, consume: Callable[[dict[str, Any]], bool] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The sync's rejects, once each (by `rejectId`); those `consume` picks are deleted from the queue,
        every other message is made visible again."""
        sqs, url = self.aws.client("sqs"), self.container.settings.rejects_queue_url
        seen: set[str] = set()
        handles: list[str] = []
        consumed: list[str] = []
        found = 0
        try:
            while limit is None or found < limit:
                response = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=30,
                    WaitTimeSeconds=0,
                    MessageAttributeNames=["All"],
                )
                messages = response.get("Messages", [])
                if not messages:
                    return
                for message in messages:
                    body = json.loads(message["Body"])
                    if body.get("syncId") == sync_id and consume is not None and consume(body):
                        consumed.append(message["ReceiptHandle"])
                        continue
                    handles.append(message["ReceiptHandle"])
                    if body.get("syncId") != sync_id:
                        continue
                    reject_id = body.get("rejectId") or message["MessageId"]
                    if reject_id in seen:
                        continue
                    seen.add(reject_id)
                    found += 1
                    yield {
                        **body,
                        "messageId": message["MessageId"],
                        "sentAt": message.get("Attributes", {}).get("SentTimestamp"),
                    }
        finally:
            for start in range(0, len(consumed), 10):
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(consumed[start : start + 10])
                    ],
                )
            for start in range(0, len(handles), 10):
                sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                        for i, h in enumerate(handles[start : start + 10])
                    ],
                )

    def replay_rejects(self, sync_id: str, *, timeout: float = 3600, poll: float = 0.5) -> ReplayReport:
        """Send an export sync's rejects through the export again, after the data was fixed.

        The rejected profiles are exported as a population, read fresh from the profile store. Once that
        run has succeeded, a replayed reject leaves the queue: because its record was exported, or because
        the run refused it again and routed a new reject, with the new error, in its place. A failed run
        consumes nothing.
        """
        stored = self.container.definitions.sync(sync_id)
        if stored.sync.operation != "export":
            raise ConfigurationError(
                f"sync {sync_id!r} is an {stored.sync.operation}; only export rejects are replayed"
            )
        rejects = [r for r in self.rejects(sync_id) if r.get("operation") == "export"]
        profile_ids = list(dict.fromkeys(str(r["profileId"]) for r in rejects if r.get("profileId")))
        report = ReplayReport(sync_id=sync_id, rejects=len(rejects), profiles=len(profile_ids))
        if not profile_ids:
            return report
        run = self.start(sync_id, population={"ids": profile_ids}, trigger="replay")
        report.summary = self.wait(run, timeout=timeout, poll=poll)
        if report.summary.get("status") != "SUCCEEDED":
            return report
        outcomes = self.export_outcomes(sync_id, run.run_id)
        report.exported = sum(1 for p in profile_ids if outcomes.get(p) in ("created", "updated", "unchanged"))
        report.rejected_again = sum(1 for p in profile_ids if outcomes.get(p, "rejected") == "rejected")
        replayed = {r["rejectId"] for r in rejects if r.get("profileId") in set(profile_ids)}
        for _ in self._peek(sync_id, None, consume=lambda body: body.get("rejectId") in replayed):
            pass
        report.consumed = len(replayed)
        return report

    def export_outcomes(self, sync_id: str, run_id: str) -> dict[str, str]:
        """Each profile's outcome in an export run (created, updated, unchanged, rejected), from its ledger."""
        ledger = self.container.batches
        outcomes: dict[str, str] = {}
        for entry in ledger.entries(sync_id, run_id):
            for result in ledger.results(entry):
                outcomes[result["profileId"]] = result["status"]
        return outcomes


def data_loader_error_file(rejects: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rejects as Salesforce Data Loader writes its error file: each record's columns, then `ERROR`
    holding `<errorSymbol>:<errorMessage>`. Columns are the union of the records', in first-seen order."""
    columns: dict[str, None] = {}
    for reject in rejects:
        columns.update(dict.fromkeys(reject.get("record") or {}))
    header = [*columns, "ERROR"]
    rows = []
    for reject in rejects:
        record = reject.get("record") or {}
        cells = ["" if record.get(c) is None else str(record[c]) for c in columns]
        rows.append([*cells, f"{reject.get('errorSymbol', '')}:{reject.get('errorMessage', '')}"])
    return header, rows
