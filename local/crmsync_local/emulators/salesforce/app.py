"""`SalesforceEmulator`: the WSGI application that speaks Salesforce's REST, Bulk API 2.0 and OAuth APIs.

Every API call goes through `api()`: it authenticates the bearer token (401 INVALID_SESSION_ID), counts
the call against DailyApiRequests (403 REQUEST_LIMIT_EXCEEDED when spent), runs the handler under the
emulator's lock, turns `ApiError`s into Salesforce's error bodies and adds `Sforce-Limit-Info`. Every
response carries a `Date` header from the emulated clock.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Request, Response

from ..common import CONTROL_PREFIX, EmulatorApp, json_response
from .admin import ControlApi
from .bulk import BulkApi
from .clock import EmulatorClock, http_date
from .composite import CollectionsApi
from .errors import ApiError
from .oauth import OAuthError, Session
from .org import EmulatorConfig, Org
from .rest import RestApi
from .store import Context

API_PREFIX = "/services/data/<apiversion:version>"
_log = logging.getLogger(__name__)

_INJECTED_ERRORS: dict[int, tuple[str, str]] = {
    400: ("MALFORMED_REQUEST", "The request could not be processed (injected fault)."),
    401: ("INVALID_SESSION_ID", "Session expired or invalid"),
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    404: ("NOT_FOUND", "The requested resource does not exist"),
    429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: 1786513021-4512 (-1553427648)",
    ),
    502: ("SERVER_UNAVAILABLE", "Bad gateway: the server is temporarily unable to service your request."),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable. Please try again later."),
}


class ApiVersionConverter(BaseConverter):
    """`v59.0` in the path; handlers get `"59.0"`."""

    regex = r"v\d{2}\.\d"

    def to_python(self, value: str) -> str:
        return value[1:]

    def to_url(self, value: Any) -> str:
        return f"v{value}"


@dataclass
class Call:
    """One authenticated API call, as handlers see it."""

    request: Request
    session: Session
    version: str
    now: datetime

    def context(self, journal: list[Any] | None = None) -> Context:
        return Context(self.session.user_id, self.now, journal)


ApiHandler = Callable[..., Response]


class SalesforceEmulator(EmulatorApp):
    """The Salesforce emulator. Serve it with `EmulatorServer(SalesforceEmulator()).start()`."""

    name = "salesforce"

    def __init__(self) -> None:
        super().__init__()
        self.url_map.converters["apiversion"] = ApiVersionConverter
        self.clock = EmulatorClock()
        self.config = EmulatorConfig()
        self.org = Org(self.clock.now())
        self.route("/services/oauth2/token", ["POST"], self._token)
        RestApi(self).register()
        CollectionsApi(self).register()
        BulkApi(self).register()
        ControlApi(self).register()

    # -- routing of API calls --------------------------------------------------------------------------------
    def api(self, rule: str, methods: Iterable[str], handler: ApiHandler) -> None:
        """Register an authenticated, counted API route under /services/data/vXX.X."""

        @functools.wraps(handler)
        def endpoint(request: Request, version: str, **values: Any) -> Response:
            return self._call_api(request, version, handler, values)

        self.route(API_PREFIX + rule, methods, endpoint, endpoint=f"{handler.__name__}:{rule}")

    def _call_api(self, request: Request, version: str, handler: ApiHandler, values: dict[str, Any]) -> Response:
        with self.lock:
            now = self.clock.now()
            session = self.org.oauth.session_for(request.headers.get("Authorization"))
            timeout = self.config.session_timeout_seconds
            if (
                session is not None
                and timeout is not None
                and now - session.issued_at > timedelta(seconds=timeout)
            ):
                session = None
            if session is None:
                response = json_response(
                    [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}], 401
                )
                response.headers["WWW-Authenticate"] = 'Token realm="Salesforce"'
                return response
            if self.org.api_requests_used >= self.config.daily_api_limit:
                response = json_response(
                    [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], 403
                )
            else:
                self.org.api_requests_used += 1
                try:
                    response = handler(Call(request, session, version, now), **values)
                except ApiError as exc:
                    response = json_response(exc.body, exc.status)
                except Exception as exc:  # a bug in the emulator: answer as Salesforce does, keep the trace
                    _log.exception("%s %s failed", request.method, request.path)
                    response = json_response(
                        [
                            {
                                "message": f"An unexpected error occurred (emulator: {type(exc).__name__}: {exc})",
                                "errorCode": "UNKNOWN_EXCEPTION",
                            }
                        ],
                        500,
                    )
            response.headers["Sforce-Limit-Info"] = (
                f"api-usage={self.org.api_requests_used}/{self.config.daily_api_limit}"
            )
            return response

    def _token(self, request: Request) -> Response:
        with self.lock:
            try:
                body = self.org.oauth.token(
                    request.form,
                    find_user=self.org.find_user,
                    base_url=self.base_url or request.host_url.rstrip("/"),
                    now=self.clock.now(),
                    real_now=datetime.now(UTC),
                )
            except OAuthError as exc:
                return json_response(
                    exc.body, exc.status, {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}
                )
        return json_response(body, 200, {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"})

    # -- the base class's hooks ------------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        response.headers["Date"] = http_date(self.clock.now())
        return response

    def error_response(self, status: int, request: Request) -> Response:
        if request.path.startswith("/services/oauth2"):
            error = "invalid_client" if status in (400, 401) else "server_error"
            return json_response({"error": error, "error_description": "injected fault"}, status)
        code, message = _INJECTED_ERRORS.get(
            status, ("UNKNOWN_EXCEPTION" if status >= 500 else "MALFORMED_REQUEST", "injected fault")
        )
        response = json_response([{"message": message, "errorCode": code}], status)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Token realm="Salesforce"'
        if status in (429, 503):
            response.headers["Retry-After"] = "1"
        return response

    def not_found(self, request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return super().not_found(request)
        return json_response([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 404)

    def method_not_allowed(self, request: Request, exc: MethodNotAllowed) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return super().method_not_allowed(request, exc)
        allowed = ",".join(sorted(exc.valid_methods or []))
        return json_response(
            [
                {
                    "errorCode": "METHOD_NOT_ALLOWED",
                    "message": f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}",
                }
            ],
            405,
        )

    def reset_state(self) -> None:
        self.clock.use_real_time()
        self.config = EmulatorConfig()
        self.org = Org(self.clock.now())

    # -- helpers for handlers --------------------------------------------------------------------------------------
    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.config.deleted_retention_days)
