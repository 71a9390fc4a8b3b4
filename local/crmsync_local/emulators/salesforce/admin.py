"""The Salesforce emulator's control API under /__emulator/ (no session, not counted in stats or limits):
seed and read records, delete like Salesforce does, move the clock, tune behaviour, register connected
apps and users, expire sessions, and define custom objects and fields.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from ..common import CONTROL_PREFIX, json_response
from .clock import format_datetime, parse_datetime
from .ids import normalize_id
from .oauth import ConnectedApp, Credential, OAuthError, load_public_key
from .org import DEFAULT_USERNAME
from .payload import render_record
from .rest import NEWEST_VERSION
from .schema import SchemaError
from .store import Context, RecordFailure

if TYPE_CHECKING:
    from .app import SalesforceEmulator

_VERSION = f"{NEWEST_VERSION}.0"


def _bad_request(message: str) -> Response:
    return json_response({"error": message}, 400)


def _json(request: Request) -> Any:
    return request.get_json(force=True, silent=True)


class ControlApi:
    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def register(self) -> None:
        route = self.emulator.route
        route(f"{CONTROL_PREFIX}/sobjects/<sobject>", ["POST"], self.seed)
        route(f"{CONTROL_PREFIX}/sobjects/<sobject>", ["GET"], self.records)
        route(f"{CONTROL_PREFIX}/sobjects/<sobject>", ["DELETE"], self.purge)
        route(f"{CONTROL_PREFIX}/sobjects/<sobject>/<record_id>", ["DELETE"], self.delete)
        route(f"{CONTROL_PREFIX}/clock", ["GET"], self.clock)
        route(f"{CONTROL_PREFIX}/clock", ["POST"], self.set_clock)
        route(f"{CONTROL_PREFIX}/config", ["GET"], self.config)
        route(f"{CONTROL_PREFIX}/config", ["POST"], self.set_config)
        route(f"{CONTROL_PREFIX}/usage", ["GET"], self.usage)
        route(f"{CONTROL_PREFIX}/oauth/apps", ["POST"], self.register_app)
        route(f"{CONTROL_PREFIX}/oauth/apps", ["GET"], self.apps)
        route(f"{CONTROL_PREFIX}/oauth/users", ["POST"], self.register_user)
        route(f"{CONTROL_PREFIX}/oauth/refresh-tokens", ["POST"], self.issue_refresh_token)
        route(f"{CONTROL_PREFIX}/sessions", ["POST"], self.issue_session)
        route(f"{CONTROL_PREFIX}/sessions/expire", ["POST"], self.expire_sessions)
        route(f"{CONTROL_PREFIX}/schema/<sobject>", ["POST"], self.define_schema)
        route(f"{CONTROL_PREFIX}/schema/<sobject>/<field>", ["DELETE", "PATCH"], self.change_field)
        route(f"{CONTROL_PREFIX}/timeline/<sobject>/<record_id>", ["GET"], self.timeline)

    # -- records -------------------------------------------------------------------------------------------------
    def seed(self, request: Request, sobject: str) -> Response:
        rows = _json(request)
        if isinstance(rows, dict):
            rows = rows.get("records", [rows])
        if not isinstance(rows, list):
            return _bad_request("body must be a JSON list of records")
        with self.emulator.lock:
            org = self.emulator.org
            definition = org.schema.get(sobject)
            if definition is None:
                return json_response({"error": f"no object {sobject}"}, 404)
            ctx = Context(org.default_user_id, self.emulator.clock.now())
            try:
                ids = org.store.seed(definition, rows, ctx)
            except ValueError as exc:
                return _bad_request(str(exc))
        return json_response({"ids": ids}, 201)

    def records(self, request: Request, sobject: str) -> Response:
        with self.emulator.lock:
            org = self.emulator.org
            definition = org.schema.get(sobject)
            if definition is None:
                return json_response({"error": f"no object {sobject}"}, 404)
            org.store.purge_expired(self.emulator.clock.now(), self.emulator.retention)
            table = org.store.table(definition)
            out = []
            for row in table.records.values():
                record = render_record(definition, row, _VERSION)
                if row.get("IsDeleted"):
                    record["deletedDate"] = format_datetime(
                        table.delete_log.get(row["Id"]) or row["SystemModstamp"]
                    )
                out.append(record)
        return json_response({"totalSize": len(out), "records": out})

    def timeline(self, request: Request, sobject: str, record_id: str) -> Response:
        """The record's timeline: records of custom objects whose lookup points at it (e-mail events in
        `Marketing_Event__c`), oldest first by their date-time field, then creation."""
        normalized = normalize_id(record_id)
        with self.emulator.lock:
            org = self.emulator.org
            definition = org.schema.get(sobject)
            if definition is None or normalized is None:
                return json_response({"error": f"no {sobject} {record_id}"}, 404)
            out: list[dict[str, Any]] = []
            for related in org.schema.all():
                lookups = [
                    f.name
                    for f in related.fields.values()
                    if related.custom and f.type == "reference" and sobject in f.reference_to and f.custom
                ]
                if not lookups:
                    continue
                dated = next(
                    (f.name for f in related.fields.values() if f.custom and f.type == "datetime"), "CreatedDate"
                )
                for row in org.store.table(related).records.values():
                    if row.get("IsDeleted") or not any(row.get(name) == normalized for name in lookups):
                        continue
                    record = render_record(related, row, _VERSION)
                    out.append(
                        {
                            "object": related.name,
                            "at": record.get(dated) or record.get("CreatedDate"),
                            "record": record,
                        }
                    )
        out.sort(key=lambda a: (str(a["at"] or ""), str(a["record"].get("CreatedDate"))))
        return json_response({"sobject": sobject, "id": normalized, "totalSize": len(out), "records": out})

    def delete(self, request: Request, sobject: str, record_id: str) -> Response:
        when_raw = request.args.get("deletedDate")
        when = parse_datetime(when_raw) if when_raw else None
        if when_raw and when is None:
            return _bad_request(f"deletedDate is not a datetime: {when_raw}")
        hard = request.args.get("hard", "false").lower() == "true"
        with self.emulator.lock:
            org = self.emulator.org
            definition = org.schema.get(sobject)
            normalized = normalize_id(record_id)
            if definition is None or normalized is None:
                return json_response({"error": f"no {sobject} {record_id}"}, 404)
            ctx = Context(org.default_user_id, when or self.emulator.clock.now())
            try:
                org.store.delete(normalized, ctx, hard=hard, definition=definition)
            except RecordFailure as failure:
                status = 404 if failure.missing else 409
                return json_response({"error": failure.errors[0].as_result()}, status)
        return Response(status=204)

    def purge(self, request: Request, sobject: str) -> Response:
        """Every record of the object deleted for good at once (a benchmark or test starting again from an
        empty object without one call per record)."""
        with self.emulator.lock:
            org = self.emulator.org
            definition = org.schema.get(sobject)
            if definition is None:
                return json_response({"error": f"no object {sobject}"}, 404)
            ctx = Context(org.default_user_id, self.emulator.clock.now())
            ids = list(org.store.table(definition).records)
            for record_id in ids:
                org.store.delete(record_id, ctx, hard=True, definition=definition)
        return json_response({"deleted": len(ids)})

    # -- clock and behaviour ----------------------------------------------------------------------------------------
    def clock(self, request: Request) -> Response:
        return json_response(self.emulator.clock.describe())

    def set_clock(self, request: Request) -> Response:
        body = _json(request) or {}
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object")
        clock = self.emulator.clock
        if body.get("real_time"):
            clock.use_real_time()
        if "now" in body:
            moment = parse_datetime(str(body["now"]), naive_is_utc=True)
            if moment is None:
                return _bad_request(f"now is not an ISO 8601 datetime: {body['now']!r}")
            clock.set(moment, frozen=bool(body.get("frozen", True)))
        elif "frozen" in body:
            clock.set(clock.now(), frozen=bool(body["frozen"]))
        if "advance_seconds" in body:
            clock.advance(float(body["advance_seconds"]))
        return json_response(clock.describe())

    def config(self, request: Request) -> Response:
        return json_response(self.emulator.config.describe())

    def set_config(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object of settings")
        with self.emulator.lock:
            try:
                self.emulator.config.update(body)
            except (ValueError, TypeError) as exc:
                return _bad_request(str(exc))
            if "api_requests_used" in body:
                self.emulator.org.api_requests_used = int(body["api_requests_used"])
        return json_response(self.emulator.config.describe())

    def usage(self, request: Request) -> Response:
        org = self.emulator.org
        return json_response(
            {
                "api_requests_used": org.api_requests_used,
                "bulk_batches_used": org.bulk_batches_used,
                "bulk_query_jobs_used": org.bulk_query_jobs_used,
                "open_query_cursors": len(org.cursors),
            }
        )

    # -- OAuth ------------------------------------------------------------------------------------------------------
    def register_app(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict) or not body.get("client_id"):
            return _bad_request("a connected app needs client_id")
        pem = body.get("certificate") or body.get("public_key")
        try:
            key = load_public_key(str(pem)) if pem else None
        except ValueError as exc:
            return _bad_request(f"certificate/public_key is not a usable RSA PEM: {exc}")
        username = body.get("username") or body.get("run_as")
        with self.emulator.lock:
            org = self.emulator.org
            if username and org.find_user(str(username)) is None:
                org.add_user(
                    str(username),
                    "Run As",
                    "User",
                    "runas",
                    Context(org.default_user_id, self.emulator.clock.now()),
                )
            app = ConnectedApp(
                str(body["client_id"]),
                str(body["client_secret"]) if body.get("client_secret") else None,
                key,
                str(username) if username else None,
            )
            org.oauth.register_app(app)
        return json_response(app.describe(), 201)

    def apps(self, request: Request) -> Response:
        return json_response({"apps": [app.describe() for app in self.emulator.org.oauth.apps.values()]})

    def register_user(self, request: Request) -> Response:
        body = _json(request)
        if not isinstance(body, dict) or not body.get("username"):
            return _bad_request("a user needs username")
        username = str(body["username"])
        with self.emulator.lock:
            org = self.emulator.org
            user_id = org.add_user(
                username,
                str(body.get("first_name", "Api")),
                str(body.get("last_name", username.split("@")[0])),
                str(body.get("alias", username.split("@")[0]))[:8],
                Context(org.default_user_id, self.emulator.clock.now()),
            )
            if body.get("password") is not None:
                org.oauth.register_credential(
                    Credential(username, str(body["password"]), str(body.get("security_token", "")))
                )
        return json_response({"id": user_id, "username": username}, 201)

    def issue_refresh_token(self, request: Request) -> Response:
        """A refresh token for a connected app and a user, as the web-server flow would have left it."""
        body = _json(request)
        if not isinstance(body, dict) or not body.get("client_id"):
            return _bad_request("a refresh token needs client_id (and optionally username)")
        with self.emulator.lock:
            org = self.emulator.org
            username = str(body.get("username") or DEFAULT_USERNAME)
            if org.find_user(username) is None:
                return json_response({"error": f"no user {username}"}, 404)
            try:
                token = org.oauth.issue_refresh_token(str(body["client_id"]), username)
            except OAuthError as exc:
                return json_response(exc.body, 404)
        return json_response({"refresh_token": token, "username": username}, 201)

    def issue_session(self, request: Request) -> Response:
        """A token for a user without an OAuth round trip (tests and benchmarks that are not about OAuth)."""
        body = _json(request) or {}
        with self.emulator.lock:
            org = self.emulator.org
            username = str(body.get("username") or "") if isinstance(body, dict) else ""
            user_id = org.find_user(username) if username else org.default_user_id
            if user_id is None:
                return json_response({"error": f"no user {username}"}, 404)
            now = self.emulator.clock.now()
            session = org.oauth.issue(user_id, username or "default", None, now)
            base = self.emulator.base_url or request.host_url.rstrip("/")
        return json_response(
            {
                "access_token": session.token,
                "instance_url": base,
                "id": f"{base}/id/{org.org_id}/{user_id}",
                "token_type": "Bearer",
                "issued_at": str(int(now.astimezone(UTC).timestamp() * 1000)),
            },
            201,
        )

    def expire_sessions(self, request: Request) -> Response:
        return json_response({"expired": self.emulator.org.oauth.expire_all()})

    # -- schema ---------------------------------------------------------------------------------------------------------
    def define_schema(self, request: Request, sobject: str) -> Response:
        body = _json(request) or {}
        if not isinstance(body, dict):
            return _bad_request("body must be a JSON object with optional label and fields")
        with self.emulator.lock:
            try:
                definition = self.emulator.org.schema.define(sobject, body)
            except (SchemaError, ValueError, TypeError) as exc:
                return _bad_request(str(exc))
            return json_response(definition.describe(_VERSION), 201)

    def change_field(self, request: Request, sobject: str, field: str) -> Response:
        """Schema drift on demand: DELETE removes a custom field, PATCH {"type": ...} changes its type;
        either way the records lose their values of it."""
        org = self.emulator.org
        with self.emulator.lock:
            definition = org.schema.get(sobject)
            if definition is None:
                return _bad_request(f"no object {sobject!r}")
            try:
                if request.method == "DELETE":
                    removed = definition.remove_field(field)
                    org.store.drop_field(definition, removed.name)
                    return json_response({"removed": removed.name})
                body = _json(request) or {}
                if not isinstance(body, dict) or "type" not in body:
                    return _bad_request("give the field's new 'type'")
                changed = org.schema.retype_field(definition.name, field, body)
                org.store.drop_field(definition, changed.name)
                return json_response(changed.describe())
            except (SchemaError, ValueError, TypeError) as exc:
                return _bad_request(str(exc))
