"""What every resumable batched run shares (export, deletion in the CRM - SPEC E4, D3): its population
as a snapshot in S3 parts, a manifest the state machine's Map reads, the batch ledger planned before any
batch is claimed, and the ledger added up at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import ConfigurationError
from ..stores.batches import BatchLedger, BatchPlan, BatchStatus
from ..wiring import Container
from .runs import StartRunEvent

RunT = TypeVar("RunT", bound=BaseModel)


def resumed_run(
    container: Container,
    model: type[RunT],
    event: StartRunEvent,
    *,
    operation: str,
    started_at: str,
    max_concurrency: int,
    population_given: bool,
) -> RunT | None:
    """The sync's unfinished run of `operation`, taken over by this execution - same snapshot, same
    batches, done ones skipped - or None. A new population is refused while one is unfinished."""
    unfinished = container.batches.unfinished(event.sync_id, operation)
    if unfinished is None:
        return None
    ledger_run = str(unfinished["ledger_run"])
    if ledger_run != event.run_id and population_given:
        raise ConfigurationError(
            f"sync {event.sync_id!r} has an unfinished {operation} run ({ledger_run}); run the sync without a "
            "population first: it resumes that run and sends nothing twice"
        )
    return model.model_validate(unfinished).model_copy(
        update={
            "run_id": event.run_id,
            "started_at": started_at,
            "trigger": event.trigger,
            "resumed_from": None if ledger_run == event.run_id else ledger_run,
            "max_concurrency": max_concurrency,
        }
    )


class LedgerJournal:
    """The writer port's journal kept in a batch's ledger entry: the bulk job (if any) a write of the
    batch started, under `slot`, found again by the next attempt."""

    def __init__(
        self, ledger: BatchLedger, sync_id: str, ledger_run: str, number: int, slot: str, job_id: str | None
    ) -> None:
        self.ledger, self.sync_id, self.ledger_run = ledger, sync_id, ledger_run
        self.number, self.slot, self.job_id = number, slot, job_id

    def record_job(self, job_id: str | None) -> None:
        self.ledger.record_job(self.sync_id, self.ledger_run, self.number, self.slot, job_id)
        self.job_id = job_id


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
    body = container.aws.client("s3").get_object(Bucket=container.settings.data_bucket, Key=key)["Body"].read()
    rows: list[dict[str, Any]] = json.loads(body)
    return rows


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


__all__ = ["LedgerJournal", "ledger_counts", "plan_batches", "read_part", "resumed_run", "write_snapshot"]
