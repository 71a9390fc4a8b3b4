"""Salesforce adapter of the CRM port, on simple-salesforce (SPEC C2, C3, I1-I8, D1)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from ...config import SalesforceConnection
from ...domain.conversions import parse_crm_datetime
from ...domain.types import CrmFieldType, typed_text
from ...errors import (
    BulkJobInProgress,
    ConfigurationError,
    CrmRequestRejected,
    CrmsyncError,
    DeletionPeriodRefused,
    TooManyDeletedIds,
)
from ..base import HttpConnector
from ..http import CrmHttpSession, refusal, unreachable, write_failure
from ..port import (
    ApiLimits,
    DeletedRecord,
    DeletedRecords,
    FieldChange,
    FieldDescription,
    FieldHistoryConnector,
    FieldTracking,
    HistoryQuery,
    IdPage,
    ObjectDescription,
    ObjectSummary,
    PicklistValue,
    RecordPage,
    RecordQuery,
)
from ..retry import RetryPolicy
from ..rules import SALESFORCE
from .auth import SalesforceToken, SalesforceTokenProvider
from .bulk2 import BulkApi2
from .collections import SObjectCollections
from .ids import case_safe_id
from .soql import (
    history_object,
    identifier,
    is_salesforce_id,
    render_all_ids,
    render_count,
    render_field_definitions,
    render_history_query,
    render_query,
    render_value_lookups,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)

ID_CHUNK = 500
ID_PAGE_RECORDS = 50_000
"""Ids per page of the id-set comparison: one Bulk API 2.0 results call each (`maxRecords`)."""
ID_JOB_BUDGET_SECONDS = 60.0
"""How long one step waits for the id query job before handing back a cursor (it is resumed later)."""
RECORD_TYPE_ID = re.compile(r"^012[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_CURSOR = re.compile(r"^/services/data/v\d+\.\d/query(All)?/[A-Za-z0-9_-]+$")

TYPE_MAP: dict[str, CrmFieldType] = {
    "id": CrmFieldType.ID,
    "reference": CrmFieldType.REFERENCE,
    "string": CrmFieldType.STRING,
    "textarea": CrmFieldType.STRING,
    "email": CrmFieldType.STRING,
    "phone": CrmFieldType.STRING,
    "url": CrmFieldType.STRING,
    "encryptedstring": CrmFieldType.STRING,
    "combobox": CrmFieldType.STRING,
    "picklist": CrmFieldType.PICKLIST,
    "multipicklist": CrmFieldType.MULTIPICKLIST,
    "boolean": CrmFieldType.BOOLEAN,
    "int": CrmFieldType.INTEGER,
    "long": CrmFieldType.INTEGER,
    "double": CrmFieldType.NUMBER,
    "currency": CrmFieldType.NUMBER,
    "percent": CrmFieldType.NUMBER,
    "date": CrmFieldType.DATE,
    "datetime": CrmFieldType.DATETIME,
    "time": CrmFieldType.TIME,
}


def _error_code(content: Any) -> tuple[str | None, str]:
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode"), str(content[0].get("message", ""))
    if isinstance(content, dict):
        return content.get("errorCode") or content.get("error"), str(content.get("message", ""))
    return None, ""


def classify(exc: Exception) -> CrmsyncError:
    """Map a failed call onto the crmsync error classification (retryable / permanent); Salesforce says
    REQUEST_LIMIT_EXCEEDED with a 403 when the org's API limit is spent."""
    if isinstance(exc, SalesforceError):
        code, message = _error_code(exc.content)
        limited = exc.status == 403 and code == "REQUEST_LIMIT_EXCEEDED"
        return refusal(SALESFORCE.name, exc.status, code, message, rate_limited=limited)
    if isinstance(exc, CrmsyncError):
        return exc
    return unreachable(exc, SALESFORCE.name)


def classify_write(exc: Exception) -> CrmsyncError:
    """Like `classify`, for a call that changes data (`http.write_failure`)."""
    return write_failure(classify(exc), exc)


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "attributes"}


def _typed_row(row: dict[str, str], types: dict[str, CrmFieldType]) -> dict[str, Any]:
    """A Bulk API result row as the REST API answers the record: typed cells, an empty one null. A cell
    that is not of its type stays text: the mapping rejects it as it would such a REST value."""
    record: dict[str, Any] = {}
    for column, text in row.items():
        try:
            record[column] = typed_text(text, types.get(column))
        except ValueError:
            record[column] = text
    return record


