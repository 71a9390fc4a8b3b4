"""Bulk API 2.0: ingest jobs (insert, update, upsert, delete, hardDelete) and query jobs, over CSV.

An ingest job is created, given its CSV in one upload, closed, then processed by Salesforce on its own
time; results come back as three CSVs (successful with `sf__Id` and `sf__Created`, failed with
`sf__Error`, unprocessed) carrying the uploaded columns, in no particular order - callers match rows to
their records by a column of their own. Each step is a method so a caller can keep the job id and
pick the job up again after a crash; `ingest()` runs the whole sequence.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ...errors import BulkJobInProgress, CrmRequestRejected
from .soql import identifier, is_salesforce_id

if TYPE_CHECKING:
    from .connector import SalesforceConnector

IngestOperation = Literal["insert", "update", "upsert", "delete", "hardDelete"]
FINAL_STATES = frozenset({"JobComplete", "Failed", "Aborted"})
NULL = "#N/A"
QUERY_PAGE_RECORDS = 50_000


def _job(job_id: str) -> str:
    if not is_salesforce_id(job_id):
        raise CrmRequestRejected(f"{job_id!r} is not a Salesforce job id")
    return job_id


@dataclass(frozen=True)
class BulkJob:
    id: str
    state: str
    operation: str
    object: str
    records_processed: int = 0
    records_failed: int = 0
    error_message: str | None = None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_info(cls, body: dict[str, Any]) -> BulkJob:
        return cls(
            id=str(body["id"]),
            state=str(body.get("state", "")),
            operation=str(body.get("operation", "")),
            object=str(body.get("object", "")),
            records_processed=int(body.get("numberRecordsProcessed") or 0),
            records_failed=int(body.get("numberRecordsFailed") or 0),
            error_message=body.get("errorMessage"),
        )


@dataclass
class IngestResults:
    """The three result files of a finished ingest job, as rows of column -> text."""

    job: BulkJob
    successful: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    unprocessed: list[dict[str, str]] = field(default_factory=list)


def csv_cell(value: Any) -> str:
    """A value as Bulk API 2.0 reads it: `#N/A` sets a field to null, an empty cell leaves it alone."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def encode_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header; a column a row lacks is an empty cell (the field is left as it is)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([identifier(c) for c in columns])
    for row in rows:
        writer.writerow([csv_cell(row[c]) if c in row else "" for c in columns])
    return buffer.getvalue()


def decode_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def parse_bulk_error(cell: str) -> tuple[str, str, tuple[str, ...]]:
    """`REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --` -> code, message, fields."""
    text = cell.strip().removesuffix("--").rstrip()
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:
        message, fields = rest, ""
    return code, message.strip(), tuple(f for f in fields.strip().split(",") if f)


