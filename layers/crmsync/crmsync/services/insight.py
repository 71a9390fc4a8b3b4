"""What an operator reads about syncs and runs: `crmsync status` (every sync at a glance), `runs show`
(one run in detail, with the time each step took) and `crmsync logs` (a run's log lines).

Everything is read from the stack: the applied definitions, the run ledger, the watermarks, the rejects
queue, Step Functions' execution history, and the functions' logs (CloudWatch Logs on AWS; the file that
`crmsync local up` names in CRMSYNC_LOCAL_LOG on the local stack).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..domain.conversions import parse_stored_time
from ..domain.schedules import next_run, rate_interval
from ..errors import ConfigurationError
from .operations import Operator

LOCAL_LOG_VARIABLE = "CRMSYNC_LOCAL_LOG"


class RunNotFound(ConfigurationError):
    """No run with that id (or more than one ending with it)."""


def run_seconds(record: dict[str, Any], now: datetime | None = None) -> float | None:
    """How long the run took (or has taken so far, while it runs)."""
    started = parse_stored_time(record.get("startedAt"))
    if started is None:
        return None
    ended = parse_stored_time(record.get("endedAt")) or (now or datetime.now(UTC))
    return max(0.0, (ended - started).total_seconds())


@dataclass
class SyncStatus:
    """One row of `crmsync status --json`."""

    sync_id: str
    operation: str
    connection: str
    crm: str
    object: str
    enabled: bool
    schedule: str | None
    schedule_timezone: str
    next_run: str | None
    last_run: dict[str, Any] | None
    watermark: dict[str, Any] | None
    rejects_waiting: int
    running: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def last_run_summary(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    result = record.get("result") if isinstance(record.get("result"), dict) else {}
    assert isinstance(result, dict)
    counts = {
        k: result[k]
        for k in ("read", "selected", "created", "updated", "unchanged", "rejected", "deleted", "api_calls")
        if isinstance(result.get(k), int)
    }
    error = result.get("error") if isinstance(result.get("error"), dict) else None
    return {
        "run_id": record.get("runId"),
        "status": record.get("status"),
        "trigger": record.get("trigger"),
        "started_at": record.get("startedAt"),
        "ended_at": record.get("endedAt"),
        "duration_seconds": run_seconds(record, now),
        "counts": counts,
        "error": error,
    }


def sync_statuses(op: Operator, *, now: datetime | None = None) -> list[SyncStatus]:
    """Every applied sync: what it is, when it runs next, how its last run went, its watermark, rejects
    waiting and, while a run holds its lease, which one."""
    now = now or datetime.now(UTC)
    container = op.container
    statuses: list[SyncStatus] = []
    for listed in container.definitions.list_syncs():
        stored = container.definitions.sync(listed["id"])
        sync = stored.sync
        recent = container.runs.recent(sync.id, 1)
        last = last_run_summary(recent[0], now) if recent else None
        # Every operation with runs has a watermark; e-mail events (pushed as they arrive) have neither.
        option = sync.watermark_option(stored.instance) if hasattr(sync, "watermark_option") else None
        mark = container.watermarks.get(option) if option else None
        watermark = None
        if mark is not None:
            watermark = {
                "option": option,
                "value": mark.text,
                "age_seconds": max(0.0, (now - mark.value).total_seconds()),
                "updated_at": mark.updated_at,
            }
        holder = container.runs.lease_holder(sync.id)
        running = None
        if holder is not None and int(holder.get("expiresAt", 0)) > now.timestamp():
            running = {"run_id": holder.get("holder"), "since": holder.get("acquiredAt")}
        upcoming = None
        if sync.schedule and sync.enabled:
            at = next_run(sync.schedule, now, sync.schedule_timezone)
            interval = rate_interval(sync.schedule)
            if at is None and interval is not None and last and parse_stored_time(last["started_at"]):
                started = parse_stored_time(last["started_at"])
                assert started is not None
                at = started + interval
                while at <= now:
                    at += interval
            upcoming = at.isoformat(timespec="seconds") if at else None
        statuses.append(
            SyncStatus(
                sync_id=sync.id,
                operation=sync.operation,
                connection=stored.connection.name,
                crm=stored.connection.kind,
                object=sync.object,
                enabled=sync.enabled,
                schedule=sync.schedule,
                schedule_timezone=sync.schedule_timezone,
                next_run=upcoming,
                last_run=last,
                watermark=watermark,
                rejects_waiting=sum(op.count_rejects(sync.id).values()),
                running=running,
            )
        )
    return statuses


def find_run(op: Operator, run_id: str) -> dict[str, Any]:
    """The ledger item of a run, by its full id or a unique ending of it (the short id `runs` prints)."""
    text = run_id.strip()
    if len(text) < 4:
        raise RunNotFound(f"run id {run_id!r} is too short; give at least its last 4 characters")
    container = op.container
    found: dict[str, dict[str, Any]] = {}
    for listed in container.definitions.list_syncs():
        for record in container.runs.matching(listed["id"], text):
            found[str(record.get("runId"))] = record
    if not found:
        raise RunNotFound(f"no run {run_id!r} in stack {op.names.stack} (crmsync runs SYNC lists them)")
    if len(found) > 1:
        raise RunNotFound(f"{len(found)} runs end with {run_id!r}: {', '.join(sorted(found))}; give more of it")
    return next(iter(found.values()))


@dataclass(frozen=True)
class StepTime:
    """The time a state of the run's state machine took, over every time it was entered."""

    state: str
    entered: int
    seconds: float


