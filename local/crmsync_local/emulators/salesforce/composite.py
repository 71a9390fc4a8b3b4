"""sObject Collections: create, update, upsert by external id, delete and retrieve up to 200 records per
call (2,000 for retrieve), with per-record SaveResults and `allOrNone` rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Response

from ..common import json_response
from .errors import ApiError, RecordError, malformed_id, rolled_back
from .ids import normalize_id
from .payload import field_list, json_body, record_values, render_record
from .schema import ObjectDef
from .store import Context, MultipleMatches, RecordFailure

if TYPE_CHECKING:
    from .app import Call, SalesforceEmulator

MAX_RECORDS = 200
MAX_RETRIEVE = 2000


def _too_many() -> ApiError:
    return ApiError(
        400,
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
    )


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


class CollectionsApi:
    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def register(self) -> None:
        app = self.emulator
        app.api("/composite/sobjects", ["POST"], self.create)
        app.api("/composite/sobjects", ["PATCH"], self.update)
        app.api("/composite/sobjects", ["DELETE"], self.delete)
        app.api("/composite/sobjects/<sobject>", ["GET"], self.retrieve)
        app.api("/composite/sobjects/<sobject>", ["POST"], self.retrieve_post)
        app.api("/composite/sobjects/<sobject>/<field>", ["PATCH"], self.upsert)

    # -- shared ----------------------------------------------------------------------------------------------
    def _definition(self, name: Any) -> ObjectDef:
        definition = self.emulator.org.schema.get(str(name)) if name else None
        if definition is None:
            raise ApiError(
                400,
                "INVALID_TYPE",
                f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure "
                "to append the '__c' after the entity name.",
            )
        return definition

    def _records(self, call: Call) -> tuple[list[Any], bool]:
        body = json_body(call.request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records array")
        records = body["records"]
        if len(records) > MAX_RECORDS:
            raise _too_many()
        return records, _flag(body.get("allOrNone", False))

    @staticmethod
    def _type_of(record: Any) -> Any:
        attributes = record.get("attributes") if isinstance(record, dict) else None
        return attributes.get("type") if isinstance(attributes, dict) else None

    def _run(
        self,
        call: Call,
        operations: list[Callable[[Context], dict[str, Any]]],
        all_or_none: bool,
        *,
        keeps_id: bool,
    ) -> Response:
        """Apply each operation; with allOrNone, any failure rolls every change back."""
        journal: list[Any] | None = [] if all_or_none else None
        ctx = call.context(journal)
        results = [operation(ctx) for operation in operations]
        if all_or_none and any(not result["success"] for result in results):
            self.emulator.org.store.rollback(journal or [])
            results = [
                result if not result["success"] else self._rolled_back(result, keeps_id) for result in results
            ]
        return json_response(results)

    @staticmethod
    def _rolled_back(result: dict[str, Any], keeps_id: bool) -> dict[str, Any]:
        """A success undone by allOrNone; a rolled-back insert has no id any more."""
        out: dict[str, Any] = {}
        if keeps_id and not result.get("created"):
            out["id"] = result["id"]
        out["success"] = False
        out["errors"] = [rolled_back().as_result()]
        if "created" in result:
            out["created"] = False
        return out

    @staticmethod
    def _failure(errors: list[RecordError], record_id: str | None = None, **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = {} if record_id is None else {"id": record_id}
        result.update({"success": False, "errors": [e.as_result() for e in errors], **extra})
        return result

    # -- create / update / upsert ----------------------------------------------------------------------------
    def create(self, call: Call) -> Response:
        records, all_or_none = self._records(call)
        store = self.emulator.org.store
        prepared = []
        for record in records:
            definition = self._definition(self._type_of(record))
            prepared.append((definition, record_values(definition, record)))

        def operation(definition: ObjectDef, values: dict[str, Any]) -> Callable[[Context], dict[str, Any]]:
            def run(ctx: Context) -> dict[str, Any]:
                try:
                    record_id = store.insert(definition, dict(values), ctx)
                except RecordFailure as failure:
                    return self._failure(failure.errors)
                return {"id": record_id, "success": True, "errors": []}

            return run

        return self._run(call, [operation(d, v) for d, v in prepared], all_or_none, keeps_id=False)

    def update(self, call: Call) -> Response:
        records, all_or_none = self._records(call)
        store = self.emulator.org.store
        operations: list[Callable[[Context], dict[str, Any]]] = []
        for record in records:
            if not isinstance(record, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
            raw_id = next((record[k] for k in record if k.lower() == "id"), None)
            body = {k: v for k, v in record.items() if k.lower() != "id"}
            record_id = normalize_id(raw_id) if isinstance(raw_id, str) else None
            type_name = self._type_of(record)
            definition = (
                self._definition(type_name)
                if type_name
                else self.emulator.org.schema.by_prefix(record_id[:3])
                if record_id
                else None
            )
            values = record_values(definition, body) if definition is not None else {}
            operations.append(self._update_operation(store, definition, raw_id, record_id, values))
        return self._run(call, operations, all_or_none, keeps_id=True)

    def _update_operation(
        self, store: Any, definition: ObjectDef | None, raw_id: Any, record_id: str | None, values: dict[str, Any]
    ) -> Callable[[Context], dict[str, Any]]:
        def run(ctx: Context) -> dict[str, Any]:
            if raw_id is None:
                return self._failure(
                    [RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])]
                )
            if record_id is None or definition is None:
                return self._failure([malformed_id(str(raw_id))])
            if record_id[:3] != definition.key_prefix:
                return self._failure(
                    [
                        RecordError(
                            "MALFORMED_ID", f"{definition.label} ID: id value of incorrect type: {raw_id}", ["Id"]
                        )
                    ],
                    record_id,
                )
            try:
                store.update(definition, record_id, dict(values), ctx)
            except RecordFailure as failure:
                return self._failure(failure.errors, record_id)
            return {"id": record_id, "success": True, "errors": []}

        return run

    def upsert(self, call: Call, sobject: str, field: str) -> Response:
        definition = self._definition(sobject)
        field_def = definition.field(field)
        if field_def is None or not (field_def.external_id or field_def.name == "Id"):
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {field} is not an External ID or indexed field for {definition.name}",
            )
        records, all_or_none = self._records(call)
        store = self.emulator.org.store
        prepared = []
        for record in records:
            type_name = self._type_of(record)
            if type_name is None or self._definition(type_name) is not definition:
                raise ApiError(
                    400, "INVALID_INPUT", f"The records must all be of type {definition.name} for this upsert"
                )
            values = record_values(definition, record)
            prepared.append((values.pop(field_def.name, None), values))

        def operation(key: Any, values: dict[str, Any]) -> Callable[[Context], dict[str, Any]]:
            def run(ctx: Context) -> dict[str, Any]:
                try:
                    record_id, created = store.upsert(definition, field_def, key, dict(values), ctx)
                except MultipleMatches as multiple:
                    return self._failure([multiple.as_record_error()], None, created=False)
                except RecordFailure as failure:
                    return self._failure(failure.errors, None, created=False)
                return {"id": record_id, "success": True, "errors": [], "created": created}

            return run

        return self._run(call, [operation(k, v) for k, v in prepared], all_or_none, keeps_id=True)

    # -- delete ----------------------------------------------------------------------------------------------------
    def delete(self, call: Call) -> Response:
        raw_ids = [i for i in call.request.args.get("ids", "").split(",") if i.strip()]
        if not raw_ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(raw_ids) > MAX_RECORDS:
            raise _too_many()
        store = self.emulator.org.store

        def operation(raw_id: str) -> Callable[[Context], dict[str, Any]]:
            def run(ctx: Context) -> dict[str, Any]:
                record_id = normalize_id(raw_id.strip())
                if record_id is None:
                    return self._failure([malformed_id(raw_id)])
                try:
                    store.delete(record_id, ctx)
                except RecordFailure as failure:
                    return self._failure(failure.errors, record_id)
                return {"id": record_id, "success": True, "errors": []}

            return run

        all_or_none = _flag(call.request.args.get("allOrNone", "false"))
        return self._run(call, [operation(i) for i in raw_ids], all_or_none, keeps_id=True)

    # -- retrieve ----------------------------------------------------------------------------------------------------
    def retrieve(self, call: Call, sobject: str) -> Response:
        args = call.request.args
        ids = [i for i in args.get("ids", "").split(",") if i.strip()]
        return self._retrieve(call, sobject, ids, args.get("fields", ""))

    def retrieve_post(self, call: Call, sobject: str) -> Response:
        body = json_body(call.request)
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with ids and fields")
        fields = body.get("fields") or []
        return self._retrieve(call, sobject, [str(i) for i in body["ids"]], ",".join(str(f) for f in fields))

    def _retrieve(self, call: Call, sobject: str, raw_ids: list[str], fields_spec: str) -> Response:
        definition = self.emulator.org.schema.get(sobject)
        if definition is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        fields = field_list(definition, fields_spec)
        if not fields:
            raise ApiError(400, "MISSING_ARGUMENT", "fields parameter is required")
        if not raw_ids:
            raise ApiError(400, "MISSING_ARGUMENT", "ids parameter is required")
        if len(raw_ids) > MAX_RETRIEVE:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_RETRIEVE} records into this call",
            )
        table = self.emulator.org.store.table(definition)
        out: list[Any] = []
        for raw_id in raw_ids:
            record_id = normalize_id(raw_id.strip())
            if record_id is None:
                raise ApiError(400, "MALFORMED_ID", f"malformed id {raw_id}")
            row = table.records.get(record_id)
            out.append(
                render_record(definition, row, call.version, fields)
                if row is not None and not row.get("IsDeleted")
                else None
            )
        return json_response(out)
