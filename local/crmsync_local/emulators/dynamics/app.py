"""The Dynamics 365 / Dataverse emulator: one HTTPS server playing both Microsoft Entra ID and the org.

    authority  https://127.0.0.1:<port>/<tenant-id>          (msal: authority=…, instance_discovery=False)
    org URL    https://127.0.0.1:<port>                       (token scope: <org URL>/.default)
    Web API    https://127.0.0.1:<port>/api/data/v9.2/
    control    https://127.0.0.1:<port>/__emulator/…          (not authenticated, not counted)

Every Web API request needs a bearer token this server issued for the org (`aud` = org URL, `tid` = the
org's tenant) to a registered app; each app is the org's application user, which WhoAmI answers and which
owns the records it creates. Service protection limits apply per user before anything else runs.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from werkzeug.http import http_date
from werkzeug.wrappers import Request, Response

from ..common import CONTROL_PREFIX, EmulatorApp, json_response
from . import batch, errors
from .audit import audit_entity, organization_entity
from .changetracking import ChangeTracker
from .clock import EmulatorClock, parse_instant, utc_iso
from .identity import AadError, EntraId, InvalidToken, RegisteredApp
from .limits import ServiceProtection
from .metadata import EntityDef, MetadataRegistry, stable_id
from .odata import parse_prefer
from .payload import PayloadReader
from .store import RecordStore, RecordWriter
from .webapi import API_PATH, ApiResponse, CallContext, Config, WebApi

DEFAULT_TENANT_ID = "7d1c4a3e-2b5f-4e8a-9c6d-0f1e2a3b4c5d"
ORGANIZATION_ID = "3f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
BUSINESS_UNIT_ID = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
ADMIN_USER_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
ANONYMOUS = "anonymous"


class DynamicsEmulator(EmulatorApp):
    name = "dynamics"

    def __init__(self, *, tenant_id: str = DEFAULT_TENANT_ID) -> None:
        super().__init__()
        self.tenant_id = tenant_id.lower()
        self.clock = EmulatorClock()
        self.identity = EntraId(self.tenant_id)
        self.limits = ServiceProtection()
        self.config = Config()
        self._build_org()
        self._add_routes()

    # -- addresses ---------------------------------------------------------------------------------------
    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def resource(self) -> str:
        return self.base_url

    @property
    def scope(self) -> str:
        return f"{self.base_url}/.default"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PATH}"

    # -- state -------------------------------------------------------------------------------------------
    def _build_org(self) -> None:
        self.registry = MetadataRegistry()
        self.registry.add(audit_entity())
        self.registry.add(organization_entity())
        self.store = RecordStore(self.registry)
        self.tracker = ChangeTracker(self.store)
        self.writer = RecordWriter(self.store)
        self.reader = PayloadReader(self.registry, self.store)
        self.webapi = WebApi(
            self.registry, self.store, self.tracker, self.clock, self.config, self.lock, self._whoami
        )
        self._app_users: dict[str, str] = {}
        users = self.registry.entities["systemuser"]
        self.writer.create(
            users,
            {
                "firstname": "System",
                "lastname": "Administrator",
                "domainname": "admin@crmsync.emulator",
                "internalemailaddress": "admin@crmsync.emulator",
                "accessmode": 0,
            },
            caller_id=None,
            now_iso=utc_iso(self.clock.now()),
            record_id=ADMIN_USER_ID,
        )
        self.writer.create(
            self.registry.entities["organization"],
            {"name": "crmsync emulator", "isauditenabled": False},
            caller_id=ADMIN_USER_ID,
            now_iso=utc_iso(self.clock.now()),
            record_id=ORGANIZATION_ID,
        )

    def reset_state(self) -> None:
        self.clock.reset()
        self.identity.reset()
        self.limits.reset()
        self.config.max_page_size = Config().max_page_size
        self._build_org()

    def register_app(self, **kwargs: Any) -> RegisteredApp:
        """Register a client application; in the org's tenant it also becomes an application user."""
        app = self.identity.register(**kwargs)
        if app.tenant_id == self.tenant_id and app.client_id not in self._app_users:
            user_id = stable_id("appuser", app.client_id)
            with self.lock:
                users = self.registry.entities["systemuser"]
                if self.store.get(users, user_id) is None:
                    self.writer.create(
                        users,
                        {
                            "firstname": "#",
                            "lastname": app.display_name,
                            "domainname": f"{app.client_id}@crmsync.emulator",
                            "applicationid": app.client_id,
                            "azureactivedirectoryobjectid": app.object_id,
                            "accessmode": 4,
                        },
                        caller_id=ADMIN_USER_ID,
                        now_iso=utc_iso(self.clock.now()),
                        record_id=user_id,
                    )
                self._app_users[app.client_id] = user_id
        return app

    def _whoami(self, user_id: str | None) -> dict[str, str]:
        return {
            "BusinessUnitId": BUSINESS_UNIT_ID,
            "UserId": user_id or ADMIN_USER_ID,
            "OrganizationId": ORGANIZATION_ID,
        }

    # -- routes ------------------------------------------------------------------------------------------
    def _add_routes(self) -> None:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        self.route(f"{API_PATH}/", methods, self._web_api, endpoint="webapi-root")
        self.route(f"{API_PATH}/<path:resource>", methods, self._web_api, endpoint="webapi")
        self.route("/<tenant>/v2.0/.well-known/openid-configuration", ["GET"], self._openid_configuration)
        self.route("/<tenant>/.well-known/openid-configuration", ["GET"], self._openid_configuration)
        self.route("/<tenant>/discovery/v2.0/keys", ["GET"], self._keys)
        self.route("/<tenant>/discovery/keys", ["GET"], self._keys)
        self.route("/<tenant>/oauth2/v2.0/token", ["POST"], self._token)
        self.route("/<tenant>/oauth2/token", ["POST"], self._token_v1)
        control = CONTROL_PREFIX
        self.route(f"{control}/info", ["GET"], self._control_info)
        self.route(f"{control}/records/<entity_set>", ["GET"], self._control_list_records)
        self.route(f"{control}/records/<entity_set>", ["POST"], self._control_put_records)
        self.route(f"{control}/records/<entity_set>/<record_id>", ["DELETE"], self._control_delete_record)
        self.route(f"{control}/clock", ["GET", "POST"], self._control_clock)
        self.route(f"{control}/config", ["GET", "POST"], self._control_config)
        self.route(f"{control}/changetracking/expire", ["POST"], self._control_expire_tokens)
        self.route(f"{control}/apps", ["GET", "POST"], self._control_apps)
        self.route(f"{control}/resources", ["GET", "POST"], self._control_resources)
        self.route(f"{control}/tokens/expire", ["POST"], self._control_expire_access_tokens)
        self.route(f"{control}/entities", ["GET", "POST"], self._control_entities)
        self.route(f"{control}/auditing", ["GET", "POST"], self._control_auditing)
        self.route(f"{control}/entities/<logical>/attributes/<name>", ["DELETE", "PATCH"], self._control_attribute)
        self.route(f"{control}/timeline/<entity_set>/<record_id>", ["GET"], self._control_timeline)

    def stats_key(self, request: Request, rule: str) -> str:
        """Web API calls are counted per resource (`GET /api/data/v9.2/contacts({key})`), not per route."""
        if not request.path.startswith(API_PATH):
            return super().stats_key(request, rule)
        return _resource_key(request.method, request.path)

    # -- errors in the vendors' shapes -------------------------------------------------------------------
    def error_response(self, status: int, request: Request) -> Response:
        """Injected faults answer as Entra ID does on identity paths and as Dataverse does elsewhere."""
        if not request.path.startswith(API_PATH):
            known = {
                400: (
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'grant_type'.",
                ),
                401: ("invalid_client", 7000215, "Invalid client secret provided."),
            }
            transient = "temporarily_unavailable" if status in {429, 503} else "server_error"
            error, code, text = known.get(
                status, (transient, 90033, "A transient error has occurred. Please try again.")
            )
            return self._json(AadError(status, error, code, text).body(self.clock.now()), status)
        dataverse = {
            400: errors.bad_request("Injected fault."),
            401: errors.authentication_required(),
            403: errors.DataverseError(
                403, errors.PRIVILEGE_DENIED, "Principal user is missing prvReadContact privilege."
            ),
            404: errors.DataverseError(
                404, errors.OBJECT_DOES_NOT_EXIST, "Injected fault: the record does not exist."
            ),
            412: errors.version_mismatch(),
            429: errors.too_many_requests(self.limits.config.max_requests, self.limits.config.window_seconds, 5),
        }
        exc = dataverse.get(status) or errors.DataverseError(
            status, errors.UNEXPECTED, "An unexpected error occurred."
        )
        return self._api_response(ApiResponse.error(exc))

    def _json(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        response = json_response(payload, status, headers)
        response.headers["Date"] = http_date(self.clock.timestamp())
        return response

    def _api_response(self, api: ApiResponse) -> Response:
        response = Response(api.body, status=api.status)
        del response.headers["Content-Type"]  # only what the Web API itself says (a 204 has none)
        for name, value in api.headers:
            response.headers[name] = value
        response.headers["Date"] = http_date(self.clock.timestamp())
        request_id = str(uuid.uuid4())
        response.headers["REQ_ID"] = request_id
        response.headers["x-ms-service-request-id"] = request_id
        return response

    # -- service protection wraps the whole Web API request -----------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith(API_PATH):
            return super().dispatch(request)
        user = self._throttle_key(request)
        started = time.monotonic()
        try:
            limit_headers = self.limits.admit(user)
        except errors.DataverseError as exc:
            self.stats.count(self.stats_key(request, request.path))
            return self._api_response(ApiResponse.error(exc))
        try:
            response = super().dispatch(request)
        finally:
            self.limits.release(user, started)
        for name, value in limit_headers.items():
            response.headers.setdefault(name, value)
        return response

    def _throttle_key(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return self.identity.unverified_subject(header[7:].strip()) or ANONYMOUS
        return ANONYMOUS

    # -- Web API -------------------------------------------------------------------------------------------
    def _authenticate(self, request: Request) -> str:
        """The caller's systemuserid, or a 401 DataverseError with `WWW-Authenticate`."""
        header = request.headers.get("Authorization", "")
        challenge = f'authorization_uri="{self.authority}/oauth2/authorize", resource_id="{self.resource}/"'
        if header[:7].lower() != "bearer ":
            exc = errors.authentication_required()
            exc.headers["WWW-Authenticate"] = f"Bearer {challenge}"
            raise exc
        audiences = {self.base_url.rstrip("/"), f"https://{request.host}"}
        try:
            claims = self.identity.validate(header[7:].strip(), audiences=audiences, tenant=self.tenant_id)
        except InvalidToken as invalid:
            exc = errors.authentication_required()
            exc.headers["WWW-Authenticate"] = (
                f'Bearer error="invalid_token", error_description="{invalid}", {challenge}'
            )
            raise exc from invalid
        user_id = self._app_users.get(str(claims["appid"]))
        if user_id is None:
            exc = errors.DataverseError(
                403,
                "0x80072560",
                f"The user is not a member of the organization. Application {claims['appid']} has no application user.",
            )
            raise exc
        return user_id

    def _web_api(self, request: Request, resource: str = "") -> Response:
        try:
            user_id = self._authenticate(request)
        except errors.DataverseError as exc:
            return self._api_response(ApiResponse.error(exc))
        ctx = CallContext(user_id, f"https://{request.host}{API_PATH}")
        headers: dict[str, str] = {}
        for name, value in request.headers.items():  # repeated headers (two `Prefer:` lines) are one list
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if resource.strip("/") == "$batch":
            return self._batch(request, headers, ctx)
        args = {key: request.args[key] for key in request.args}
        api = self.webapi.handle(request.method, resource, args, headers, request.get_data(), ctx)
        return self._api_response(api)

    def _batch(self, request: Request, headers: dict[str, str], ctx: CallContext) -> Response:
        if request.method != "POST":
            return self._api_response(
                ApiResponse.error(errors.DataverseError(405, errors.ODATA_ERROR, "$batch takes POST."))
            )
        try:
            parts = batch.parse(request.get_data(), request.headers.get("Content-Type", ""))
            batch.validate(parts)
        except errors.DataverseError as exc:
            return self._api_response(ApiResponse.error(exc))
        continue_on_error = "odata.continue-on-error" in parse_prefer([headers.get("prefer", "")])
        inner_ctx = CallContext(ctx.user_id, ctx.api_url, in_batch=True)

        def run(inner: batch.InnerRequest) -> batch.InnerResponse:
            split = urlsplit(inner.url)
            path = unquote(split.path)
            path = path.split(API_PATH, 1)[1] if API_PATH in path else path
            args = dict(parse_qsl(split.query, keep_blank_values=True))
            if path.strip("/") == "$batch":
                return batch.error_response(
                    errors.bad_request("A batch request cannot contain another batch request.")
                )
            self.stats.count_batched(_resource_key(inner.method, f"{API_PATH}/{path.strip('/')}"))
            api = self.webapi.handle(inner.method, path, args, inner.headers, inner.body, inner_ctx)
            return batch.InnerResponse(api.status, api.headers, api.body)

        outcome = batch.execute(parts, run, continue_on_error=continue_on_error, transaction=self._changeset)
        api = ApiResponse(
            outcome.status,
            [("Content-Type", f"multipart/mixed; boundary={outcome.boundary}"), ("OData-Version", "4.0")],
        )
        api.body = outcome.body.encode()
        if continue_on_error:
            api.headers.append(("Preference-Applied", "odata.continue-on-error"))
        return self._api_response(api)

    @contextmanager
    def _changeset(self) -> Iterator[None]:
        with self.lock, self.store.transaction():
            yield

    # -- Entra ID ------------------------------------------------------------------------------------------
    def _openid_configuration(self, request: Request, tenant: str) -> Response:
        if not self.identity.knows_tenant(tenant):
            error = AadError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into "
                "the correct cloud.",
            )
            return self._json(error.body(self.clock.now()), 400)
        return self._json(self.identity.openid_configuration(f"https://{request.host}", tenant))

    def _keys(self, request: Request, tenant: str) -> Response:
        return self._json(self.identity.jwks())

    def _token(self, request: Request, tenant: str) -> Response:
        return self._issue(request, tenant, v1=False)

    def _token_v1(self, request: Request, tenant: str) -> Response:
        return self._issue(request, tenant, v1=True)

    def _issue(self, request: Request, tenant: str, *, v1: bool) -> Response:
        basic: tuple[str, str] | None = None
        authorization = request.headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            basic = (unquote(user), unquote(password))
        org_urls = {self.base_url.rstrip("/"), f"https://{request.host}"}
        headers = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        try:
            body = self.identity.issue_token(
                tenant=tenant,
                form={key: request.form[key] for key in request.form},
                basic_auth=basic,
                resource_ok=lambda resource: resource.rstrip("/") in org_urls | self.identity.resources,
                token_endpoint=f"https://{request.host}{request.path}",
                v1=v1,
            )
        except AadError as error:
            return self._json(error.body(self.clock.now()), error.status, headers)
        response = self._json(body, 200, headers)
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        return response

    # -- control API -----------------------------------------------------------------------------------------
    def _body(self, request: Request) -> Any:
        return json.loads(request.get_data() or b"null")

    def _control_info(self, request: Request) -> Response:
        return json_response(
            {
                "url": self.base_url,
                "api_url": self.api_url,
                "authority": self.authority,
                "tenant_id": self.tenant_id,
                "resource": self.resource,
                "scope": self.scope,
                "organization_id": ORGANIZATION_ID,
                "business_unit_id": BUSINESS_UNIT_ID,
                "admin_user_id": ADMIN_USER_ID,
            }
        )

    def _control_entity(self, entity_set: str) -> EntityDef:
        entity = self.registry.entity_for_set(entity_set)
        if entity is None:
            raise KeyError(entity_set)
        return entity

    def _control_list_records(self, request: Request, entity_set: str) -> Response:
        try:
            entity = self._control_entity(entity_set)
        except KeyError:
            return json_response({"error": f"no entity set {entity_set!r}"}, 404)
        with self.lock:
            rows = self.store.rows(entity)
        return json_response({"value": rows, "count": len(rows)})

    def _control_timeline(self, request: Request, entity_set: str, record_id: str) -> Response:
        """The record's timeline: the `activitypointers` regarding it, oldest first (by `actualstart`,
        then creation), each with its `activitytypecode` and the activity table's own row."""
        try:
            entity = self._control_entity(entity_set)
        except KeyError:
            return json_response({"error": f"no entity set {entity_set!r}"}, 404)
        wanted = record_id.lower()
        with self.lock:
            if self.store.get(entity, wanted) is None:
                return json_response({"error": f"no {entity.logical_name} {record_id}"}, 404)
            pointer = self.registry.entity("activitypointer")
            rows = (
                [r for r in self.store.rows(pointer) if r.get("_regardingobjectid_value") == wanted]
                if pointer
                else []
            )
            activities = []
            for row in sorted(rows, key=lambda r: (r.get("actualstart") or "", r.get("createdon") or "")):
                table = self.registry.entity(str(row.get("activitytypecode")))
                full = self.store.get(table, row["activityid"]) if table is not None else None
                activities.append({**row, "activity": full})
        return json_response(
            {"entity": entity.logical_name, "id": wanted, "count": len(activities), "value": activities}
        )

    def _control_put_records(self, request: Request, entity_set: str) -> Response:
        """Create or update records as given, timestamps and state included, bumping versions as writes do."""
        try:
            entity = self._control_entity(entity_set)
            records = self._body(request)
        except KeyError:
            return json_response({"error": f"no entity set {entity_set!r}"}, 404)
        except ValueError:
            return json_response({"error": "body must be a JSON list of records"}, 400)
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return json_response({"error": "body must be a JSON list of records"}, 400)
        ids: list[str] = []
        created = 0
        try:
            with self.lock, self.store.transaction():
                now_iso = utc_iso(self.clock.now())
                for record in records:
                    system = {
                        name: utc_iso(parse_instant(record[name]))
                        for name in ("createdon", "modifiedon")
                        if record.get(name)
                    }
                    fields = {
                        k: v for k, v in record.items() if k not in {"createdon", "modifiedon", "versionnumber"}
                    }
                    values = self.reader.read(entity, fields, creating=True, trusted=True)
                    record_id = values.get(entity.primary_id)
                    current = self.store.get(entity, record_id) if record_id else None
                    if current is None:
                        row = self.writer.create(
                            entity, values, caller_id=ADMIN_USER_ID, now_iso=now_iso, system=system
                        )
                        created += 1
                    else:
                        row = self.writer.update(
                            entity, current, values, caller_id=ADMIN_USER_ID, now_iso=now_iso, system=system
                        )
                    ids.append(row[entity.primary_id])
        except errors.DataverseError as exc:
            return json_response({"error": exc.message, "code": exc.code}, 400)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"ids": ids, "created": created, "updated": len(ids) - created}, 201)

    def _control_delete_record(self, request: Request, entity_set: str, record_id: str) -> Response:
        try:
            entity = self._control_entity(entity_set)
        except KeyError:
            return json_response({"error": f"no entity set {entity_set!r}"}, 404)
        with self.lock:
            removed = self.writer.delete(entity, record_id.lower(), self.clock.timestamp())
        return Response(status=204) if removed is not None else json_response({"error": "no such record"}, 404)

    def _control_clock(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = self._body(request) or {}
                if "now" in spec:
                    self.clock.set(parse_instant(spec["now"]), frozen=bool(spec.get("frozen", self.clock.frozen)))
                elif "frozen" in spec:
                    self.clock.freeze(bool(spec["frozen"]))
                if "advance_seconds" in spec:
                    self.clock.advance(float(spec["advance_seconds"]))
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response(self.clock.describe())

    def _control_config(self, request: Request) -> Response:
        if request.method == "POST":
            spec = self._body(request) or {}
            try:
                if "max_page_size" in spec:
                    size = int(spec["max_page_size"])
                    if not 1 <= size <= 5000:
                        raise ValueError("max_page_size must be between 1 and 5000")
                    self.config.max_page_size = size
                if "service_protection" in spec:
                    self.limits.config.update(spec["service_protection"])
                    self.limits.clear_windows()
                if "change_tracking_retention_days" in spec:
                    self.tracker.retention_days = float(spec["change_tracking_retention_days"])
                if "token_lifetime_seconds" in spec:
                    self.identity.token_lifetime = int(spec["token_lifetime_seconds"])
            except (ValueError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
        limits = self.limits.config
        return json_response(
            {
                **self.config.describe(),
                "service_protection": {
                    "max_requests": limits.max_requests,
                    "window_seconds": limits.window_seconds,
                    "max_execution_ms": limits.max_execution_ms,
                    "max_concurrent": limits.max_concurrent,
                    "concurrency_retry_after": limits.concurrency_retry_after,
                },
                "change_tracking_retention_days": self.tracker.retention_days,
                "token_lifetime_seconds": self.identity.token_lifetime,
            }
        )

    def _control_auditing(self, request: Request) -> Response:
        """Auditing's three switches: `{"environment": bool, "tables": {"contact": bool},
        "columns": {"contact": {"donotemail": bool}}}` (each part optional)."""
        with self.lock:
            if request.method == "POST":
                try:
                    spec = self._body(request) or {}
                    if not isinstance(spec, dict):
                        raise ValueError("body must be a JSON object")
                    if "environment" in spec:
                        self.store.auditing.environment = bool(spec["environment"])
                        organization = self.registry.entities["organization"]
                        current = self.store.get(organization, ORGANIZATION_ID)
                        if current is not None:
                            self.writer.update(
                                organization,
                                current,
                                {"isauditenabled": self.store.auditing.environment},
                                caller_id=ADMIN_USER_ID,
                                now_iso=utc_iso(self.clock.now()),
                            )
                    for table, on in dict(spec.get("tables") or {}).items():
                        self._control_entity_by_name(table).audit_enabled = bool(on)
                    for table, columns in dict(spec.get("columns") or {}).items():
                        entity = self._control_entity_by_name(table)
                        for column, on in dict(columns).items():
                            attribute = entity.attributes.get(column)
                            if attribute is None:
                                raise ValueError(f"no column {column!r} on {table}")
                            attribute.audit_enabled = bool(on)
                except (KeyError, ValueError, TypeError) as exc:
                    return json_response({"error": str(exc)}, 400)
            described = {
                "environment": self.store.auditing.environment,
                "tables": {e.logical_name: e.audit_enabled for e in self.registry.entities.values()},
                "columns": {
                    e.logical_name: sorted(a.logical_name for a in e.attributes.values() if not a.audit_enabled)
                    for e in self.registry.entities.values()
                },
            }
        return json_response({**described, "columns_off": described.pop("columns")})

    def _control_entity_by_name(self, logical_name: str) -> EntityDef:
        entity = self.registry.entity(logical_name)
        if entity is None:
            raise KeyError(f"no table {logical_name!r}")
        return entity

    def _control_expire_tokens(self, request: Request) -> Response:
        with self.lock:
            self.tracker.expire_all()
        return Response(status=204)

    def _control_expire_access_tokens(self, request: Request) -> Response:
        self.identity.expire_tokens()
        return Response(status=204)

    def _control_apps(self, request: Request) -> Response:
        if request.method == "GET":
            return json_response({"apps": [app.describe() for app in self.identity.apps.values()]})
        spec = self._body(request) or {}
        try:
            app = self.register_app(
                client_id=spec.get("client_id"),
                tenant_id=spec.get("tenant_id"),
                client_secret=spec.get("client_secret"),
                certificate_pem=spec.get("certificate_pem"),
                display_name=spec.get("display_name"),
            )
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({**app.describe(), "user_id": self._app_users.get(app.client_id)}, 201)

    def _control_resources(self, request: Request) -> Response:
        if request.method == "POST":
            spec = self._body(request) or {}
            try:
                self.identity.register_resource(str(spec.get("url", "")))
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response({"resources": sorted(self.identity.resources)})

    def _define(self, spec: dict[str, Any]) -> None:
        """Apply one table spec; keys whose index cannot be built (duplicate values) are not kept."""
        existing = self.registry.entity(str(spec.get("logical_name", "")).lower())
        previous_keys = list(existing.keys) if existing is not None else []
        entity = self.registry.define(spec)
        try:
            self.store.rebuild_indexes(entity)
        except ValueError:
            entity.keys = previous_keys
            self.store.rebuild_indexes(entity)
            raise

    def _control_attribute(self, request: Request, logical: str, name: str) -> Response:
        """Schema drift on demand: delete a custom column, or give a column another type (its values go)."""
        try:
            with self.lock:
                if request.method == "DELETE":
                    removed = self.registry.remove_attribute(logical, name)
                    self.store.drop_column(logical.lower(), removed.property_name)
                    return json_response({"removed": removed.logical_name})
                spec = self._body(request) or {}
                if not isinstance(spec, dict) or "type" not in spec:
                    raise ValueError("give the column's new 'type' (and 'options' for a choice column)")
                before = self.registry.entity(logical.lower())
                old = (
                    before.attributes[name.lower()].property_name
                    if before and name.lower() in before.attributes
                    else None
                )
                attribute = self.registry.retype_attribute(logical, name, spec)
                if old is not None:
                    self.store.drop_column(logical.lower(), old)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"logical_name": attribute.logical_name, "type": attribute.attribute_type})

    def _control_entities(self, request: Request) -> Response:
        if request.method == "POST":
            specs = self._body(request)
            specs = specs if isinstance(specs, list) else [specs]
            defined = []
            try:
                with self.lock:
                    for spec in specs:
                        self._define(spec)
                        defined.append(str(spec["logical_name"]).lower())
            except (ValueError, KeyError, TypeError) as exc:
                return json_response({"error": str(exc)}, 400)
            return json_response({"defined": defined}, 201)
        return json_response(
            {
                "entities": [
                    {
                        "logical_name": e.logical_name,
                        "entity_set_name": e.entity_set_name,
                        "primary_id": e.primary_id,
                        "primary_name": e.primary_name,
                        "change_tracking": e.change_tracking,
                        "keys": {k.schema_name: k.attributes for k in e.keys},
                        "attributes": {a.logical_name: a.attribute_type for a in e.attributes.values()},
                    }
                    for e in self.registry.entities.values()
                ]
            }
        )


__all__ = ["ADMIN_USER_ID", "BUSINESS_UNIT_ID", "DEFAULT_TENANT_ID", "ORGANIZATION_ID", "DynamicsEmulator"]


def _resource_key(method: str, path: str) -> str:
    """A Web API request as its calls are counted: per resource, keys elided (`GET
    /api/data/v9.2/contacts({key})`)."""
    depth = 0
    out: list[str] = []
    for char in path:
        if char == "(":
            if depth == 0:
                out.append("({key})")
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return f"{method} {''.join(out)}"
