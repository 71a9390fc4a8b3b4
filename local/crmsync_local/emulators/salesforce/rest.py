"""REST resources: versions, resources, limits, describe, sObject rows and external-id upserts, query /
queryAll with server-side cursors, and the data-replication resources (`deleted`, `updated`).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from ..common import json_response
from .clock import format_datetime, parse_datetime, truncate_minute
from .errors import ApiError, not_found
from .ids import normalize_id
from .org import Org, QueryCursor
from .payload import field_list, json_body, record_values, render_record
from .schema import MASTER_RECORD_TYPE_ID, PICKLIST_TYPES, FieldDef, ObjectDef
from .soql import compile_query
from .store import MultipleMatches, RecordFailure

if TYPE_CHECKING:
    from .app import Call, SalesforceEmulator

DEFAULT_BATCH = 2000
MIN_BATCH = 200
OLDEST_VERSION = 31
NEWEST_VERSION = 62
_SEASONS = ("Winter", "Spring", "Summer")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


def _etag(*parts: str) -> str:
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


def release_label(major: int) -> str:
    """59.0 is Winter '24, 60.0 Spring '24, 61.0 Summer '24, 62.0 Winter '25, and so on."""
    offset = major - 59
    return f"{_SEASONS[offset % 3]} '{24 + offset // 3:02d}"


def record_failure_response(failure: RecordFailure) -> ApiError:
    """A single-record REST call that failed: 404 when the row is missing or deleted, else 400."""
    if failure.missing:
        return not_found()
    status = 404 if failure.errors[0].status_code == "ENTITY_IS_DELETED" else 400
    exc = ApiError.from_record_error(status, failure.errors[0])
    exc.body = [error.as_rest() for error in failure.errors]
    return exc


class RestApi:
    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    @property
    def org(self) -> Org:
        return self.emulator.org

    def register(self) -> None:
        app = self.emulator
        app.route("/services/data", ["GET"], self.versions)
        app.api("/", ["GET"], self.resources)
        app.api("/limits", ["GET"], self.limits)
        app.api("/sobjects", ["GET"], self.describe_global)
        app.api("/sobjects/<sobject>", ["GET"], self.sobject_info)
        app.api("/sobjects/<sobject>", ["POST"], self.create)
        app.api("/sobjects/<sobject>/describe", ["GET"], self.describe)
        app.api("/ui-api/object-info/<sobject>/picklist-values/<record_type_id>", ["GET"], self.picklist_values)
        app.api(
            "/ui-api/object-info/<sobject>/picklist-values/<record_type_id>/<field>", ["GET"], self.picklist_values
        )
        app.api("/sobjects/<sobject>/deleted", ["GET"], self.get_deleted)
        app.api("/sobjects/<sobject>/updated", ["GET"], self.get_updated)
        app.api("/sobjects/<sobject>/<record_id>", ["GET"], self.retrieve)
        app.api("/sobjects/<sobject>/<record_id>", ["PATCH"], self.update)
        app.api("/sobjects/<sobject>/<record_id>", ["DELETE"], self.delete)
        app.api("/sobjects/<sobject>/<field>/<path:value>", ["GET"], self.retrieve_by_external_id)
        app.api("/sobjects/<sobject>/<field>/<path:value>", ["PATCH"], self.upsert)
        app.api("/sobjects/<sobject>/<field>/<path:value>", ["DELETE"], self.delete_by_external_id)
        app.api("/query", ["GET"], self.query)
        app.api("/queryAll", ["GET"], self.query_all)
        app.api("/query/<locator>", ["GET"], self.query_more)
        app.api("/queryAll/<locator>", ["GET"], self.query_more)

    # -- discovery ----------------------------------------------------------------------------------------------
    def versions(self, request: Request) -> Response:
        """`GET /services/data/` needs no session, as on Salesforce."""
        return json_response(
            [
                {"label": release_label(major), "url": f"/services/data/v{major}.0", "version": f"{major}.0"}
                for major in range(OLDEST_VERSION, NEWEST_VERSION + 1)
            ]
        )

    def resources(self, call: Call) -> Response:
        base = f"/services/data/v{call.version}"
        names = ("tooling", "metadata", "limits", "sobjects", "composite", "query", "queryAll", "search", "recent")
        return json_response({name: f"{base}/{name}" for name in names} | {"jobs": f"{base}/jobs"})

    def limits(self, call: Call) -> Response:
        config = self.emulator.config
        org = self.org

        def limit(maximum: int, used: int = 0) -> dict[str, int]:
            return {"Max": maximum, "Remaining": max(0, maximum - used)}

        return json_response(
            {
                "ConcurrentAsyncGetReportInstances": limit(200),
                "DailyApiRequests": limit(config.daily_api_limit, org.api_requests_used),
                "DailyAsyncApexExecutions": limit(250_000),
                "DailyBulkApiBatches": limit(config.daily_bulk_api_batches, org.bulk_batches_used),
                "DailyBulkV2QueryFileStorageMB": limit(976_562),
                "DailyBulkV2QueryJobs": limit(config.daily_bulk_v2_query_jobs, org.bulk_query_jobs_used),
                "DataStorageMB": limit(5_120),
                "FileStorageMB": limit(20_480),
                "HourlyODataCallout": limit(20_000),
            }
        )

    def describe_global(self, call: Call) -> Response:
        return json_response(self.org.schema.describe_global(call.version))

    def sobject_info(self, call: Call, sobject: str) -> Response:
        definition = self.definition(sobject)
        return json_response({"objectDescribe": definition.describe_basic(call.version), "recentItems": []})

    def describe(self, call: Call, sobject: str) -> Response:
        """With `If-Modified-Since` (an HTTP date), 304 and no body when the object's metadata has not
        changed since; a change within that same second still answers the full describe."""
        definition = self.definition(sobject)
        since = call.request.headers.get("If-Modified-Since")
        if since:
            try:
                moment = parsedate_to_datetime(since)
            except (TypeError, ValueError):
                moment = None
            changed_at = definition.metadata_changed_at.replace(microsecond=0)
            if moment is not None and moment.tzinfo is not None and changed_at < moment:
                return Response(status=304)
        return json_response(definition.describe(call.version))

    def picklist_values(self, call: Call, sobject: str, record_type_id: str, field: str | None = None) -> Response:
        """UI API: the picklist values a record type offers (every picklist of the object, or one)."""
        definition = self.definition(sobject)
        record_type = definition.record_type(record_type_id)
        if record_type is None and record_type_id[:15] != MASTER_RECORD_TYPE_ID[:15]:
            raise ApiError(404, "NOT_FOUND", f"Invalid record type id: {record_type_id}")
        base = (
            f"/services/data/v{call.version}/ui-api/object-info/{definition.name}/picklist-values/{record_type_id}"
        )

        def one(field_def: FieldDef) -> dict[str, Any]:
            offered = record_type.picklists.get(field_def.name) if record_type else None
            values = [
                v
                for v in field_def.picklist_values
                if v not in field_def.inactive_values and (offered is None or v in offered)
            ]
            default = (record_type.defaults.get(field_def.name) if record_type else None) or (
                field_def.default_value if field_def.default_value in values else None
            )

            def entry(value: str) -> dict[str, Any]:
                return {"attributes": None, "label": field_def.label_of(value), "validFor": [], "value": value}

            return {
                "controllerValues": {},
                "defaultValue": entry(default) if default else None,
                "eTag": _etag(definition.name, field_def.name, *values),
                "url": f"{base}/{field_def.name}",
                "values": [entry(v) for v in values],
            }

        if field is not None:
            field_def = definition.field(field)
            if field_def is None or field_def.type not in PICKLIST_TYPES:
                raise ApiError(404, "NOT_FOUND", f"{field} is not a picklist field of {definition.name}")
            return json_response(one(field_def))
        return json_response(
            {
                "eTag": _etag(definition.name, record_type_id),
                "picklistFieldValues": {
                    f.name: one(f) for f in definition.fields.values() if f.type in PICKLIST_TYPES
                },
            }
        )

    # -- rows ----------------------------------------------------------------------------------------------------
    def definition(self, name: str) -> ObjectDef:
        definition = self.org.schema.get(name)
        if definition is None:
            raise not_found()
        return definition

    def row_id(self, definition: ObjectDef, raw: str) -> str:
        """An id in the path; anything else is read as an external-id field name, which does not exist."""
        record_id = normalize_id(raw)
        if record_id is None or record_id[:3] != definition.key_prefix:
            raise not_found(f"Provided external ID field does not exist or is not accessible: {raw}")
        return record_id

    def create(self, call: Call, sobject: str) -> Response:
        definition = self.definition(sobject)
        values = record_values(definition, json_body(call.request))
        try:
            record_id = self.org.store.insert(definition, values, call.context())
        except RecordFailure as failure:
            raise record_failure_response(failure) from failure
        return json_response({"id": record_id, "success": True, "errors": []}, 201)

    def retrieve(self, call: Call, sobject: str, record_id: str) -> Response:
        definition = self.definition(sobject)
        record_id = self.row_id(definition, record_id)
        fields = field_list(definition, call.request.args.get("fields"))
        row = self.org.store.table(definition).records.get(record_id)
        if row is None:
            raise not_found()
        if row.get("IsDeleted"):
            raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        return json_response(render_record(definition, row, call.version, fields))

    def update(self, call: Call, sobject: str, record_id: str) -> Response:
        definition = self.definition(sobject)
        record_id = self.row_id(definition, record_id)
        values = record_values(definition, json_body(call.request))
        try:
            self.org.store.update(definition, record_id, values, call.context())
        except RecordFailure as failure:
            raise record_failure_response(failure) from failure
        return Response(status=204)

    def delete(self, call: Call, sobject: str, record_id: str) -> Response:
        definition = self.definition(sobject)
        record_id = self.row_id(definition, record_id)
        try:
            self.org.store.delete(record_id, call.context(), definition=definition)
        except RecordFailure as failure:
            raise record_failure_response(failure) from failure
        return Response(status=204)

    # -- external ids --------------------------------------------------------------------------------------------
    def external_field(self, definition: ObjectDef, name: str) -> FieldDef:
        field_def = definition.field(name)
        if field_def is None or not (field_def.external_id or field_def.name == "Id"):
            raise not_found(f"Provided external ID field does not exist or is not accessible: {name}")
        return field_def

    def external_key(self, field_def: FieldDef, value: str) -> Any:
        if field_def.type in ("double", "int", "currency", "percent"):
            try:
                return float(value) if field_def.type != "int" else int(value)
            except ValueError as exc:
                raise not_found() from exc
        return value

    def _matches(self, definition: ObjectDef, field_def: FieldDef, value: str) -> list[str]:
        key = self.external_key(field_def, value)
        if field_def.name == "Id":
            key = normalize_id(value) or value
        return self.org.store.find_by_field(self.org.store.table(definition), field_def, key)

    def _multiple(self, call: Call, definition: ObjectDef, ids: list[str]) -> Response:
        return json_response([f"/services/data/v{call.version}/sobjects/{definition.name}/{i}" for i in ids], 300)

    def retrieve_by_external_id(self, call: Call, sobject: str, field: str, value: str) -> Response:
        definition = self.definition(sobject)
        field_def = self.external_field(definition, field)
        fields = field_list(definition, call.request.args.get("fields"))
        matches = self._matches(definition, field_def, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:
            return self._multiple(call, definition, matches)
        row = self.org.store.table(definition).records[matches[0]]
        return json_response(render_record(definition, row, call.version, fields))

    def upsert(self, call: Call, sobject: str, field: str, value: str) -> Response:
        definition = self.definition(sobject)
        field_def = self.external_field(definition, field)
        values = record_values(definition, json_body(call.request))
        try:
            record_id, created = self.org.store.upsert(
                definition, field_def, self.external_key(field_def, value), values, call.context()
            )
        except MultipleMatches as multiple:
            return self._multiple(call, definition, multiple.ids)
        except RecordFailure as failure:
            raise record_failure_response(failure) from failure
        body = {"id": record_id, "success": True, "errors": [], "created": created}
        return json_response(body, 201 if created else 200)

    def delete_by_external_id(self, call: Call, sobject: str, field: str, value: str) -> Response:
        definition = self.definition(sobject)
        field_def = self.external_field(definition, field)
        matches = self._matches(definition, field_def, value)
        if not matches:
            raise not_found()
        if len(matches) > 1:
            return self._multiple(call, definition, matches)
        try:
            self.org.store.delete(matches[0], call.context(), definition=definition)
        except RecordFailure as failure:
            raise record_failure_response(failure) from failure
        return Response(status=204)

    # -- query ---------------------------------------------------------------------------------------------------
    def query(self, call: Call) -> Response:
        return self._query(call, include_deleted=False)

    def query_all(self, call: Call) -> Response:
        return self._query(call, include_deleted=True)

    def page_size(self, request: Request) -> int:
        configured = self.emulator.config.query_page_size
        if configured:
            return int(configured)
        match = _BATCH_SIZE.search(request.headers.get("Sforce-Query-Options", ""))
        if match is None:
            return DEFAULT_BATCH
        return max(MIN_BATCH, min(DEFAULT_BATCH, int(match.group(1))))

    def _query(self, call: Call, *, include_deleted: bool) -> Response:
        query = call.request.args.get("q")
        if query is None:
            raise ApiError(400, "MALFORMED_QUERY", "A query string must be provided.")
        store = self.org.store
        compiled = compile_query(query, self.org.schema, store, call.now)
        if include_deleted:
            store.purge_expired(call.now, self.emulator.retention)
        rows = compiled.run(store, include_deleted=include_deleted)
        if compiled.count_only:
            return json_response({"totalSize": len(rows), "done": True, "records": []})
        if compiled.aggregates:
            return json_response({"totalSize": 1, "done": True, "records": [compiled.aggregate_row(rows)]})
        size = self.page_size(call.request)
        resource = "queryAll" if include_deleted else "query"
        body: dict[str, Any] = {"totalSize": len(rows), "done": len(rows) <= size}
        if len(rows) > size:
            locator = self.org.ids.next("01g")
            cursor = QueryCursor(locator, call.session.user_id, compiled, rows, size, call.now)
            self.org.open_cursor(cursor, self.emulator.config.max_query_cursors)
            body["nextRecordsUrl"] = f"/services/data/v{call.version}/{resource}/{locator}-{size}"
        body["records"] = [compiled.render(row, call.version) for row in rows[:size]]
        return json_response(body)

    def query_more(self, call: Call, locator: str) -> Response:
        name, _, offset_text = locator.rpartition("-")
        timeout = timedelta(seconds=self.emulator.config.query_cursor_timeout_seconds)
        cursor = self.org.cursor(name, call.now, timeout) if name and offset_text.isdigit() else None
        offset = int(offset_text) if offset_text.isdigit() else -1
        if cursor is None or not 0 <= offset < len(cursor.rows):
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        end = offset + cursor.page_size
        done = end >= len(cursor.rows)
        resource = "queryAll" if call.request.path.rstrip("/").split("/")[-2] == "queryAll" else "query"
        body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": done}
        if done:
            self.org.cursors.pop(name, None)  # the last batch releases the cursor
        else:
            body["nextRecordsUrl"] = f"/services/data/v{call.version}/{resource}/{name}-{end}"
        body["records"] = [cursor.query.render(row, call.version) for row in cursor.rows[offset:end]]
        return json_response(body)

    # -- data replication ------------------------------------------------------------------------------------------
    def _window(self, call: Call, horizon_days: float) -> tuple[datetime, datetime, datetime]:
        """(start, latestDateCovered, earliestDateAvailable), all on whole minutes, validated as documented."""
        args = call.request.args
        bounds = []
        for name in ("start", "end"):
            raw = args.get(name)
            if not raw:
                raise ApiError(400, "MISSING_ARGUMENT", f"Missing parameter: {name}")
            moment = parse_datetime(raw.replace(" ", "+"), allow_date_only=False)
            if moment is None:
                raise ApiError(400, "INVALID_REPLICATION_DATE", f"Invalid {name} date: {raw}")
            bounds.append(truncate_minute(moment))  # the API ignores seconds
        start, end = bounds
        # "must chronologically precede the specified endDate value by more than one minute" (getDeleted);
        # deletions are answered for [start, latestDateCovered), so the end minute itself is not covered.
        if end - start <= timedelta(minutes=1):
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                "startDate must chronologically precede endDate by more than one minute",
            )
        earliest = truncate_minute(call.now - timedelta(days=horizon_days))
        if start < earliest:
            raise ApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate {format_datetime(start)} is before the earliest date available for replication "
                f"{format_datetime(earliest)}",
            )
        latest = min(end, truncate_minute(call.now))
        return start, latest, earliest

    def _check_id_limit(self, count: int) -> None:
        limit = self.emulator.config.deleted_id_limit
        if count > limit:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"More than {limit} ids were found in the requested time span; choose start and end dates that "
                "are closer together",
            )

    def get_deleted(self, call: Call, sobject: str) -> Response:
        definition = self.definition(sobject)
        store = self.org.store
        store.purge_expired(call.now, self.emulator.retention, force=True)
        start, latest, earliest = self._window(call, self.emulator.config.deleted_retention_days)
        log = store.table(definition).delete_log
        deleted = sorted((when, record_id) for record_id, when in log.items() if start <= when < latest)
        self._check_id_limit(len(deleted))
        return json_response(
            {
                "deletedRecords": [
                    {"id": record_id, "deletedDate": format_datetime(when)} for when, record_id in deleted
                ],
                "earliestDateAvailable": format_datetime(earliest),
                "latestDateCovered": format_datetime(latest),
            }
        )

    def get_updated(self, call: Call, sobject: str) -> Response:
        definition = self.definition(sobject)
        start, latest, _ = self._window(call, self.emulator.config.updated_window_days)
        updated = sorted(
            (row["SystemModstamp"], row["Id"])
            for row in self.org.store.table(definition).live()
            if start <= row["SystemModstamp"] < latest
        )
        self._check_id_limit(len(updated))
        return json_response(
            {"ids": [record_id for _, record_id in updated], "latestDateCovered": format_datetime(latest)}
        )
