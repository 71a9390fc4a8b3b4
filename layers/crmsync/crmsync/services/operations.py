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
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError

from .. import registry
from ..config import (
    CrmsyncConfig,
    DynamicsConnection,
    EventsSync,
    ImportSync,
    InitialTransferSync,
    SalesforceConnection,
    SyncDefinition,
    TwoWaySync,
)
from ..connectors.port import ApiLimits, CrmConnector, FieldHistoryConnector, ObjectSummary
from ..connectors.rules import crm_rules
from ..domain.events import parse_event
from ..domain.windows import format_watermark, parse_moment
from ..errors import ConfigurationError, SyncNotFound
from ..stores.definitions import DefinitionPlan
from ..stores.two_way import CONSENT_COLUMNS
from ..stores.watermarks import Watermark
from ..wiring import AwsClients, Container, Settings
from .events import BackfillReport, backfill, switched_on
from .rejects import REPLAYABLE, DeadLetters, RejectDesk, ReplayReport
from .rejects import data_loader_error_file as data_loader_error_file
from .runs import S3_URI
from .transfers import TransferSummary, file_format, transfer_file

TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class StackNames:
    """Physical names `template.yaml` derives from the stack name."""

    stack: str
    region: str
    account: str
    partition: str = "aws"

    def state_machine_arn(self, name: str) -> str:
        """The state machine that runs operation `name` (the registry names it)."""
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{self.stack}-{registry.operation(name).machine}"

    def execution_arn(self, operation: str, run_id: str) -> str:
        """A run's execution: its id is the execution's name."""
        machine = self.state_machine_arn(operation)
        return machine.replace(":stateMachine:", ":execution:", 1) + f":{run_id}"

    @property
    def schedule_group(self) -> str:
        return f"{self.stack}-syncs"

    @property
    def scheduler_role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{self.stack}-scheduler"

    @property
    def rejects_queue(self) -> str:
        return f"{self.stack}-rejects"

    @property
    def schedule_dead_letter_queue_arn(self) -> str:
        return f"arn:{self.partition}:sqs:{self.region}:{self.account}:{self.stack}-schedules-dlq"

    @property
    def events_queue(self) -> str:
        return f"{self.stack}-events"


@dataclass(frozen=True)
class StartedRun:
    sync_id: str
    run_id: str
    execution_arn: str


@dataclass(frozen=True)
class ConnectionCheck:
    """What `crmsync connection test` found: the login worked, these objects are visible, these limits left."""

    connection: str
    kind: str
    source: str
    objects: list[ObjectSummary]
    limits: ApiLimits
    api_calls: int
    field_tracking: list[dict[str, Any]] = field(default_factory=list)
    """Per field a two-way sync maps on this connection: where its change times come from (SPEC O3)."""


@dataclass(frozen=True)
class ScheduleChange:
    sync_id: str
    action: str
    expression: str | None
    backfill: BackfillReport | None = None
    """An events sync whose types were switched on: the back-fill `apply` started (SPEC M4)."""


@dataclass(frozen=True)
class SentEvents:
    """What `crmsync events send` did: lines read, events queued, lines refused before sending."""

    read: int
    sent: int
    invalid: list[tuple[int, str]]


