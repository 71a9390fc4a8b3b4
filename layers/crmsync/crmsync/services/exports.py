"""Export use cases, one per state-machine step: start, one batch, finish (SPEC E1-E6, R1, R2, N3).

The export is a batched run (`batched_runs.BatchedOperation`): the frame takes the lease, snapshots the
population, plans the batch ledger, claims and completes each batch and adds the ledger up at the end.
This module supplies the export's hooks: its population - the profiles changed since this sync's own
watermark, given profile ids, or an S3 file of records - and how one batch is exported (`BatchExporter`:
routing, upserts, the journal of bulk jobs) with the CRM ids it created written back to the profiles.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ..config import ExportSync
from ..connectors.port import CrmConnector, CrmWriter, WriteJournal
from ..domain.conversions import parse_crm_datetime
from ..domain.records import Reject, RejectCode
from ..domain.windows import ImportWindow
from ..errors import ConfigurationError
from ..inputs import text_lines
from ..stores.batches import BatchEntry
from ..stores.profiles import link_name
from ..wiring import Container
from . import batched_runs as batched
from .enumerations import through_enumerations
from .export_batch import BatchExporter, SnapshotRecord
from .export_plan import ExportPlan, resolve_export_plan
from .runs import S3_URI, Counts, PopulationSource

logger = logging.getLogger(__name__)

OPERATION = "export"
PROFILE_READ_CHUNK = 500


# ------------------------------------------------------------------------------------- payloads
class ExportPopulation(PopulationSource):
    """Instead of the changes since the watermark: these marketing profile ids, or an S3 file of records
    (CSV with a header or JSON lines, local attribute names as columns, and a profileId column)."""


class StartExportEvent(batched.StartEvent):
    population: ExportPopulation | None = None


class ExportTotals(Counts):
    selected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    owners_unmatched: int = 0
    api_calls: int = 0
    batches: int = 0


class ExportRun(batched.BatchedRun):
    """The run context every step carries (`batched.BatchedRun`), with how its population was given."""

    mode: Literal["changes", "profiles", "records"]


class ExportState(batched.BatchedState[ExportRun, ExportTotals]):
    """The state the export state machine carries between steps."""

    plan: dict[str, Any]
    totals: ExportTotals = Field(default_factory=ExportTotals)


class ExportBatchEvent(batched.BatchEvent[ExportRun]):
    """One item of the Map over the manifest: the run, the plan, and which batch."""

    plan: dict[str, Any]


class ExportSummary(batched.BatchedSummary, ExportTotals):
    """The result of an export run, as `crmsync run --wait --json` prints it."""


# ------------------------------------------------------------------------------------- hooks
class Export(
    batched.BatchedOperation[
        ExportSync, ExportPlan, ExportRun, ExportTotals, ExportState, ExportBatchEvent, ExportSummary
    ]
):
    operation = OPERATION
    noun = "export"
    machine = "export"
    runs = "exports"
    identity_field = "profileId"
    sync_model = ExportSync
    run_model = ExportRun
    totals_model = ExportTotals
    state_model = ExportState
    summary_model = ExportSummary

    def prepare(
        self, sync: ExportSync, connection: batched.Connection, connector: CrmConnector
    ) -> tuple[ExportPlan, batched.RunSettings]:
        plan = resolve_export_plan(sync, connector.describe, connection.kind)
        return plan, batched.RunSettings(
            object=plan.primary.object,
            max_concurrency=plan.max_concurrency,
            part_size=plan.batch_size,
            route_rejects=plan.route_rejects,
        )

    def resolved(self, plan: ExportPlan, container: Container) -> ExportPlan:
        """Fields converted through an enumeration get its values and labels (SPEC S2), read once here."""
        return dataclasses.replace(
            plan,
            primary=dataclasses.replace(
                plan.primary, fields=through_enumerations(plan.primary.fields, container, "export")
            ),
            contact=None
            if plan.contact is None
            else dataclasses.replace(
                plan.contact, fields=through_enumerations(plan.contact.fields, container, "export")
            ),
        )

    def mode(self, population: PopulationSource | None) -> str:
        return "changes" if population is None else "profiles" if population.ids is not None else "records"

    def changed(
        self,
        container: Container,
        run: ExportRun,
        sync: ExportSync,
        plan: ExportPlan,
        window: ImportWindow,
        until: datetime,
    ) -> Iterator[dict[str, Any]]:
        return (r.to_json() for r in _changed_profiles(container, plan, sync.id, window, until=until))

    def given(
        self,
        container: Container,
        run: ExportRun,
        plan: ExportPlan,
        population: PopulationSource,
        rejects: list[Reject],
    ) -> Iterator[dict[str, Any]]:
        if population.ids is not None:
            records = _given_profiles(container, plan, population.ids, rejects)
        else:
            records = _file_records(container, plan, population.s3_uri or "", rejects)
        return (r.to_json() for r in records)

    def api(
        self, sync: ExportSync, plan: ExportPlan, run: ExportRun
    ) -> tuple[Literal["collections", "bulk"], int]:
        if plan.bulk_api and run.records >= plan.bulk_threshold:
            return "bulk", max(1, plan.bulk_batch_size // plan.batch_size)
        return "collections", 1

    def state_fields(self, plan: ExportPlan) -> dict[str, Any]:
        return {"plan": plan.to_state()}

    def send(
        self,
        container: Container,
        event: ExportBatchEvent,
        claim: BatchEntry,
        rows: list[dict[str, Any]],
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
    ) -> batched.BatchResult:
        """Export the batch, then write the CRM ids it created back to the profiles."""
        plan = ExportPlan.from_state(event.plan)
        records = [SnapshotRecord.from_json(row) for row in rows]
        result = BatchExporter(
            plan, writer, journal, bulk=claim.api == "bulk", interrupted=claim.interrupted
        ).export(records)
        linked = container.profiles.record_exported(event.run.sync_id, result.exported)
        for conflict in linked.conflicts:
            logger.warning(
                "a CRM record is already linked to another profile; not linked again",
                extra={"crm_id": conflict.crm_id, "profile_id": conflict.profile_id, "object": conflict.object},
            )
        return batched.BatchResult(result.outcomes, result.counts(), result.rejects, plan.route_rejects)


EXPORT = Export()
start_export = EXPORT.start
export_batch = EXPORT.batch
finish_export = EXPORT.finish


# ------------------------------------------------------------------------------------- population
def _snapshot(item: dict[str, Any], plan: ExportPlan) -> SnapshotRecord:
    attrs = item.get("attrs") or {}
    links = item.get("externalIds") or {}
    names = {link_name(plan.connection, t.object) for t in plan.targets}
    return SnapshotRecord(
        profile_id=item["profileId"],
        attributes={k: v for k, v in attrs.items() if k in plan.local_attributes},
        links={k: v for k, v in links.items() if k in names},
        version=item.get("version"),
    )


def _due(item: dict[str, Any], plan: ExportPlan, sync_id: str, since: datetime | None) -> bool:
    """A profile is due when an attribute the export reads changed since `since` and since this sync
    last exported it, unless the change came from this very connection's import: a value the sync wrote
    never echoes back (SPEC O3)."""
    if item.get(f"exportedVersion:{sync_id}") == item.get("version"):
        return False
    own = f"crm:{plan.connection}"
    attrs = item.get("attrs") or {}
    sources = item.get("attrSource") or {}
    changed = item.get("attrChangedAt") or {}
    for name in plan.local_attributes:
        if name not in attrs or sources.get(name) == own:
            continue
        if since is None:
            return True
        try:
            if parse_crm_datetime(str(changed.get(name))) >= since:
                return True
        except ValueError:
            return True
    return False


def _changed_profiles(
    container: Container, plan: ExportPlan, sync_id: str, window: ImportWindow, *, until: datetime
) -> Iterator[SnapshotRecord]:
    """Due profiles changed from the window's start up to `until`, to the microsecond: the watermark
    keeps whole seconds (the window's end), so the next run's overlap covers the second in between."""
    since = window.start.isoformat(timespec="seconds") if window.start else None
    profiles = container.profiles
    for ids in profiles.changed_profile_ids(since, until.isoformat()):
        for item in profiles.get_many(ids):
            if _due(item, plan, sync_id, window.start):
                yield _snapshot(item, plan)


def _given_profiles(
    container: Container, plan: ExportPlan, ids: list[str], rejects: list[Reject]
) -> Iterator[SnapshotRecord]:
    unique = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    for start in range(0, len(unique), PROFILE_READ_CHUNK):
        chunk = unique[start : start + PROFILE_READ_CHUNK]
        found = {item["profileId"]: item for item in container.profiles.get_many(chunk)}
        for profile_id in chunk:
            if profile_id in found:
                yield _snapshot(found[profile_id], plan)
            else:
                rejects.append(
                    Reject(
                        RejectCode.NOT_FOUND,
                        f"no marketing profile {profile_id}",
                        {"profileId": profile_id},
                        profile_id=profile_id,
                    )
                )


def _file_rows(body: Any, key: str) -> Iterator[dict[str, Any]]:
    reader = text_lines(body, key)
    if key.endswith(".csv"):
        yield from csv.DictReader(reader)
    elif key.endswith((".jsonl", ".ndjson", ".json")):
        for number, line in enumerate(reader, start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    raise ConfigurationError(
                        f"{key}:{number}: not a JSON object on one line (JSON lines)"
                    ) from None
                if not isinstance(row, dict):
                    raise ConfigurationError(f"{key}:{number}: each line must be a JSON object")
                yield row
    else:
        raise ConfigurationError(f"{key}: a file of records is .csv (with a header) or .jsonl (JSON lines)")


EXPORT_FILE_PREFIXES = ("inbox/", "populations/")


def _file_records(
    container: Container, plan: ExportPlan, uri: str, rejects: list[Reject]
) -> Iterator[SnapshotRecord]:
    """Records given in a file: their values as given, their CRM links from the profile store."""
    match = S3_URI.match(uri)
    assert match is not None
    bucket = container.settings.data_bucket
    if match.group(1) != bucket or not match.group(2).startswith(EXPORT_FILE_PREFIXES):
        raise ConfigurationError(
            f"files of records are read from s3://{bucket}/inbox/ or populations/ only (the functions may read "
            f"nothing else, and both prefixes expire); got {uri}"
        )
    body = container.aws.client("s3").get_object(Bucket=match.group(1), Key=match.group(2))["Body"]
    pending: list[dict[str, Any]] = []

    def flush() -> Iterator[SnapshotRecord]:
        ids = [str(row["profileId"]) for row in pending]
        stored = {item["profileId"]: item for item in container.profiles.get_many(ids)}
        for row in pending:
            profile_id = str(row["profileId"])
            links = _snapshot(stored[profile_id], plan).links if profile_id in stored else {}
            attributes = {k: v for k, v in row.items() if k in plan.local_attributes and v not in (None, "")}
            yield SnapshotRecord(profile_id, attributes, links)
        pending.clear()

    for row in _file_rows(body, match.group(2)):
        if not str(row.get("profileId") or "").strip():
            rejects.append(
                Reject(RejectCode.MISSING_ID, "the record has no profileId", dict(row), fields=("profileId",))
            )
            continue
        pending.append(row)
        if len(pending) == PROFILE_READ_CHUNK:
            yield from flush()
    yield from flush()


__all__ = [
    "EXPORT",
    "ExportBatchEvent",
    "ExportPopulation",
    "ExportState",
    "ExportSummary",
    "StartExportEvent",
    "export_batch",
    "finish_export",
    "start_export",
]