def step_times(op: Operator, record: dict[str, Any]) -> list[StepTime]:
    """Per state of the execution, in the order first entered: how often and how long (Step Functions'
    execution history; a Map's batches count in the Map state's own time)."""
    sfn = op.aws.client("stepfunctions")
    arn = op.names.execution_arn(str(record.get("operation", "import")), str(record.get("runId")))
    open_states: dict[str, datetime] = {}
    totals: dict[str, list[float]] = {}
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        try:
            page = sfn.get_execution_history(**kwargs)
        except sfn.exceptions.ExecutionDoesNotExist:
            return []
        for event in page.get("events", []):
            kind = str(event.get("type", ""))
            stamp = event.get("timestamp")
            if not isinstance(stamp, datetime):
                continue
            if kind.endswith("StateEntered"):
                name = str(event.get("stateEnteredEventDetails", {}).get("name", ""))
                open_states[name] = stamp
                totals.setdefault(name, [0, 0.0])
                totals[name][0] += 1
            elif kind.endswith("StateExited"):
                name = str(event.get("stateExitedEventDetails", {}).get("name", ""))
                if name in open_states:
                    totals[name][1] += (stamp - open_states.pop(name)).total_seconds()
        token = page.get("nextToken")
        if not token:
            break
        kwargs["nextToken"] = token
    return [StepTime(name, int(entered), round(seconds, 3)) for name, (entered, seconds) in totals.items()]


def log_group_prefixes(op: Operator) -> tuple[str, ...]:
    """The functions' log groups: the template's own (`/crmsync/<stack>/<function>`, with their retention),
    and Lambda's default names, which stacks deployed before those were declared wrote to."""
    return (f"/crmsync/{op.names.stack}/", f"/aws/lambda/{op.names.stack}-")


def log_location(op: Operator) -> str:
    local = os.environ.get(LOCAL_LOG_VARIABLE)
    if local:
        return f"{local} (the local stack's log file)"
    groups = ", ".join(f"{prefix}*" for prefix in log_group_prefixes(op))
    return f"CloudWatch Logs, log groups {groups} (crmsync logs RUN_ID)"


def run_logs(op: Operator, record: dict[str, Any], *, now: datetime | None = None) -> Iterator[str]:
    """The log lines that carry the run's id, oldest first: from the local stack's log file when
    CRMSYNC_LOCAL_LOG names one, else from every function log group of the stack (`log_group_prefixes`),
    over the run's time."""
    run_id = str(record.get("runId"))
    local = os.environ.get(LOCAL_LOG_VARIABLE)
    if local:
        path = Path(local)
        if not path.is_file():
            raise ConfigurationError(
                f"{LOCAL_LOG_VARIABLE}={local}: no such file (is `crmsync local up` running?)"
            )
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if run_id in line:
                    yield line.rstrip("\n")
        return
    started = parse_stored_time(record.get("startedAt")) or (now or datetime.now(UTC)) - timedelta(days=1)
    ended = parse_stored_time(record.get("endedAt")) or (now or datetime.now(UTC))
    logs = op.aws.client("logs")
    groups: list[str] = []
    for prefix in log_group_prefixes(op):
        kwargs: dict[str, Any] = {"logGroupNamePrefix": prefix}
        while True:
            page = logs.describe_log_groups(**kwargs)
            groups += [g["logGroupName"] for g in page.get("logGroups", [])]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    events: list[tuple[int, str, str]] = []
    for group in groups:
        request: dict[str, Any] = {
            "logGroupName": group,
            "filterPattern": json.dumps(run_id),
            "startTime": int((started - timedelta(minutes=1)).timestamp() * 1000),
            "endTime": int((ended + timedelta(minutes=1)).timestamp() * 1000),
        }
        while True:
            page = logs.filter_log_events(**request)
            events += [(e["timestamp"], group, e["message"].rstrip("\n")) for e in page.get("events", [])]
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
            time.sleep(0.2)  # FilterLogEvents allows a few calls a second per account
    for stamp, group, message in sorted(events):
        moment = datetime.fromtimestamp(stamp / 1000, UTC).isoformat(timespec="milliseconds")
        yield f"{moment} [{group.rsplit('/', 1)[-1]}] {message}"
