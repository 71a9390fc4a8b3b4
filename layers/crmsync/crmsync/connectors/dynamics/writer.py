"""Dataverse (Dynamics 365) adapter of the writer port: one Web API `$batch` per 1,000 records (SPEC E1,
E2, D3).

Each record is one request of the batch, outside any change set, with `Prefer: odata.continue-on-error`,
so one refused record never holds the others back; its `Content-ID` finds its answer again whatever
the order. Inserts are POSTs (the id read from `OData-EntityId`), updates PATCH the record by id with
`If-Match: *` (an update never creates), upserts PATCH the record by its alternate key and ask for
`return=representation` because only the status then says created (201) from updated (200), deletes
answer "gone" for a record Dataverse no longer has. Dataverse has no asynchronous bulk API to journal:
`$batch` is its batch API, so the journal is not used.

The connector's session, token provider, retry policy and error classification carry every call; a
batch cut off after it was sent raises `CrmOutcomeUnknown` and is never sent again blindly.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlsplit

from ...errors import ConfigurationError, CrmOutcomeUnknown
from ..base import ConnectorWriter
from ..port import RecordWrite, WriteError, WriteJournal, WriteRequest, WriteResult
from . import batch, odata
from .connector import DynamicsConnector, Table

logger = logging.getLogger(__name__)

MAX_BATCH_RECORDS = batch.MAX_REQUESTS
"""Dataverse runs at most 1,000 requests in one `$batch`."""
RECORD_DOES_NOT_EXIST = "0x80040217"
PRECONDITION_FAILED = 412
"""An `insert_once` of a record that exists: "already there", done."""
MISSING_KEY = "MISSING_KEY"
INVALID_ID = "INVALID_ID"
_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)$")


class DynamicsWriter(ConnectorWriter[DynamicsConnector]):
    kind = "dynamics"

    def write(self, request: WriteRequest, journal: WriteJournal) -> list[WriteResult]:
        if not request.records:
            return []
        if request.kind != "insert" and request.key_field is None:
            raise ConfigurationError(f"a Dynamics {request.kind} needs the key field its records are addressed by")
        table = self.connector.table(request.object)
        results: list[WriteResult] = []
        for start in range(0, len(request.records), MAX_BATCH_RECORDS):
            chunk = request.records[start : start + MAX_BATCH_RECORDS]
            try:
                results += self._batch(request, table, chunk)
            except CrmOutcomeUnknown as unknown:
                raise CrmOutcomeUnknown(str(unknown), completed=(*results, *unknown.completed)) from None
        return results

    # -- one $batch ------------------------------------------------------------------------------------
    def _batch(self, request: WriteRequest, table: Table, records: tuple[RecordWrite, ...]) -> list[WriteResult]:
        parts: list[batch.BatchPart] = []
        by_content_id: dict[str, RecordWrite] = {}
        refused: dict[str, WriteResult] = {}
        for number, record in enumerate(records, start=1):
            try:
                part = self._part(request, table, record, str(number))
            except _RecordRefused as problem:
                refused[record.ref] = _failed(record, problem.code, problem.message, problem.fields)
                continue
            parts.append(part)
            by_content_id[part.content_id] = record
        answers: dict[str, WriteResult] = {}
        if parts:
            for content_id, answer in self.connector.execute_batch(parts, idempotent=False).items():
                record = by_content_id[content_id]
                result = self._result(request, table, record, answer)
                if result is not None:
                    answers[record.ref] = result
        results = [refused.get(r.ref) or answers.get(r.ref) for r in records]
        known = [r for r in results if r is not None]
        if len(known) != len(records):
            raise CrmOutcomeUnknown(
                f"Dynamics answered {len(known) - len(refused)} of {len(parts)} requests of a $batch",
                completed=tuple(known),
            )
        return known

    def _part(self, request: WriteRequest, table: Table, record: RecordWrite, content_id: str) -> batch.BatchPart:
        collection = f"{urlsplit(self.connector.api_url).path}/{table.entity_set}"
        body = dict(record.fields)
        if request.kind == "insert":
            return batch.BatchPart(content_id, "POST", collection, body=body)
        assert request.key_field is not None
        key = body.pop(request.key_field, None)
        if key in (None, ""):
            raise _RecordRefused(MISSING_KEY, f"the record has no {request.key_field}", (request.key_field,))
        if request.kind == "upsert":
            segment = f"{odata.identifier(request.key_field)}={_key_literal(key)}"
            return batch.BatchPart(
                content_id,
                "PATCH",
                f"{collection}({quote(segment, safe=_KEY_SAFE)})?$select={table.primary_id}",
                headers={"Prefer": "return=representation"},
                body=body,
            )
        if not odata.is_guid(str(key)):
            raise _RecordRefused(
                INVALID_ID, f"{key!r} is not a Dataverse record id (a GUID)", (request.key_field,)
            )
        address = f"{collection}({str(key).lower()})"
        if request.kind == "insert_once":
            # "Perform conditional operations using the Web API": If-None-Match: * prevents an update,
            # so the PATCH only creates; a record already there answers 412.
            return batch.BatchPart(content_id, "PATCH", address, headers={"If-None-Match": "*"}, body=body)
        if request.kind == "update":
            return batch.BatchPart(content_id, "PATCH", address, headers={"If-Match": "*"}, body=body)
        return batch.BatchPart(content_id, "DELETE", address)

    def _result(
        self, request: WriteRequest, table: Table, record: RecordWrite, answer: batch.PartResponse
    ) -> WriteResult | None:
        """The record's result, or None when its request was not applied for a passing reason (service
        protection, a server fault): unknown for now, resolved by the caller, never a reject."""
        if request.kind == "insert_once" and answer.status == PRECONDITION_FAILED:
            return WriteResult(ref=record.ref, crm_id=_key_of(request, record), created=False)
        if answer.status >= 400:
            code, message = answer.error()
            if request.kind == "delete" and (answer.status == 404 or code == RECORD_DOES_NOT_EXIST):
                return WriteResult(ref=record.ref, crm_id=_key_of(request, record), created=False, gone=True)
            if answer.status == 429 or answer.status >= 500:
                logger.warning("Dynamics answered %d %s to one request of a $batch", answer.status, code)
                return None
            return _failed(record, code, message, ())
        if request.kind == "insert":
            return WriteResult(ref=record.ref, crm_id=_entity_id(answer, table), created=True)
        if request.kind == "insert_once":
            return WriteResult(ref=record.ref, crm_id=_key_of(request, record), created=True)
        if request.kind == "upsert":
            document = answer.json()
            crm_id = (
                str(document[table.primary_id])
                if isinstance(document, dict) and document.get(table.primary_id)
                else _entity_id(answer, table)
            )
            return WriteResult(ref=record.ref, crm_id=crm_id, created=answer.status == 201)
        return WriteResult(ref=record.ref, crm_id=_key_of(request, record), created=False)


_KEY_SAFE = "'=,"


class _RecordRefused(Exception):
    def __init__(self, code: str, message: str, fields: tuple[str, ...]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


def _key_literal(value: Any) -> str:
    """An alternate-key value in a URL: numbers as they are, anything else an escaped string literal."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return odata.string_literal(str(value))


def _key_of(request: WriteRequest, record: RecordWrite) -> str | None:
    value = record.fields.get(request.key_field) if request.key_field else None
    return None if value in (None, "") else str(value).lower()


def _entity_id(answer: batch.PartResponse, table: Table) -> str | None:
    """The new record's id from `OData-EntityId` (`.../contacts(<guid>)`)."""
    match = _ENTITY_ID.search(answer.headers.get("odata-entityid", ""))
    if match is None:
        logger.warning("Dynamics answered a write on %s without OData-EntityId", table.entity_set)
        return None
    return match.group(1).lower()


def _failed(record: RecordWrite, code: str, message: str, fields: tuple[str, ...]) -> WriteResult:
    return WriteResult(ref=record.ref, crm_id=None, created=False, errors=(WriteError(code, message, fields),))