@dataclass(frozen=True)
class ApplyReport:
    """What `config apply` did, or with `dry_run` would do.

    `schedules` has one change per sync of the file, in its order; `removed` one per sync the file no
    longer has (its definition and schedule go; its data, watermark, runs and rejects stay). A removed
    sync with a run in flight keeps its definition until the run ends: its schedule is disabled and
    `waiting` says why; applying the same file again once the run ended removes it.
    """

    plan: DefinitionPlan
    schedules: list[ScheduleChange]
    removed: list[ScheduleChange]
    waiting: dict[str, str]
    dry_run: bool = False


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
        self._desk: RejectDesk | None = None

    # -- configuration -------------------------------------------------------------------------------
    def apply(self, config: CrmsyncConfig) -> list[ScheduleChange]:
        """Apply declaratively (see `apply_config`); the schedule change of each of the file's syncs."""
        return self.apply_config(config).schedules

    def apply_config(self, config: CrmsyncConfig, *, dry_run: bool = False) -> ApplyReport:
        """Make the stack's definitions and schedules the file's: add, change, and remove what the file no
        longer has. With `dry_run`, only the plan: nothing is written. An events sync whose types are
        switched on (or that is new) back-fills them from the archive (SPEC M4)."""
        definitions = self.container.definitions
        plan = definitions.plan(config)
        waiting = {sync_id: why for sync_id in plan.removed if (why := self._in_flight(sync_id))}
        # A waiting sync keeps the connection it reads from, until it goes itself.
        kept = {definitions.connection_name_of(sync_id) for sync_id in waiting}
        plan.connections_removed = [name for name in plan.connections_removed if name not in kept]
        if dry_run:
            return ApplyReport(plan, [], [], waiting, dry_run=True)
        before = self._stored_events_syncs(config)
        definitions.apply(config, keep=frozenset(waiting))
        schedules = [self._backfill_switched_on(self._schedule(sync), sync, before) for sync in config.syncs]
        removed = [self._unschedule(sync_id, disable=sync_id in waiting) for sync_id in plan.removed]
        return ApplyReport(plan, schedules, removed, waiting)

    def _stored_events_syncs(self, config: CrmsyncConfig) -> dict[str, EventsSync | None]:
        """The stored definition of each events sync of the file, before it is applied."""
        before: dict[str, EventsSync | None] = {}
        for sync in config.syncs:
            if isinstance(sync, EventsSync):
                try:
                    stored = self.container.definitions.sync(sync.id).sync
                except SyncNotFound:
                    stored = None
                before[sync.id] = stored if isinstance(stored, EventsSync) else None
        return before

    def _backfill_switched_on(
        self, change: ScheduleChange, sync: SyncDefinition, before: dict[str, EventsSync | None]
    ) -> ScheduleChange:
        if not isinstance(sync, EventsSync):
            return change
        types = switched_on(before.get(sync.id), sync)
        if not types:
            return change
        report = backfill(self.container, self.events_queue_url, sync, types=types)
        return ScheduleChange(change.sync_id, change.action, change.expression, report)

    # -- e-mail events (SPEC M1-M4) --------------------------------------------------------------------
    @property
    def events_queue_url(self) -> str:
        url = self.container.settings.events_queue_url
        if url is None:
            url = self.aws.client("sqs").get_queue_url(QueueName=self.names.events_queue)["QueueUrl"]
            self.container.settings = self.container.settings.model_copy(update={"events_queue_url": url})
        return url

    def send_events(self, lines: Iterator[str] | list[str]) -> SentEvents:
        """JSON Lines onto the events queue, 10 a call. A line that is not an event is reported, not sent
        (the queue's consumer would only move it to the dead-letter queue)."""
        sqs = self.aws.client("sqs")
        invalid: list[tuple[int, str]] = []
        batch: list[dict[str, Any]] = []
        read = sent = 0

        def flush() -> int:
            if not batch:
                return 0
            response = sqs.send_message_batch(QueueUrl=self.events_queue_url, Entries=batch)
            if response.get("Failed"):
                raise ConfigurationError(f"SQS refused {len(response['Failed'])} events")
            count = len(batch)
            batch.clear()
            return count

        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            read += 1
            try:
                parse_event(line)
            except ValueError as problem:
                invalid.append((number, str(problem)))
                continue
            batch.append({"Id": str(len(batch)), "MessageBody": line.strip()})
            if len(batch) == 10:
                sent += flush()
        sent += flush()
        return SentEvents(read=read, sent=sent, invalid=invalid)

    def backfill_events(self, sync_id: str, *, days: int | None = None) -> BackfillReport:
        """Push the archived events of the last `days` (default the sync's `backfill_days`) again."""
        stored = self.container.definitions.sync(sync_id)
        if not isinstance(stored.sync, EventsSync):
            raise ConfigurationError(
                f"sync {sync_id!r} is an {stored.sync.operation}; only events syncs back-fill"
            )
        return backfill(self.container, self.events_queue_url, stored.sync, days=days)

    def _in_flight(self, sync_id: str) -> str | None:
        """Why a removal waits: the run holding the sync's lease, if the lease has not expired."""
        lease = self.container.runs.lease_holder(sync_id)
        if lease is None or int(lease.get("expiresAt", 0)) < time.time():
            return None
        until = datetime.fromtimestamp(int(lease["expiresAt"]), UTC).isoformat()
        return (
            f"run {lease['holder']} is in flight (lease until {until}); its schedule is disabled and the "
            "definition stays until the run ends: apply the file again then to remove it"
        )

    def _unschedule(self, sync_id: str, *, disable: bool) -> ScheduleChange:
        """A removed sync's schedule: deleted, or only disabled while a run of the sync is in flight."""
        scheduler = self.aws.client("scheduler")
        group = self.names.schedule_group
        try:
            current = scheduler.get_schedule(Name=sync_id, GroupName=group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            return ScheduleChange(sync_id, "waiting" if disable else "removed", None)
        if not disable:
            scheduler.delete_schedule(Name=sync_id, GroupName=group)
            return ScheduleChange(sync_id, "removed", None)
        keep = ("Name", "GroupName", "ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow")
        request = {k: current[k] for k in keep if k in current}
        request["Target"] = current["Target"]
        request["Description"] = current.get("Description", "")
        scheduler.update_schedule(**request, State="DISABLED")
        return ScheduleChange(sync_id, "disabled", current.get("ScheduleExpression"))

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
                # A run that could not be started after the retries is kept there, and alarmed on.
                "DeadLetterConfig": {"Arn": self.names.schedule_dead_letter_queue_arn},
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
        if config is not None:
            syncs = list(config.syncs)
        else:
            definitions = self.container.definitions
            syncs = [
                definitions.sync(item["id"]).sync
                for item in definitions.list_syncs()
                if item["operation"] == "two_way"
            ]
        tracking = self._field_tracking(connector, [s for s in syncs if s.connection == connection.name])
        return ConnectionCheck(
            connection=connection.name,
            kind=connection.kind,
            source=source,
            objects=objects,
            limits=limits,
            api_calls=connector.api_calls,
            field_tracking=tracking,
        )

    @staticmethod
    def _field_tracking(connector: CrmConnector, syncs: list[SyncDefinition]) -> list[dict[str, Any]]:
        """Whether field history (Salesforce) or auditing (Dataverse) records each field a two-way sync
        maps; without it the record's last-modified time is all a run has (a possible, not certain, time)."""
        rows: list[dict[str, Any]] = []
        for sync in syncs:
            if not isinstance(sync, TwoWaySync) or not isinstance(connector, FieldHistoryConnector):
                continue
            mapped = sync.mapped()
            found = connector.field_tracking(sync.object, mapped.values())
            for local, remote in mapped.items():
                on = found.tracked.get(remote, False)
                rows.append(
                    {
                        "sync": sync.id,
                        "object": sync.object,
                        "field": remote,
                        "local": local,
                        "tracked": on,
                        "times_from": found.source if on else "record_timestamp",
                        "note": found.note,
                    }
                )
        return rows

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
        if isinstance(stored.sync, EventsSync):
            raise ConfigurationError(
                f"sync {sync_id!r} pushes e-mail events as they arrive; it has no runs "
                "(crmsync events send FILE, crmsync events backfill SYNC)"
            )
        operation = stored.sync.operation
        if period is not None and not registry.operation(operation).takes_period:
            raise ConfigurationError(
                f"sync {sync_id!r} is an {operation}; a period is given to deletion imports only"
            )
        if population is not None and not registry.operation(operation).takes_population:
            raise ConfigurationError(
                f"sync {sync_id!r} is a deletion import: it takes a period (--from/--to), not ids or a population"
            )
        if period is not None and not _reads_periods(stored.sync, stored.connection.kind):
            raise ConfigurationError(
                f"sync {sync_id!r} finds deletions by {getattr(stored.sync, 'mode', '?')} on {stored.connection.kind}; "
                "a period (--from/--to) is given to period mode only (Salesforce getDeleted)"
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

    def transfer_sync(self, sync_id: str) -> str:
        """The initial_transfer sync `crmsync transfer SYNC` starts: SYNC itself, or the one applied transfer
        sync naming the import sync SYNC."""
        sync = self.container.definitions.sync(sync_id).sync
        if isinstance(sync, InitialTransferSync):
            return sync_id
        if not isinstance(sync, ImportSync):
            raise ConfigurationError(f"sync {sync_id!r} is an {sync.operation}; a transfer loads an import sync")
        naming = self.container.definitions.transfers_of(sync_id)
        if len(naming) != 1:
            raise ConfigurationError(
                f"import sync {sync_id!r} has {'no' if not naming else len(naming)} initial_transfer sync"
                f"{'' if not naming else 's'} naming it ({', '.join(naming) or 'add one: docs/operations.md'}); "
                "give FILE for a first import from a file, or name the transfer sync"
            )
        return naming[0]

    def transfer(
        self, sync_id: str, location: str, *, fmt: str | None = None, check: bool | None = None
    ) -> TransferSummary:
        """A first import from a file (SPEC T2): a local path or `s3://bucket/key`, loaded here - with the
        operator's credentials, into the stack's tables - through the import's own load path, then the
        completeness check (`check`; by default on a first import only)."""
        match = S3_URI.match(location)
        opener: Callable[[], IO[bytes]]
        if match:
            s3 = self.aws.client("s3")
            bucket, key = match.group(1), match.group(2)

            def opener() -> IO[bytes]:
                body: IO[bytes] = s3.get_object(Bucket=bucket, Key=key)["Body"]
                return body

        else:
            path = Path(location)
            if not path.is_file():
                raise ConfigurationError(f"{location}: no such file")

            def opener() -> IO[bytes]:
                return path.open("rb")

        return transfer_file(
            self.container,
            sync_id,
            opener,
            source=location,
            fmt=file_format(location, fmt),
            run_id=execution_name(sync_id, "transfer"),
            check=check,
        )

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

    def verdict(self, run: StartedRun, *, timeout: float = 600, poll: float = 0.5) -> dict[str, Any] | None:
        """Wait for the start step's verdict: None once the run holds the sync's lease and is recorded as
        running; its summary when it already ended (a refused start ends it, status REFUSED)."""
        sfn = self.aws.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            execution = sfn.describe_execution(executionArn=run.execution_arn)
            if execution["status"] in TERMINAL:
                return self._summary(run, execution)
            holder = self.container.runs.lease_holder(run.sync_id)
            if holder is not None and holder.get("holder") == run.run_id and self.run_record(run) is not None:
                return None
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.run_id}: the start step gave no verdict in {timeout:.0f}s")
            time.sleep(poll)

    def run_record(self, run: StartedRun) -> dict[str, Any] | None:
        """The run's item in the ledger, once its start step recorded it."""
        for record in self.container.runs.recent(run.sync_id, limit=20):
            if record.get("runId") == run.run_id:
                return record
        return None

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
        self.container.definitions.sync(sync_id)  # an unknown sync is an error, not an empty history
        return self.container.runs.recent(sync_id, limit)

    # -- watermarks ------------------------------------------------------------------------------------
    def _option(self, sync_id: str) -> str:
        stored = self.container.definitions.sync(sync_id)
        return stored.sync.watermark_option(stored.instance)

    def watermark(self, sync_id: str) -> tuple[str, Watermark | None]:
        option = self._option(sync_id)
        return option, self.container.watermarks.get(option)

    def set_watermark(self, sync_id: str, text: str) -> Watermark:
        """Set the sync's watermark to `text` (ISO 8601 or yyyy/MM/dd hh:mm:ss, UTC). A time after the clock
        that the next window ends on (the CRM's for a sync that reads the CRM, this machine's for an export)
        is refused: every change until then would be skipped."""
        try:
            value = parse_moment(text)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        stored = self.container.definitions.sync(sync_id)
        if registry.operation(stored.sync.operation).window_clock == "marketing":
            now, clock = datetime.now(UTC), "this machine's clock"
        else:
            now, clock = self.container.connector(stored.connection).server_time(), "the CRM's clock"
        if value > now:
            raise ConfigurationError(
                f"{format_watermark(value)} is after {clock} ({format_watermark(now)}): every change until "
                "then would be skipped"
            )
        return self.container.watermarks.set(stored.sync.watermark_option(stored.instance), value)

    def reset_watermark(self, sync_id: str) -> str:
        option = self._option(sync_id)
        self.container.watermarks.delete(option)
        return option

    # -- rejects (services/rejects.py) --------------------------------------------------------------
    @property
    def reject_desk(self) -> RejectDesk:
        """The reject store and queues; the first use moves the rejects earlier versions kept in the queue."""
        if self._desk is None:
            sqs = self.aws.client("sqs")
            try:
                dead_letters = sqs.get_queue_url(QueueName=f"{self.names.rejects_queue}-dlq")["QueueUrl"]
            except ClientError:
                dead_letters = None
            self._desk = RejectDesk(
                self.container.reject_store, sqs, self.container.settings.rejects_queue_url, dead_letters
            )
            self._desk.migrate()
        return self._desk

    def rejects(
        self, sync_id: str, *, limit: int | None = 10_000, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The sync's rejects, oldest first, records included; reading consumes nothing."""
        self.container.definitions.sync(sync_id)  # an unknown sync is an error, not an empty list
        return self.reject_desk.store.rejects(sync_id, run_id=run_id, limit=limit)

    def count_rejects(self, sync_id: str) -> dict[str, int]:
        """How many rejects the sync has, by error symbol."""
        return dict(self.reject_desk.store.count(sync_id).most_common())

    def purge_rejects(self, sync_id: str, *, run_id: str | None = None, before: datetime | None = None) -> int:
        self.container.definitions.sync(sync_id)
        return self.reject_desk.store.purge(sync_id, run_id=run_id, before=before)

    def dead_letters(self, sync_id: str, *, redrive: bool = False) -> DeadLetters:
        return self.reject_desk.dead_letters(sync_id, redrive=redrive)

    def replay_rejects(self, sync_id: str, *, timeout: float = 3600, poll: float = 0.5) -> ReplayReport:
        """Send the sync's rejects through its operation again, after the data was fixed (see
        `services/rejects.py`): export again, read the CRM ids again, or retry the deletes; an events
        sync's rejected events go back through the events queue (no run to wait for)."""
        stored = self.container.definitions.sync(sync_id)
        definition = stored.sync
        if isinstance(definition, EventsSync):
            return self.reject_desk.replay_events(sync_id, self.events_queue_url)
        operation = definition.operation
        # CRM ids (imports, deletions) compare as the CRM writes them; an export's profile ids as they are.
        normalize_id = None
        if REPLAYABLE.get(operation) == "crmId":
            normalize_id = self.container.connector(stored.connection).normalize_id

        def run(sync: str, population: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            started = self.start(sync, population=population, trigger="replay")
            return started.run_id, self.wait(started, timeout=timeout, poll=poll)

        return self.reject_desk.replay(sync_id, operation, run, normalize_id=normalize_id)

    # -- consent ledger (SPEC O3) -----------------------------------------------------------------------
    def consent_history(self, profile_id: str) -> list[dict[str, Any]]:
        """Every opt-out change applied to one profile, from either side, oldest first."""
        return self.container.consent.history(profile_id)

    def consent_between(self, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
        """Every consent row whose change time is in [start, end)."""

        def text(moment: datetime | None) -> str | None:
            return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None

        return list(self.container.consent.between(text(start), text(end)))


def consent_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Consent ledger rows as CSV columns (an audit's export): the ledger's own fields, oldest first."""
    ordered = sorted(rows, key=lambda r: (str(r.get("changedAt", "")), str(r.get("profileId", ""))))
    return list(CONSENT_COLUMNS), [
        ["" if r.get(c) is None else str(r[c]) for c in CONSENT_COLUMNS] for r in ordered
    ]


def _reads_periods(sync: SyncDefinition, kind: str) -> bool:
    """Whether a deletion import reads the CRM's deleted-records list for a period (mode period, or auto on
    Salesforce, the CRM that has one)."""
    mode = getattr(sync, "mode", None)
    return mode == "period" or (mode == "auto" and crm_rules(kind).deleted_records_list)
