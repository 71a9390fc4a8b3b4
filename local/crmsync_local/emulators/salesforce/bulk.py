"""Bulk API 2.0: ingest jobs (insert, update, upsert, delete, hardDelete from CSV) and query jobs.

Ingest data is applied when the job is closed (`UploadComplete`) through the same validated write path
as REST, so rows fail with the same codes; polls then report `InProgress` (as many times as the
`bulk_in_progress_polls` setting says) before `JobComplete` or `Failed`, like the real, asynchronous
service. Query jobs snapshot their rows at creation and serve them in CSV pages behind `Sforce-Locator`.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from ..common import json_response
from .clock import format_datetime
from .errors import ApiError, RecordError, malformed_id
from .ids import normalize_id
from .payload import json_body
from .schema import FieldDef, ObjectDef
from .soql import CompiledQuery, compile_query
from .store import Context, MultipleMatches, RecordFailure, Store
from .values import CellTypeError, from_csv

if TYPE_CHECKING:
    from .app import Call, SalesforceEmulator

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
INGEST_OPERATIONS = ("insert", "update", "upsert", "delete", "hardDelete")
QUERY_OPERATIONS = ("query", "queryAll")
RECORDS_PER_BATCH = 10_000  # Salesforce counts one Bulk API batch per 10,000 ingested records
FINAL_STATES = ("JobComplete", "Failed", "Aborted")


@dataclass
class Job:
    id: str
    operation: str
    object: str
    created_by: str
    created: datetime
    api_version: str
    line_ending: str
    column_delimiter: str
    state: str
    polls_left: int = 0
    outcome: str = "JobComplete"
    error_message: str | None = None
    modified: datetime | None = None

    @property
    def is_query(self) -> bool:
        return self.operation in QUERY_OPERATIONS

    def observe(self) -> None:
        """A poll: a closed job reports InProgress a few times, then its outcome."""
        if self.state in ("UploadComplete", "InProgress"):
            if self.polls_left > 0:
                self.polls_left -= 1
                self.state = "InProgress"
            else:
                self.state = self.outcome

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": self.created_by,
            "createdDate": format_datetime(self.created),
            "systemModstamp": format_datetime(self.modified or self.created),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }


@dataclass
class IngestJob(Job):
    external_id_field: str | None = None
    data: str | None = None
    header: list[str] = field(default_factory=list)
    successes: list[tuple[str, bool, list[str]]] = field(default_factory=list)
    failures: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if self.external_id_field:
            out["externalIdFieldName"] = self.external_id_field
        out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        return out

    def info(self) -> dict[str, Any]:
        done = self.state in FINAL_STATES
        processed = len(self.successes) + len(self.failures) if done else 0
        out = {
            **self.summary(),
            "jobType": "V2Ingest",
            "numberRecordsProcessed": processed,
            "numberRecordsFailed": len(self.failures) if done else 0,
            "retries": 0,
            "totalProcessingTime": 0 if not done else max(1, processed // 10),
            "apiActiveProcessingTime": 0 if not done else max(1, processed // 20),
            "apexProcessingTime": 0,
        }
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


@dataclass
class QueryJob(Job):
    query: str = ""
    compiled: CompiledQuery | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        done = self.state == "JobComplete"
        return {
            **self.summary(),
            "jobType": "V2Query",
            "numberRecordsProcessed": len(self.rows) if done else 0,
            "retries": 0,
            "totalProcessingTime": max(1, len(self.rows) // 50) if done else 0,
            "isPkChunkingSupported": True,
        }


def _csv_text(rows: list[list[str]], delimiter: str, line_ending: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=line_ending, quoting=csv.QUOTE_ALL)
    writer.writerows(rows)
    return buffer.getvalue()


def _query_csv_line(cells: list[str | None], delimiter: str) -> str:
    """Bulk query results quote every value; a null is an empty, unquoted cell."""
    return delimiter.join(
        "" if cell is None or cell == "" else '"' + cell.replace('"', '""') + '"' for cell in cells
    )


class BulkApi:
    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def register(self) -> None:
        app = self.emulator
        app.api("/jobs/ingest", ["POST"], self.create_ingest)
        app.api("/jobs/ingest", ["GET"], self.list_ingest)
        app.api("/jobs/ingest/<job_id>", ["GET"], self.ingest_info)
        app.api("/jobs/ingest/<job_id>", ["PATCH"], self.ingest_state)
        app.api("/jobs/ingest/<job_id>", ["DELETE"], self.delete_job)
        app.api("/jobs/ingest/<job_id>/batches", ["PUT"], self.upload)
        app.api("/jobs/ingest/<job_id>/successfulResults", ["GET"], self.successful_results)
        app.api("/jobs/ingest/<job_id>/failedResults", ["GET"], self.failed_results)
        app.api("/jobs/ingest/<job_id>/unprocessedrecords", ["GET"], self.unprocessed_records)
        app.api("/jobs/ingest/<job_id>/unprocessedRecords", ["GET"], self.unprocessed_records)
        app.api("/jobs/query", ["POST"], self.create_query)
        app.api("/jobs/query", ["GET"], self.list_query)
        app.api("/jobs/query/<job_id>", ["GET"], self.query_info)
        app.api("/jobs/query/<job_id>", ["PATCH"], self.query_state)
        app.api("/jobs/query/<job_id>", ["DELETE"], self.delete_job)
        app.api("/jobs/query/<job_id>/results", ["GET"], self.query_results)

    @property
    def jobs(self) -> dict[str, Job]:
        jobs: dict[str, Job] = self.emulator.org.bulk_jobs
        return jobs

    def _job(self, job_id: str, kind: type[Job]) -> Any:
        job = self.jobs.get(normalize_id(job_id) or job_id)
        if not isinstance(job, kind):
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return job

    @staticmethod
    def _format(body: dict[str, Any]) -> tuple[str, str]:
        content_type = str(body.get("contentType", "CSV"))
        if content_type != "CSV":
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Unsupported content type: {content_type}")
        delimiter = str(body.get("columnDelimiter", "COMMA"))
        line_ending = str(body.get("lineEnding", "LF"))
        if delimiter not in DELIMITERS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid column delimiter: {delimiter}")
        if line_ending not in LINE_ENDINGS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid line ending: {line_ending}")
        return delimiter, line_ending

    # -- ingest ----------------------------------------------------------------------------------------------
    def create_ingest(self, call: Call) -> Response:
        body = json_body(call.request)
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation = str(body.get("operation", ""))
        if operation not in INGEST_OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        definition = self.emulator.org.schema.get(str(body.get("object", "")))
        if definition is None:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {body.get('object')}")
        external: str | None = None
        if operation == "upsert":
            field_def = definition.field(str(body.get("externalIdFieldName", "")))
            if field_def is None or not (field_def.external_id or field_def.name == "Id"):
                raise ApiError(
                    400,
                    "INVALIDJOB",
                    f"InvalidJob : Field name provided, {body.get('externalIdFieldName')} is not an External ID "
                    f"or indexed field for {definition.name}",
                )
            external = field_def.name
        delimiter, line_ending = self._format(body)
        job = IngestJob(
            id=self.emulator.org.ids.next("750"),
            operation=operation,
            object=definition.name,
            created_by=call.session.user_id,
            created=call.now,
            api_version=call.version,
            line_ending=line_ending,
            column_delimiter=delimiter,
            state="Open",
            external_id_field=external,
        )
        self.jobs[job.id] = job
        return json_response(job.summary())

    def list_ingest(self, call: Call) -> Response:
        return self._list(IngestJob)

    def list_query(self, call: Call) -> Response:
        return self._list(QueryJob)

    def _list(self, kind: type[Job]) -> Response:
        records = [
            job.summary() | {"jobType": "V2Query" if job.is_query else "V2Ingest"}
            for job in self.jobs.values()
            if isinstance(job, kind)
        ]
        return json_response({"done": True, "records": records, "nextRecordsUrl": None})

    def ingest_info(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        job.observe()
        return json_response(job.info())

    def upload(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        if job.data is not None:
            raise ApiError(
                400,
                "BULK_API_ERROR",
                f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the current Job "
                "then create a new Job and make sure you only do 'PUT' once on a given Job.",
            )
        if job.state != "Open":
            raise ApiError(
                409, "INVALIDJOBSTATE", f"Job's state: {job.state}, data can only be uploaded to an Open job"
            )
        job.data = call.request.get_data(as_text=True)
        return Response(status=201)

    def ingest_state(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        target = self._target_state(call)
        if target == "Aborted":
            self._abort(job, call.now)
        elif target == "UploadComplete":
            if job.state != "Open":
                raise ApiError(409, "INVALIDJOBSTATE", f"Job's state: {job.state}, only an Open job can be closed")
            job.state = "UploadComplete"
            job.modified = call.now
            job.polls_left = max(0, int(self.emulator.config.bulk_in_progress_polls))
            self._process(job, call.context())
        else:
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition to {target}")
        return json_response(job.summary())

    @staticmethod
    def _target_state(call: Call) -> str:
        body = json_body(call.request)
        return str(body.get("state", "")) if isinstance(body, dict) else ""

    @staticmethod
    def _abort(job: Job, now: datetime) -> None:
        if job.state in FINAL_STATES:
            raise ApiError(409, "INVALIDJOBSTATE", f"Job's state: {job.state}, it cannot be aborted")
        job.state = job.outcome = "Aborted"
        job.modified = now

    def delete_job(self, call: Call, job_id: str) -> Response:
        job: Job = self._job(job_id, Job)
        if job.state in ("Open", "InProgress"):
            raise ApiError(409, "INVALIDJOBSTATE", f"Job's state: {job.state}, it cannot be deleted yet")
        del self.jobs[job.id]
        return Response(status=204)

    # -- ingest processing ---------------------------------------------------------------------------------------
    def _fail(self, job: IngestJob, message: str, rows: list[list[str]]) -> None:
        job.outcome = "Failed"
        job.error_message = message
        job.unprocessed = rows

    def _process(self, job: IngestJob, ctx: Context) -> None:
        org = self.emulator.org
        definition = org.schema.get(job.object)
        assert definition is not None
        data = job.data or ""
        if not data.strip():
            self._fail(job, "InvalidBatch : Records not processed: no data was uploaded", [])
            return
        has_crlf = "\r\n" in data
        has_bare_lf = "\n" in data.replace("\r\n", "")
        if (job.line_ending == "LF" and has_crlf) or (job.line_ending == "CRLF" and has_bare_lf):
            self._fail(
                job,
                f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {job.line_ending}",
                [],
            )
            return
        reader = csv.reader(io.StringIO(data, newline=""), delimiter=DELIMITERS[job.column_delimiter])
        table = [row for row in reader if row]
        header, rows = table[0], table[1:]
        job.header = header
        columns: list[FieldDef] = []
        for name in header:
            field_def = definition.field(name.strip())
            if field_def is None:
                self._fail(job, f"InvalidBatch : Field name not found : {name}", rows)
                return
            columns.append(field_def)
        names = [c.name for c in columns]
        if job.operation in ("delete", "hardDelete") and names != ["Id"]:
            self._fail(job, f"InvalidBatch : The '{job.operation}' batch must contain only Id", rows)
            return
        if job.operation == "update" and "Id" not in names:
            self._fail(job, "InvalidBatch : Field name not found : Id", rows)
            return
        if job.operation == "upsert" and job.external_id_field not in names:
            self._fail(job, f"InvalidBatch : Field name not found : {job.external_id_field}", rows)
            return
        org.bulk_batches_used += max(1, math.ceil(len(rows) / RECORDS_PER_BATCH))
        for row in rows:
            cells = (row + [""] * len(columns))[: len(columns)]
            try:
                record_id, created = self._apply(job, definition, columns, cells, org.store, ctx)
            except RecordFailure as failure:
                job.failures.append(("", failure.errors[0].as_bulk(), row))
            except _RowFailure as failure:
                job.failures.append((failure.record_id, failure.error.as_bulk(), row))
            else:
                job.successes.append((record_id, created, row))

    def _apply(
        self,
        job: IngestJob,
        definition: ObjectDef,
        columns: list[FieldDef],
        cells: list[str],
        store: Store,
        ctx: Context,
    ) -> tuple[str, bool]:
        values: dict[str, Any] = {}
        for field_def, cell in zip(columns, cells, strict=True):
            if cell == "":
                continue  # an empty cell leaves the field alone; #N/A sets it to null
            try:
                values[field_def.name] = from_csv(field_def, cell)
            except CellTypeError as exc:
                raise _RowFailure(
                    RecordError("INVALID_TYPE_ON_FIELD_IN_RECORD", str(exc), [field_def.name]), ""
                ) from exc
        operation = job.operation
        if operation == "insert":
            return store.insert(definition, values, ctx), True
        if operation == "upsert":
            assert job.external_id_field is not None
            field_def = definition.fields[job.external_id_field]
            key = values.pop(field_def.name, None)
            try:
                return store.upsert(definition, field_def, key, values, ctx)
            except MultipleMatches as multiple:
                raise _RowFailure(multiple.as_record_error(), "") from multiple
        raw_id = values.pop("Id", None)
        if raw_id is None:
            raise _RowFailure(
                RecordError("MISSING_ARGUMENT", f"Id not specified in an {operation} call", ["Id"]), ""
            )
        record_id = normalize_id(raw_id)
        if record_id is None or record_id[:3] != definition.key_prefix:
            raise _RowFailure(malformed_id(raw_id), "")
        try:
            if operation == "update":
                store.update(definition, record_id, values, ctx)
            else:
                store.delete(record_id, ctx, hard=operation == "hardDelete", definition=definition)
        except RecordFailure as failure:
            raise _RowFailure(failure.errors[0], record_id) from failure
        return record_id, False

    # -- ingest results ----------------------------------------------------------------------------------------------
    def _results(self, job: IngestJob, header: list[str], rows: list[list[str]]) -> Response:
        body = _csv_text([header, *rows], DELIMITERS[job.column_delimiter], LINE_ENDINGS[job.line_ending])
        return Response(body, status=200, content_type="text/csv")

    def successful_results(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        rows = [[record_id, "true" if created else "false", *row] for record_id, created, row in job.successes]
        return self._results(job, ["sf__Id", "sf__Created", *job.header], rows)

    def failed_results(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        rows = [[record_id, error, *row] for record_id, error, row in job.failures]
        return self._results(job, ["sf__Id", "sf__Error", *job.header], rows)

    def unprocessed_records(self, call: Call, job_id: str) -> Response:
        job: IngestJob = self._job(job_id, IngestJob)
        header = job.header
        rows = job.unprocessed
        if job.state in ("Aborted", "Failed") and job.data and not job.header:
            table = [
                r
                for r in csv.reader(io.StringIO(job.data, newline=""), delimiter=DELIMITERS[job.column_delimiter])
                if r
            ]
            header, rows = (table[0], table[1:]) if table else ([], [])
        return self._results(job, header, rows)

    # -- query jobs ----------------------------------------------------------------------------------------------------
    def create_query(self, call: Call) -> Response:
        body = json_body(call.request)
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        operation = str(body.get("operation", "query"))
        if operation not in QUERY_OPERATIONS:
            raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        text = str(body.get("query") or "")
        delimiter, line_ending = self._format(body)
        org = self.emulator.org
        compiled = compile_query(text, org.schema, org.store, call.now)
        if compiled.count_only or compiled.aggregates:
            raise ApiError(400, "INVALIDJOB", "InvalidJob : Aggregate queries are not supported by Bulk API 2.0")
        if compiled.offset:
            raise ApiError(400, "INVALIDJOB", "InvalidJob : OFFSET is not supported by Bulk API 2.0 queries")
        compound = next((c.name for c in compiled.columns if c.field_def.components), None)
        if compound is not None:
            raise ApiError(
                400,
                "INVALIDJOB",
                f"InvalidJob : Compound address field {compound} is not supported by Bulk API 2.0 queries",
            )
        include_deleted = operation == "queryAll"
        if include_deleted:
            org.store.purge_expired(call.now, self.emulator.retention)
        org.bulk_query_jobs_used += 1
        job = QueryJob(
            id=org.ids.next("750"),
            operation=operation,
            object=compiled.definition.name,
            created_by=call.session.user_id,
            created=call.now,
            api_version=call.version,
            line_ending=line_ending,
            column_delimiter=delimiter,
            state="UploadComplete",
            polls_left=max(0, int(self.emulator.config.bulk_in_progress_polls)),
            query=text,
            compiled=compiled,
            rows=compiled.run(org.store, include_deleted=include_deleted),
        )
        self.jobs[job.id] = job
        return json_response(job.summary())

    def query_info(self, call: Call, job_id: str) -> Response:
        job: QueryJob = self._job(job_id, QueryJob)
        job.observe()
        return json_response(job.info())

    def query_state(self, call: Call, job_id: str) -> Response:
        job: QueryJob = self._job(job_id, QueryJob)
        target = self._target_state(call)
        if target != "Aborted":
            raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition to {target}")
        self._abort(job, call.now)
        return json_response(job.summary())

    def query_results(self, call: Call, job_id: str) -> Response:
        job: QueryJob = self._job(job_id, QueryJob)
        if job.state != "JobComplete":
            status = {"UploadComplete": "UPLOAD_COMPLETE", "InProgress": "IN_PROGRESS"}.get(
                job.state, job.state.upper()
            )
            raise ApiError(
                412,
                "JOB_NOT_COMPLETE",
                "can only download query results of successfully completed bulk job with status: JOB_COMPLETE. "
                f"Current status: {status}",
            )
        args = call.request.args
        offset = 0
        locator = args.get("locator")
        if locator:
            try:
                offset = int(base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode())
            except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}") from exc
            if not 0 <= offset <= len(job.rows):
                raise ApiError(400, "INVALID_LOCATOR", f"Invalid locator: {locator}")
        max_records = args.get("maxRecords")
        size = len(job.rows) - offset
        if max_records:
            if not max_records.isdigit() or int(max_records) < 1:
                raise ApiError(400, "INVALIDPARAMETER", f"maxRecords must be a positive integer: {max_records}")
            size = min(size, int(max_records))
        page = job.rows[offset : offset + size]
        end = offset + len(page)
        assert job.compiled is not None
        delimiter = DELIMITERS[job.column_delimiter]
        newline = LINE_ENDINGS[job.line_ending]
        lines = [_query_csv_line(list(job.compiled.csv_header()), delimiter)]
        lines.extend(_query_csv_line(list(job.compiled.csv_row(row)), delimiter) for row in page)
        next_locator = base64.b64encode(str(end).encode()).decode().rstrip("=") if end < len(job.rows) else "null"
        response = Response(newline.join(lines) + newline, status=200, content_type="text/csv")
        response.headers["Sforce-NumberOfRecords"] = str(len(page))
        response.headers["Sforce-Locator"] = next_locator
        return response


class _RowFailure(Exception):
    def __init__(self, error: RecordError, record_id: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.record_id = record_id
