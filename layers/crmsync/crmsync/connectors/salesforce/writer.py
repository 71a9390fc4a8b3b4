"""Salesforce adapter of the writer port: sObject Collections (200 records a call, `allOrNone=false`),
or one Bulk API 2.0 ingest job when the request asks for the bulk API (SPEC E2, D3).

A delete of a record Salesforce no longer has (in the recycle bin, purged, never there) is `gone`, not
refused, so sending a delete again after an unknown outcome is harmless.

A bulk job's id is kept in the caller's journal before any data is sent; an attempt that finds one
there picks the job up again instead of sending the records twice: an Open job (data not complete,
nothing applied) is aborted and replaced, a closed one is waited for and its results read.
"""

from __future__ import annotations

import logging

from ...errors import CrmOutcomeUnknown, CrmRequestRejected
from ..base import ConnectorWriter
from ..port import RecordWrite, WriteError, WriteJournal, WriteRequest, WriteResult
from .bulk2 import BulkApi2, IngestResults, encode_csv, parse_bulk_error
from .collections import MAX_RECORDS, SaveResult
from .connector import SalesforceConnector

logger = logging.getLogger(__name__)

BULK_BUDGET_SECONDS = 600.0
GONE_CODES = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
"""What Salesforce answers a delete of a record in the recycle bin, or of an id it does not know."""


class SalesforceWriter(ConnectorWriter[SalesforceConnector]):
    kind = "salesforce"

    def __init__(
        self,
        connector: SalesforceConnector,
        *,
        bulk: BulkApi2 | None = None,
        bulk_budget_seconds: float = BULK_BUDGET_SECONDS,
    ) -> None:
        super().__init__(connector)
        self.bulk = bulk or connector.bulk
        self.bulk_budget_seconds = bulk_budget_seconds

    def write(self, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]:
        if not request.records:
            return []
        if request.kind == "delete":
            for record in request.records:
                _delete_id(record, request)  # refuse a record without its id before anything is sent
        if request.bulk or journal.job_id is not None:
            return self._bulk(request, journal)
        return self._collections(request)

    # -- sObject Collections ---------------------------------------------------------------------------
    def _collections(self, request: WriteRequest) -> list[WriteResult]:
        collections = self.connector.collections
        results: list[WriteResult] = []
        records = request.records
        for start in range(0, len(records), MAX_RECORDS):
            chunk = records[start : start + MAX_RECORDS]
            bodies = [dict(r.fields) for r in chunk]
            try:
                if request.kind == "delete":
                    saved = collections.delete([_delete_id(record, request) for record in chunk])
                elif request.kind == "insert":
                    saved = collections.create(request.object, bodies)
                elif request.kind == "update":
                    saved = collections.update(request.object, bodies)
                else:  # upsert, and insert_once: an upsert by the external id is safe to send again
                    assert request.key_field is not None
                    saved = collections.upsert(request.object, request.key_field, bodies)
            except CrmOutcomeUnknown as unknown:
                raise CrmOutcomeUnknown(str(unknown), completed=tuple(results)) from None
            results += [_result(record, save, request) for record, save in zip(chunk, saved, strict=True)]
        return results

    # -- Bulk API 2.0 ------------------------------------------------------------------------------------
    def _bulk(self, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]:
        job_id = journal.job_id
        if job_id is not None:
            job = self.bulk.job(job_id)
            if job.state == "Open":
                logger.info("bulk job %s was left open; aborting it and starting again", job_id)
                self.bulk.abort(job_id)
                journal.record_job(None)
            else:
                done = self.bulk.wait(job_id, budget_seconds=self.bulk_budget_seconds)
                return self._matched(request, self.bulk.results(done))
        if request.kind == "delete":
            columns = ["Id"]
            data = encode_csv(({"Id": _delete_id(r, request)} for r in request.records), columns)
        else:
            columns = list(dict.fromkeys(name for record in request.records for name in record.fields))
            data = encode_csv((r.fields for r in request.records), columns)
        operation = "upsert" if request.kind == "insert_once" else request.kind  # by the external id
        results = self.bulk.ingest(
            request.object,
            operation,
            data,
            external_id_field=request.key_field if operation == "upsert" else None,
            on_created=journal.record_job,
            budget_seconds=self.bulk_budget_seconds,
        )
        return self._matched(request, results)

    def _matched(self, request: WriteRequest, files: IngestResults) -> list[WriteResult]:
        """Results in the order of the request, matched on the key or correlation column."""
        if request.kind == "delete":
            column = "Id"
            by_value = {_delete_id(r, request): r for r in request.records}
        else:
            key = request.key_field if request.kind != "insert" else request.match_field
            if key is None:
                raise CrmRequestRejected("a bulk write needs a key or match column to match its results")
            column = key
            by_value = {str(r.fields.get(column)): r for r in request.records}
        found: dict[str, WriteResult] = {}
        for row in files.successful:
            record = by_value.get(row.get(column, ""))
            if record is not None:
                found[record.ref] = WriteResult(
                    ref=record.ref,
                    crm_id=row.get("sf__Id") or None,
                    created=row.get("sf__Created", "").lower() == "true",
                )
        for row in files.failed:
            record = by_value.get(row.get(column, ""))
            if record is not None:
                code, message, fields = parse_bulk_error(row.get("sf__Error", ""))
                if request.kind == "delete" and code in GONE_CODES:
                    found[record.ref] = WriteResult(
                        ref=record.ref, crm_id=_delete_id(record, request), created=False, gone=True
                    )
                    continue
                found[record.ref] = WriteResult(
                    ref=record.ref,
                    crm_id=row.get("sf__Id") or None,
                    created=False,
                    errors=(WriteError(code, message, fields),),
                )
        for row in files.unprocessed:
            record = by_value.get(row.get(column, ""))
            if record is not None:
                found[record.ref] = WriteResult(
                    ref=record.ref,
                    crm_id=None,
                    created=False,
                    errors=(
                        WriteError(
                            f"BULK_JOB_{files.job.state.upper()}",
                            files.job.error_message or f"bulk job {files.job.id} ended {files.job.state}",
                        ),
                    ),
                )
        results = [found[r.ref] for r in request.records if r.ref in found]
        if len(results) != len(request.records):
            raise CrmOutcomeUnknown(
                f"bulk job {files.job.id} reported {len(results)} of {len(request.records)} records",
                completed=tuple(results),
            )
        return results


def _delete_id(record: RecordWrite, request: WriteRequest) -> str:
    """The id a delete record carries under the request's key field (`Id`)."""
    value = record.fields.get(request.key_field or "Id")
    if not isinstance(value, str) or not value:
        raise CrmRequestRejected(f"record {record.ref!r} of a delete carries no {request.key_field or 'Id'}")
    return value


def _result(record: RecordWrite, save: SaveResult, request: WriteRequest) -> WriteResult:
    if request.kind == "delete":
        gone = not save.success and bool(save.errors) and {e.code for e in save.errors} <= GONE_CODES
        return WriteResult(
            ref=record.ref,
            crm_id=save.id or _delete_id(record, request),
            created=False,
            errors=() if gone else save.errors,
            gone=gone,
        )
    return WriteResult(
        ref=record.ref,
        crm_id=save.id,
        created=save.success and (request.kind == "insert" or save.created),
        errors=save.errors,
    )
