"""Deletion of records in the CRM, one use case per step of the `delete` state machine: start, one
batch, finish (SPEC D3, R1). A batched run (`batched_runs.BatchedOperation`); this module gives its hooks.

The population is the CRM ids given (a list, or a file in the data bucket), or - without one - the
records linked to the profiles flagged for deletion (the sync's `flag` attribute) since the last run.
It is snapshotted to S3 and split into batches recorded in the batch ledger, like an export, so a run
that stops half-way is resumed by the next one without sending a done batch again. Re-sending a batch
whose outcome is unknown is harmless: a record the CRM no longer has comes back as already gone
(Salesforce `ENTITY_IS_DELETED`, Dataverse 404), counted apart from deletions, never as a reject. Each
deletion is applied on the marketing side too, as the deletion import would (SPEC D2).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import Field

from ..config import CrmDeleteSync
from ..connectors.port import CrmConnector, CrmWriter, ObjectDescription, RecordWrite, WriteJournal, WriteRequest
from ..domain.records import CrmDeletion, Reject, RejectCode
from ..domain.windows import ImportWindow
from ..errors import ConfigurationError
from ..inputs import decode_text
from ..stores.batches import BatchEntry
from ..stores.profiles import link_name
from ..wiring import Container
from . import batched_runs as batched
from .local_deletions import LocalTarget, apply_deletions
from .runs import S3_URI, Counts, PopulationSource

logger = logging.getLogger(__name__)

OPERATION = "delete"
PROFILE_READ_CHUNK = 500


# ------------------------------------------------------------------------------------- payloads
class DeletePopulation(PopulationSource):
    """CRM ids to delete: inline, or an S3 file in the data bucket's `populations/` (one id per line, or
    a CSV whose first column is the id)."""


class StartDeleteEvent(batched.StartEvent):
    population: DeletePopulation | None = None


class DeleteTotals(Counts):
    selected: int = 0
    deleted: int = 0
    already_gone: int = 0
    rejected: int = 0
    api_calls: int = 0
    batches: int = 0


class DeleteRun(batched.ObjectRun):
    """The run context every step carries (`batched.ObjectRun`: the run, and what a batch needs of the
    object), with how its population was given."""

    mode: Literal["flagged", "ids", "file"]


class DeleteState(batched.BatchedState[DeleteRun, DeleteTotals]):
    totals: DeleteTotals = Field(default_factory=DeleteTotals)


class DeleteBatchEvent(batched.BatchEvent[DeleteRun]):
    pass


class DeleteSummary(batched.BatchedSummary, DeleteTotals):
    """The result of a deletion run, as `crmsync run --wait --json` prints it."""


# ------------------------------------------------------------------------------------- hooks
@dataclass(frozen=True)
class DeletePlan:
    """What a start step learnt: the object, and the CRM's rules for its ids and its deletions."""

    description: ObjectDescription
    crm: CrmConnector