class BulkApi2:
    def __init__(
        self,
        connector: SalesforceConnector,
        *,
        first_poll_seconds: float = 0.5,
        max_poll_seconds: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        self.first_poll_seconds = first_poll_seconds
        self.max_poll_seconds = max_poll_seconds
        self.sleep = sleep
        self.clock = clock

    # -- ingest ----------------------------------------------------------------------------------------
    def create_ingest_job(
        self, sobject: str, operation: IngestOperation, *, external_id_field: str | None = None
    ) -> BulkJob:
        body: dict[str, Any] = {
            "object": identifier(sobject),
            "operation": operation,
            "contentType": "CSV",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id_field is not None:
            body["externalIdFieldName"] = identifier(external_id_field)
        return BulkJob.from_info(self.connector.rest("POST", "jobs/ingest", json=body))

    def upload(self, job_id: str, data: str) -> None:
        """The job's one upload; Salesforce refuses a second one, so an uncertain upload means a new job."""
        self.connector.request(
            "PUT",
            f"jobs/ingest/{_job(job_id)}/batches",
            data=data.encode("utf-8"),
            headers={"Content-Type": "text/csv"},
            idempotent=False,
        )

    def close(self, job_id: str) -> BulkJob:
        """Mark the upload complete; Salesforce starts processing. Closing a job a lost answer had
        already closed finds it past Open and carries on."""
        try:
            return self._set_state(job_id, "UploadComplete")
        except CrmRequestRejected as refused:
            if refused.status != 409:
                raise
            job = self.job(job_id)
            if job.state == "Open":
                raise
            return job

    def abort(self, job_id: str, *, query: bool = False) -> BulkJob:
        return self._set_state(job_id, "Aborted", query=query)

    def _set_state(self, job_id: str, state: str, *, query: bool = False) -> BulkJob:
        kind = "query" if query else "ingest"
        body = self.connector.rest("PATCH", f"jobs/{kind}/{_job(job_id)}", json={"state": state})
        return BulkJob.from_info(body)

    def job(self, job_id: str, *, query: bool = False) -> BulkJob:
        kind = "query" if query else "ingest"
        return BulkJob.from_info(self.connector.rest("GET", f"jobs/{kind}/{_job(job_id)}"))

    def wait(self, job_id: str, *, budget_seconds: float, query: bool = False) -> BulkJob:
        """Poll with growing intervals until the job ends; past the budget, `BulkJobInProgress`."""
        deadline = self.clock() + budget_seconds
        interval = self.first_poll_seconds
        while True:
            job = self.job(job_id, query=query)
            if job.done:
                return job
            if self.clock() + interval > deadline:
                raise BulkJobInProgress(f"bulk job {job_id} is still {job.state} after {budget_seconds:.0f}s")
            self.sleep(interval)
            interval = min(interval * 2, self.max_poll_seconds)

    def _result_file(self, job_id: str, name: str) -> list[dict[str, str]]:
        response = self.connector.request("GET", f"jobs/ingest/{_job(job_id)}/{name}")
        return decode_csv(response.content.decode("utf-8-sig"))

    def results(self, job: BulkJob) -> IngestResults:
        """The result files of a finished job (a failed job's rows are all unprocessed)."""
        if not job.done:
            raise ValueError(f"bulk job {job.id} is {job.state}; results exist once it has ended")
        return IngestResults(
            job=job,
            successful=self._result_file(job.id, "successfulResults"),
            failed=self._result_file(job.id, "failedResults"),
            unprocessed=self._result_file(job.id, "unprocessedrecords"),
        )

    def ingest(
        self,
        sobject: str,
        operation: IngestOperation,
        data: str,
        *,
        external_id_field: str | None = None,
        on_created: Callable[[str], None] | None = None,
        budget_seconds: float = 600.0,
    ) -> IngestResults:
        """Create, upload, close, wait, read the results. `on_created` hears the job id before any data
        is sent, so a caller can record it and resume the job (`wait`, `results`) after a crash."""
        job = self.create_ingest_job(sobject, operation, external_id_field=external_id_field)
        if on_created is not None:
            on_created(job.id)
        self.upload(job.id, data)
        self.close(job.id)
        return self.results(self.wait(job.id, budget_seconds=budget_seconds))

    # -- query -----------------------------------------------------------------------------------------
    def create_query_job(self, soql: str, *, include_deleted: bool = False) -> BulkJob:
        body = {"operation": "queryAll" if include_deleted else "query", "query": soql}
        return BulkJob.from_info(self.connector.rest("POST", "jobs/query", json=body))

    def query_page(
        self, job_id: str, locator: str | None = None, *, page_records: int = QUERY_PAGE_RECORDS
    ) -> tuple[list[dict[str, str]], str | None]:
        """One result page of a completed query job and the locator of the next one (None after the
        last): a caller that must stop between pages (a Lambda step) keeps the locator and resumes."""
        params: dict[str, Any] = {"maxRecords": page_records}
        if locator:
            params["locator"] = locator
        response = self.connector.request("GET", f"jobs/query/{_job(job_id)}/results", params=params)
        rows = decode_csv(response.content.decode("utf-8-sig"))
        following = response.headers.get("Sforce-Locator")
        return rows, None if not following or following == "null" else following

    def query_rows(self, job_id: str, *, page_records: int = QUERY_PAGE_RECORDS) -> Iterator[dict[str, str]]:
        """Rows of a completed query job, one result page (`Sforce-Locator`) in memory at a time."""
        locator: str | None = None
        while True:
            rows, locator = self.query_page(job_id, locator, page_records=page_records)
            yield from rows
            if locator is None:
                return

    def query(
        self, soql: str, *, include_deleted: bool = False, budget_seconds: float = 600.0
    ) -> Iterator[dict[str, str]]:
        """Run a query job and stream its rows (id-set comparisons, large extracts)."""
        job = self.wait(
            self.create_query_job(soql, include_deleted=include_deleted).id,
            budget_seconds=budget_seconds,
            query=True,
        )
        if job.state != "JobComplete":
            raise CrmRequestRejected(
                f"bulk query job {job.id} ended {job.state}: {job.error_message or 'no message'}",
                error_code=job.state,
            )
        yield from self.query_rows(job.id)