def _minute(moment: datetime) -> datetime:
    """UTC on a whole minute: Salesforce ignores the seconds of a replication period's bounds."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _replication_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _optional_datetime(value: Any) -> datetime | None:
    return parse_crm_datetime(str(value)) if value else None


@dataclass(frozen=True)
class _IdCursor:
    """Where an id-set read stands: its Bulk API 2.0 query job and the locator of the next results page
    (None before the first page). Plain JSON, so it crosses a Lambda boundary in the state."""

    job_id: str
    locator: str | None

    def encode(self) -> str:
        return json.dumps({"job": self.job_id, "locator": self.locator}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> _IdCursor:
        try:
            raw = json.loads(text)
            job_id, locator = str(raw["job"]), raw.get("locator")
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ConfigurationError("the id cursor is not a Salesforce query job cursor") from None
        if not is_salesforce_id(job_id) or not (locator is None or isinstance(locator, str)):
            raise ConfigurationError("the id cursor is not a Salesforce query job cursor")
        return cls(job_id, locator)


class SalesforceConnector(HttpConnector[SalesforceConnection, SalesforceTokenProvider], FieldHistoryConnector):
    rules = SALESFORCE

    def __init__(
        self,
        connection: SalesforceConnection,
        tokens: SalesforceTokenProvider,
        session: CrmHttpSession,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(connection, tokens, session, retry)
        self.last_usage: tuple[int, int] | None = None
        self._client: tuple[SalesforceToken, Salesforce] | None = None
        self.id_page_records = ID_PAGE_RECORDS
        self.id_job_budget_seconds = ID_JOB_BUDGET_SECONDS

    # -- id rules ----------------------------------------------------------------------------------
    def is_record_id(self, value: str) -> bool:
        """15 or 18 characters; case-sensitive (the 18-character form is the 15 with a checksum)."""
        return is_salesforce_id(value)

    def normalize_id(self, value: str) -> str:
        """The 18-character, case-safe form Salesforce answers: a 15-character id from a report or a Data
        Loader export gets its checksum suffix, an 18-character one its case back (`ids.case_safe_id`)."""
        return case_safe_id(value)

    def id_of_object(self, value: str, description: ObjectDescription) -> bool:
        """Every id of an object starts with its key prefix (a Contact's 003): Salesforce deletes whatever id
        it is sent, of any object, so a given id is checked first."""
        return not description.key_prefix or value.startswith(description.key_prefix)

    # -- plumbing ----------------------------------------------------------------------------------
    def _salesforce(self, token: SalesforceToken) -> Salesforce:
        if self._client is None or self._client[0] is not token:
            client = Salesforce(
                instance_url=token.instance_url,
                session_id=token.access_token,
                session=self.session,
                version=self.connection.api_version,
            )
            self._client = (token, client)
        return self._client[1]

    def _call(self, operation: Callable[[Salesforce], T], *, idempotent: bool = True) -> T:
        """Run one call with token renewal and the retry policy; a non-idempotent call whose outcome is
        unknown raises `CrmOutcomeUnknown` at once instead of being repeated."""
        classifier = classify if idempotent else classify_write

        def attempt() -> T:
            token = self.tokens.token()
            try:
                return self._once(operation, token, classifier)
            except SalesforceExpiredSession:
                logger.info("Salesforce session expired; renewing the token of %s", self.connection.name)
                fresh = self.tokens.renew(token)
                try:
                    return self._once(operation, fresh, classifier)
                except SalesforceExpiredSession as exc:
                    raise classify(exc) from None

        return self.retried(attempt)

    def _once(
        self,
        operation: Callable[[Salesforce], T],
        token: SalesforceToken,
        classifier: Callable[[Exception], CrmsyncError],
    ) -> T:
        client = self._salesforce(token)
        try:
            result = operation(client)
        except SalesforceExpiredSession:
            raise
        except (SalesforceError, requests.RequestException) as exc:
            raise classifier(exc) from None
        finally:
            usage = client.api_usage.get("api-usage")
            if usage is not None:
                self.last_usage = (int(usage.used), int(usage.total))
        return result

    def request(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """One REST call under `/services/data/vXX.X/`, answered raw (CSV bodies, empty bodies)."""
        return self._call(
            lambda sf: sf._call_salesforce(method, sf.base_url + path, name=path, **kwargs),
            idempotent=idempotent,
        )

    def rest(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        """One REST call under `/services/data/vXX.X/`, answered as JSON (None for an empty body)."""
        response = self.request(method, path, idempotent=idempotent, **kwargs)
        return response.json() if response.content else None

    @property
    def collections(self) -> SObjectCollections:
        return SObjectCollections(self)

    @property
    def bulk(self) -> BulkApi2:
        return BulkApi2(self)

    def find(
        self, object_name: str, field: str, values: Iterable[str], fields: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Live records of `object_name` whose `field` equals one of `values` (case-insensitive for
        text, as SOQL compares), read with as few queries as the SOQL length limit allows."""
        records: list[dict[str, Any]] = []
        for soql in render_value_lookups(object_name, field, values, fields):
            records.extend(self.every_record(self.read_soql(soql)))
        return records

    # -- port --------------------------------------------------------------------------------------
    def server_time(self) -> datetime:
        self.limits()
        return self.session.crm_clock("Salesforce")

    def limits(self) -> ApiLimits:
        body = self._call(lambda sf: sf.restful("limits")) or {}
        daily = body.get("DailyApiRequests", {})
        maximum = daily.get("Max")
        remaining = daily.get("Remaining")
        used = maximum - remaining if isinstance(maximum, int) and isinstance(remaining, int) else None
        if used is None and self.last_usage is not None:
            used, maximum = self.last_usage
        return ApiLimits(used=used, maximum=maximum, details=dict(body))

    def api_usage(self) -> ApiLimits | None:
        if self.last_usage is None:
            return None
        return ApiLimits(used=self.last_usage[0], maximum=self.last_usage[1])

    def list_objects(self) -> list[ObjectSummary]:
        body = self._call(lambda sf: sf.restful("sobjects")) or {}
        return [
            ObjectSummary(
                name=o["name"],
                label=o.get("label", o["name"]),
                custom=bool(o.get("custom")),
                queryable=bool(o.get("queryable", True)),
                createable=bool(o.get("createable", True)),
            )
            for o in body.get("sobjects", [])
        ]

    def describe(self, object_name: str, *, values: bool = False) -> ObjectDescription:
        """sObject Describe; picklist values and labels come with it, so `values` costs nothing more."""
        described = self._describe(object_name, None)
        assert described is not None
        return described

    def describe_if_modified(self, object_name: str, since: str) -> ObjectDescription | None:
        """sObject Describe with `If-Modified-Since`: None when Salesforce answers 304 Not Modified (no
        body), so a run whose object did not change reads no metadata."""
        return self._describe(object_name, since)

    def _describe(self, object_name: str, since: str | None) -> ObjectDescription | None:
        name = identifier(object_name)
        headers = {"If-Modified-Since": since} if since else {}
        try:
            response = self.request("GET", f"sobjects/{name}/describe", headers=headers)
        except CrmRequestRejected as exc:
            if exc.status == 304:
                return None
            if exc.status == 404 or exc.error_code == "NOT_FOUND":
                raise ConfigurationError(
                    f"Salesforce has no object {object_name!r} visible to this connection's user"
                ) from None
            raise
        body = response.json() if response.content else {}
        fields: dict[str, FieldDescription] = {}
        for raw in body.get("fields", []):
            raw_type = str(raw.get("type", ""))
            picklist = tuple(
                PicklistValue(
                    value=str(p["value"]),
                    label=str(p.get("label") or p["value"]),
                    active=bool(p.get("active", True)),
                    default=bool(p.get("defaultValue", False)),
                )
                for p in raw.get("picklistValues") or []
            )
            description = FieldDescription(
                name=raw["name"],
                crm_type=TYPE_MAP.get(raw_type, CrmFieldType.OTHER),
                label=raw.get("label", ""),
                length=raw.get("length") or None,
                nillable=bool(raw.get("nillable", True)),
                createable=bool(raw.get("createable", False)),
                updateable=bool(raw.get("updateable", False)),
                external_id=bool(raw.get("externalId", False)),
                unique=bool(raw.get("unique", False)),
                filterable=bool(raw.get("filterable", True)),
                sortable=bool(raw.get("sortable", True)),
                picklist_values=tuple(p.value for p in picklist if p.active),
                raw_type=raw_type,
                picklist=picklist,
                compound=raw.get("compoundFieldName") or None,
            )
            fields[description.name.lower()] = description
        parts: dict[str, list[str]] = {}
        for field in fields.values():
            if field.compound:
                parts.setdefault(field.compound.lower(), []).append(field.name)
        for key, names in parts.items():
            if key in fields:
                fields[key] = replace(fields[key], compound_of=tuple(names))
        return ObjectDescription(
            name=body.get("name", object_name),
            id_field="Id",
            fields=fields,
            label=body.get("label", ""),
            custom=bool(body.get("custom", False)),
            key_prefix=body.get("keyPrefix") or None,
            record_types=tuple(
                (str(r["recordTypeId"]), str(r.get("developerName") or r.get("name") or ""))
                for r in body.get("recordTypeInfos") or []
                if r.get("recordTypeId") and r.get("available", True)
            ),
            last_modified=response.headers.get("Last-Modified") or response.headers.get("Date"),
        )

    def enumeration(
        self, object_name: str, field_name: str, record_type: str | None = None
    ) -> tuple[PicklistValue, ...]:
        """A picklist's values: from describe (every value, inactive ones flagged), or for one record type
        from the UI API's `object-info/{object}/picklist-values/{recordTypeId}/{field}` (active values of
        that record type, the default flagged)."""
        description = self.describe(object_name)
        field = description.field(field_name)
        if field is None:
            raise ConfigurationError(f"Salesforce object {description.name} has no field {field_name!r}")
        if field.crm_type not in (CrmFieldType.PICKLIST, CrmFieldType.MULTIPICKLIST):
            raise ConfigurationError(
                f"{description.name}.{field.name} is a {field.raw_type or field.crm_type.value} field, not a picklist"
            )
        if record_type is None:
            return field.picklist
        if not RECORD_TYPE_ID.match(record_type):
            raise ConfigurationError(f"{record_type!r} is not a record type id (012...)")
        body = (
            self.rest("GET", f"ui-api/object-info/{description.name}/picklist-values/{record_type}/{field.name}")
            or {}
        )
        default = (body.get("defaultValue") or {}).get("value")
        return tuple(
            PicklistValue(
                value=str(v["value"]), label=str(v.get("label") or v["value"]), default=v["value"] == default
            )
            for v in body.get("values") or []
        )

    def global_enumeration(self, name: str) -> tuple[PicklistValue, ...]:
        raise ConfigurationError(
            "global option sets are Dataverse's; a Salesforce global value set is read through a picklist "
            "field that uses it (name the object and field)"
        )

    def _page(self, body: dict[str, Any]) -> RecordPage:
        cursor = None if body.get("done", True) else body.get("nextRecordsUrl")
        return RecordPage(
            records=[_strip(r) for r in body.get("records", [])],
            next_cursor=cursor,
            total_size=body.get("totalSize"),
        )

    def read_first_page(self, query: RecordQuery) -> RecordPage:
        return self.read_soql(render_query(query), max(200, min(query.page_size, 2000)))

    def read_soql(self, soql: str, batch: int = 2000) -> RecordPage:
        """The first page of a query rendered by `soql.py` (never text from outside)."""
        body = self._call(lambda sf: sf.query(soql, headers={"Sforce-Query-Options": f"batchSize={batch}"}))
        return self._page(body)

    def count(self, query: RecordQuery) -> int:
        """`SELECT COUNT() FROM … WHERE …` of `query`: one call, whatever the number."""
        body = self._call(lambda sf: sf.query(render_count(query)))
        return int(body["totalSize"])

    def read_next_page(self, cursor: str) -> RecordPage:
        if not _CURSOR.match(cursor):
            raise ConfigurationError("the page cursor is not a Salesforce nextRecordsUrl")
        return self._page(self._call(lambda sf: sf.query_more(cursor, identifier_is_url=True)))

    def read_by_ids(self, query: RecordQuery, *, filtered: bool = False) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        ids = list(query.ids)
        for start in range(0, len(ids), ID_CHUNK):
            chunk = RecordQuery(
                object=query.object,
                fields=query.fields,
                filter=query.filter if filtered else None,
                ids=tuple(ids[start : start + ID_CHUNK]),
                page_size=2000,
                field_types=query.field_types,
            )
            records.extend(self.every_record(self.read_first_page(chunk)))
        return records

    # -- field history (SPEC O3) -------------------------------------------------------------------
    def integration_user(self) -> str:
        """The user of the OAuth identity crmsync signed in as (the token response's `id`)."""
        user_id = self.tokens.token().user_id
        if not user_id:
            raise ConfigurationError(
                f"the token of connection {self.connection.name!r} names no user (no `id` in the OAuth answer)"
            )
        return user_id

    def field_tracking(self, object_name: str, fields: Iterable[str]) -> FieldTracking:
        names = list(dict.fromkeys(fields))
        history, _ = history_object(object_name)
        visible = {o.name.lower() for o in self.list_objects()}
        if history.lower() not in visible:
            return FieldTracking("history", dict.fromkeys(names, False), f"{object_name} has no field history")
        rows = self.every_record(self.read_soql(render_field_definitions(object_name, names)))
        tracked = {str(r["QualifiedApiName"]).lower(): bool(r.get("IsFieldHistoryTracked")) for r in rows}
        return FieldTracking("history", {name: tracked.get(name.lower(), False) for name in names})

    def recorded_changes(self, query: HistoryQuery) -> Iterator[FieldChange]:
        """One history query over the window, oldest first (not one call per record): it answers the rows
        of every record, which `field_changes` leaves."""
        _, parent = history_object(query.object)
        soql = render_history_query(query.object, query.columns, query.start, query.end)
        for row in self.every_record(self.read_soql(soql)):
            moment = _optional_datetime(row.get("CreatedDate"))
            if moment is not None:
                record_id = str(row.get(parent) or "")
                yield FieldChange(
                    record_id, str(row.get("Field", "")), row.get("NewValue"), moment, row.get("CreatedById")
                )

    # -- deletions (SPEC D1) -----------------------------------------------------------------------
    def read_deleted(self, object_name: str, start: datetime, end: datetime) -> DeletedRecords:
        """`sobjects/{Type}/deleted`, with both ends of the period included.

        Salesforce reads whole minutes and answers deletions before its end minute, so the request ends
        one minute after `end`'s minute (two after the start's, as the start must precede the end by more
        than a minute) and what lies outside the period is dropped. `latest_covered` never passes `end`:
        the next period starts there and misses nothing that was dropped.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ConfigurationError("a deletion period needs time-zone aware bounds")
        if end < start:
            raise ConfigurationError(f"the deletion period ends ({end.isoformat()}) before it starts")
        name = identifier(object_name)
        first = _minute(start)
        last = max(_minute(end) + timedelta(minutes=1), first + timedelta(minutes=2))
        try:
            body = (
                self.rest(
                    "GET",
                    f"sobjects/{name}/deleted/",
                    params={"start": _replication_date(first), "end": _replication_date(last)},
                )
                or {}
            )
        except CrmRequestRejected as refused:
            if refused.error_code == "INVALID_REPLICATION_DATE":
                raise self._period_refused(name, start, refused) from None
            if refused.error_code == "EXCEEDED_ID_LIMIT":
                raise TooManyDeletedIds(
                    f"Salesforce holds more deleted {name} ids between {start.isoformat()} and {end.isoformat()} "
                    "than one answer returns; split the period"
                ) from None
            raise
        records = [
            DeletedRecord(crm_id=str(row["id"]), deleted_at=parse_crm_datetime(str(row["deletedDate"])))
            for row in body.get("deletedRecords") or []
        ]
        covered = _optional_datetime(body.get("latestDateCovered"))
        return DeletedRecords(
            records=[r for r in records if start <= r.deleted_at <= end],
            earliest_available=_optional_datetime(body.get("earliestDateAvailable")),
            latest_covered=None if covered is None else min(covered, end),
        )

    def _period_refused(self, name: str, start: datetime, refused: CrmRequestRejected) -> DeletionPeriodRefused:
        """Name the earliest date Salesforce still answers for. Its refusal says so only in prose, so a
        two-minute period ending at the CRM's own clock asks for `earliestDateAvailable` (one call)."""
        earliest: datetime | None = None
        try:
            now = _minute(self.session.crm_clock("Salesforce"))
            probe = (
                self.rest(
                    "GET",
                    f"sobjects/{name}/deleted/",
                    params={
                        "start": _replication_date(now - timedelta(minutes=2)),
                        "end": _replication_date(now),
                    },
                )
                or {}
            )
            earliest = _optional_datetime(probe.get("earliestDateAvailable"))
        except (CrmsyncError, ValueError) as exc:
            logger.warning("could not learn the earliest deletion date of %s: %s", name, exc)
        if earliest is None:
            return DeletionPeriodRefused(
                f"Salesforce refused deleted {name} records from {start.isoformat()}: {refused}"
            )
        if start < earliest:
            text = (
                f"Salesforce keeps deleted {name} records only from {earliest.isoformat()}; "
                f"a period starting {start.isoformat()} is older than that"
            )
        else:
            text = (
                f"Salesforce refused deleted {name} records from {start.isoformat()} ({refused}); "
                f"the earliest date available is {earliest.isoformat()}"
            )
        return DeletionPeriodRefused(text, earliest_available=earliest.isoformat())

    # -- id-set comparison (SPEC D1) ---------------------------------------------------------------
    def read_ids_first(self, object_name: str) -> IdPage:
        """Start a Bulk API 2.0 query job `SELECT Id FROM <Type>` (deleted rows excluded) and answer its
        first page. A job still running after `id_job_budget_seconds` answers no ids and a cursor on the
        job, so the next step resumes it instead of starting another."""
        job = self.bulk.create_query_job(render_all_ids(object_name))
        cursor = _IdCursor(job.id, None)
        try:
            return self._id_page(cursor)
        except BulkJobInProgress:
            logger.info("id query job %s is still running; the next step picks it up", job.id)
            return IdPage(ids=[], next_cursor=cursor.encode())

    def read_ids_next(self, cursor: str) -> IdPage:
        """The page at `cursor`; `BulkJobInProgress` (retryable, the cursor still good) while its job runs."""
        return self._id_page(_IdCursor.decode(cursor))

    def _id_page(self, cursor: _IdCursor) -> IdPage:
        rows, following = self._job_page(cursor, self.id_page_records)
        return IdPage(ids=[row["Id"] for row in rows if row.get("Id")], next_cursor=following)

    def _job_page(self, cursor: _IdCursor, records: int) -> tuple[list[dict[str, str]], str | None]:
        """The result page of a query job at `cursor` (waited for before the first page; a job past
        `id_job_budget_seconds` raises the retryable `BulkJobInProgress`) and the cursor of the next."""
        bulk = self.bulk
        if cursor.locator is None:
            job = bulk.wait(cursor.job_id, budget_seconds=self.id_job_budget_seconds, query=True)
            if job.state != "JobComplete":
                raise CrmRequestRejected(
                    f"bulk query job {job.id} ended {job.state}: {job.error_message or 'no message'}",
                    error_code=job.state,
                )
        rows, locator = bulk.query_page(cursor.job_id, cursor.locator, page_records=records)
        return rows, None if locator is None else _IdCursor(cursor.job_id, locator).encode()

    # -- initial transfer (SPEC T1) ----------------------------------------------------------------
    def count_records(self, object_name: str) -> int:
        """`SELECT COUNT() FROM <Type>`: every live record of the object."""
        return self.count(RecordQuery(object=object_name, fields=("Id",)))

    def extract_page(
        self, query: RecordQuery, cursor: str | None, *, records: int, tracking: bool = False
    ) -> RecordPage:
        """A Bulk API 2.0 query job over the whole object (its window and order left out), read in result
        pages of `records` (`maxRecords`, `Sforce-Locator` until "null"). The first call creates the job
        and answers its first page, or no records and a cursor on the job while it still runs, so a
        retried step picks the same job up instead of starting another. CSV cells are typed as the REST
        API types them. Salesforce has no change tracking: `tracking` is ignored."""
        if cursor is None:
            whole = replace(query, window_field=None, window_start=None, window_end=None, order_by=(), ids=())
            job = self.bulk.create_query_job(render_query(whole))
            position = _IdCursor(job.id, None)
            try:
                rows, following = self._job_page(position, records)
            except BulkJobInProgress:
                logger.info("extract query job %s is still running; the next step picks it up", job.id)
                return RecordPage(records=[], next_cursor=position.encode())
        else:
            rows, following = self._job_page(_IdCursor.decode(cursor), records)
        return RecordPage(records=[_typed_row(row, query.field_types) for row in rows], next_cursor=following)