class CrmDelete(
    batched.BatchedOperation[
        CrmDeleteSync, DeletePlan, DeleteRun, DeleteTotals, DeleteState, DeleteBatchEvent, DeleteSummary
    ]
):
    operation = OPERATION
    noun = "deletion"
    machine = "delete"
    runs = "deletions in the CRM"
    identity_field = "crmId"
    sync_model = CrmDeleteSync
    run_model = DeleteRun
    totals_model = DeleteTotals
    state_model = DeleteState
    summary_model = DeleteSummary

    def prepare(
        self, sync: CrmDeleteSync, connection: batched.Connection, connector: CrmConnector
    ) -> tuple[DeletePlan, batched.RunSettings]:
        description = connector.describe(sync.object)
        return DeletePlan(description, connector), batched.RunSettings.of_object(sync, connection, description)

    def mode(self, population: PopulationSource | None) -> str:
        return "flagged" if population is None else "ids" if population.ids is not None else "file"

    def changed(
        self,
        container: Container,
        run: DeleteRun,
        sync: CrmDeleteSync,
        plan: DeletePlan,
        window: ImportWindow,
        until: datetime,
    ) -> Iterator[dict[str, Any]]:
        since = window.start.isoformat(timespec="seconds") if window.start else None
        return _flagged(container, run, sync.flag, since, until.isoformat())

    def given(
        self,
        container: Container,
        run: DeleteRun,
        plan: DeletePlan,
        population: PopulationSource,
        rejects: list[Reject],
    ) -> Iterator[dict[str, Any]]:
        """The given ids; an id of another object is refused: Salesforce deletes whatever id it is sent,
        of any object."""
        crm, key_prefix = plan.crm, plan.description.key_prefix
        for value in _given_ids(container, population):
            crm_id = crm.normalize_id(value)
            if not crm.is_record_id(crm_id):
                rejects.append(
                    Reject(RejectCode.INVALID_ID, f"{value!r} is not a {crm.kind} record id", {"crmId": value})
                )
            elif not crm.id_of_object(crm_id, plan.description):
                starts = f" ({run.object} ids start {key_prefix})" if key_prefix else ""
                rejects.append(
                    Reject(
                        RejectCode.INVALID_ID,
                        f"{value!r} is not a {run.object} id{starts}; not deleted",
                        {"crmId": value},
                    )
                )
            else:
                yield {"crmId": crm_id}

    def api(
        self, sync: CrmDeleteSync, plan: DeletePlan, run: DeleteRun
    ) -> tuple[Literal["collections", "bulk"], int]:
        bulk = run.records >= sync.bulk_threshold and plan.crm.bulk_deletes
        return ("bulk" if bulk else "collections"), 1

    def send(
        self,
        container: Container,
        event: DeleteBatchEvent,
        claim: BatchEntry,
        rows: list[dict[str, Any]],
        writer: CrmWriter,
        journal: Callable[[str], WriteJournal],
    ) -> batched.BatchResult:
        """Delete the batch's records in the CRM (a record already gone counts apart, never as a reject),
        then apply the deletions locally."""
        run = event.run
        profile_of = {row["crmId"]: row.get("profileId") for row in rows}
        request = WriteRequest(
            object=run.object,
            kind="delete",
            records=tuple(RecordWrite(ref=row["crmId"], fields={run.id_field: row["crmId"]}) for row in rows),
            key_field=run.id_field,
            bulk=claim.api == "bulk",
        )
        results = batched.send_again_unanswered(writer, request, journal("delete"))
        counts = {"deleted": 0, "already_gone": 0, "rejected": 0, "selected": len(rows)}
        rejects: list[Reject] = []
        outcomes: list[dict[str, Any]] = []
        removed: list[CrmDeletion] = []
        now = datetime.now(UTC)
        for result in results:
            if result.gone or result.success:
                counts["already_gone" if result.gone else "deleted"] += 1
                removed.append(CrmDeletion(result.ref, now))
                outcomes.append({"crmId": result.ref, "status": "already_gone" if result.gone else "deleted"})
                continue
            counts["rejected"] += 1
            error = result.errors[0]
            rejects.append(
                Reject(
                    error.code,
                    "; ".join(e.message for e in result.errors),
                    {"crmId": result.ref, "profileId": profile_of.get(result.ref)},
                    crm_id=result.ref,
                    fields=error.fields,
                    profile_id=profile_of.get(result.ref),
                )
            )
            outcomes.append({"crmId": result.ref, "status": "rejected", "error": error.code})
        apply_deletions(container, LocalTarget(run.connection, run.object), removed, run_id=run.run_id)
        return batched.BatchResult(outcomes, counts, rejects, run.route_rejects)


CRM_DELETE = CrmDelete()
start_delete = CRM_DELETE.start
delete_batch = CRM_DELETE.batch
finish_delete = CRM_DELETE.finish


# ------------------------------------------------------------------------------------- population
def _given_ids(container: Container, population: PopulationSource) -> list[str]:
    if population.ids is not None:
        return population.ids
    match = S3_URI.match(population.s3_uri or "")
    assert match is not None
    if match.group(1) != container.settings.data_bucket or not match.group(2).startswith("populations/"):
        raise ConfigurationError(
            f"id files are read from s3://{container.settings.data_bucket}/populations/ only "
            f"(the functions may read nothing else); got {population.s3_uri}"
        )
    body = container.aws.client("s3").get_object(Bucket=match.group(1), Key=match.group(2))["Body"].read()
    rows = csv.reader(io.StringIO(decode_text(body, population.s3_uri or "")))
    ids = [row[0].strip() for row in rows if row and row[0].strip()]
    return [i for i in ids if i.lower() not in ("id", "crmid", "externalid")]


def _flagged_value(value: Any) -> bool:
    """A flag set by a form, a CSV or an API: true, "true", "yes", "1" or 1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return value is True or value == 1


def _flagged(
    container: Container, run: DeleteRun, flag: str, since: str | None, until: str
) -> Iterator[dict[str, Any]]:
    """The CRM records linked to profiles flagged for deletion since the last run (not deleted already)."""
    link = link_name(run.connection, run.object)
    profiles = container.profiles
    for ids in profiles.changed_profile_ids(since, until):
        for start in range(0, len(ids), PROFILE_READ_CHUNK):
            for item in profiles.get_many(ids[start : start + PROFILE_READ_CHUNK]):
                crm_id = (item.get("externalIds") or {}).get(link)
                if crm_id and _flagged_value((item.get("attrs") or {}).get(flag)) and not item.get("deletedInCrm"):
                    yield {"crmId": crm_id, "profileId": item["profileId"]}


__all__ = [
    "CRM_DELETE",
    "DeleteBatchEvent",
    "DeletePopulation",
    "DeleteState",
    "DeleteSummary",
    "StartDeleteEvent",
    "delete_batch",
    "finish_delete",
    "start_delete",
]
