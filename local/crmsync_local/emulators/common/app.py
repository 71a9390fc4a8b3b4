"""The WSGI base both CRM emulators stand on: routing, fault injection, call statistics, control API.

An emulator subclasses `EmulatorApp`, registers its vendor routes with `route()`, and implements
`error_response()` so injected faults answer in the vendor's documented error shape.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

Handler = Callable[..., Response]

CONTROL_PREFIX = "/__emulator"


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
        status=status,
        headers=headers or {},
        content_type="application/json;charset=UTF-8",
    )


@dataclass
class Fault:
    """One injected fault. `times=None` means until reset; `after` lets that many matching requests
    through untouched first (a crash after k of n batches). A `status` answers in place of the request,
    unless `after_apply`: then the request is handled first and its answer replaced by the status, as a
    gateway that times out or fails in front of a CRM that did the work (a 502/503/504 after the write)."""

    match: re.Pattern[str]
    status: int | None = None
    times: int | None = 1
    latency_ms: int = 0
    drop_response: bool = False
    after_apply: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after: int = 0
    fired: int = 0
    passed: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "match": self.match.pattern,
            "status": self.status,
            "times": self.times,
            "latency_ms": self.latency_ms,
            "drop_response": self.drop_response,
            "after_apply": self.after_apply,
            "after": self.after,
            "fired": self.fired,
        }


class FaultInjector:
    """Faults are matched, in the order they were added, against `"<METHOD> <path>"`."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, spec: dict[str, Any]) -> Fault:
        if "match" not in spec:
            raise ValueError("a fault needs 'match', a regular expression on '<METHOD> <path>'")
        status = spec.get("status")
        if status is not None and not (400 <= int(status) <= 599):
            raise ValueError(f"fault status must be an HTTP error status, not {status!r}")
        fault = Fault(
            match=re.compile(spec["match"]),
            status=int(status) if status is not None else None,
            times=None if spec.get("times", 1) is None else int(spec.get("times", 1)),
            latency_ms=int(spec.get("latency_ms", 0)),
            drop_response=bool(spec.get("drop_response", False)),
            after_apply=bool(spec.get("after_apply", False)),
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
            body=spec.get("body"),
            after=int(spec.get("after", 0)),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching this request, counted as fired."""
        key = f"{method} {path}"
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.fired >= fault.times:
                    continue
                if fault.match.search(key):
                    if fault.passed < fault.after:
                        fault.passed += 1
                        continue
                    fault.fired += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() for f in self._faults]


class CallStats:
    """Calls counted per `"<METHOD> <path template>"`; control-API calls are not counted. `batched` counts
    the requests a batch call carries (a Dataverse `$batch`'s parts), apart from the calls: a batch is one
    call whatever it holds, and what it held tells a batch of reads from one of writes."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._batched: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def count_batched(self, key: str) -> None:
        with self._lock:
            self._batched[key] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            calls = dict(sorted(self._counts.items()))
            batched = dict(sorted(self._batched.items()))
        return {"total": sum(calls.values()), "calls": calls, "batched": batched}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._batched.clear()


class EmulatorApp:
    """Base WSGI application of a CRM emulator."""

    name = "emulator"

    def __init__(self) -> None:
        self.url_map = Map(strict_slashes=False, merge_slashes=False)
        self.handlers: dict[str, Handler] = {}
        self.faults = FaultInjector()
        self.stats = CallStats()
        self.lock = threading.RLock()
        self.base_url = ""
        self._add_control_routes()

    # -- routing ---------------------------------------------------------------------------------
    def route(self, rule: str, methods: Iterable[str], handler: Handler, *, endpoint: str | None = None) -> None:
        endpoint = endpoint or f"{handler.__name__}:{rule}"
        self.url_map.add(Rule(rule, methods=list(methods), endpoint=endpoint))
        self.handlers[endpoint] = handler

    def _add_control_routes(self) -> None:
        self.route(f"{CONTROL_PREFIX}/faults", ["POST"], self._control_add_fault)
        self.route(f"{CONTROL_PREFIX}/faults", ["GET"], self._control_list_faults)
        self.route(f"{CONTROL_PREFIX}/faults", ["DELETE"], self._control_clear_faults)
        self.route(f"{CONTROL_PREFIX}/stats", ["GET"], self._control_stats)
        self.route(f"{CONTROL_PREFIX}/stats/reset", ["POST"], self._control_reset_stats)
        self.route(f"{CONTROL_PREFIX}/reset", ["POST"], self._control_reset)

    # -- to be provided by each emulator -----------------------------------------------------------
    def error_response(self, status: int, request: Request) -> Response:
        """The vendor's documented error body for an injected status."""
        return json_response({"error": {"code": str(status), "message": "injected fault"}}, status)

    def reset_state(self) -> None:
        """Forget every record and session (the control API's reset)."""

    def stats_key(self, request: Request, rule: str) -> str:
        """The name a call is counted under; emulators with catch-all routes name their resources."""
        return f"{request.method} {rule}"

    # -- control API -------------------------------------------------------------------------------
    def _control_add_fault(self, request: Request) -> Response:
        specs = request.get_json(force=True, silent=True)
        if specs is None:
            return json_response({"error": "body must be a JSON fault or a list of faults"}, 400)
        try:
            added = [self.faults.add(s).describe() for s in (specs if isinstance(specs, list) else [specs])]
        except (ValueError, re.error, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response({"faults": added}, 201)

    def _control_list_faults(self, request: Request) -> Response:
        return json_response({"faults": self.faults.describe()})

    def _control_clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        return Response(status=204)

    def _control_stats(self, request: Request) -> Response:
        return json_response(self.stats.snapshot())

    def _control_reset_stats(self, request: Request) -> Response:
        self.stats.reset()
        return Response(status=204)

    def _control_reset(self, request: Request) -> Response:
        with self.lock:
            self.reset_state()
        self.faults.clear()
        self.stats.reset()
        return Response(status=204)

    # -- WSGI --------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        is_control = request.path.startswith(CONTROL_PREFIX)
        try:
            endpoint, values = adapter.match()
        except NotFound:
            return self.not_found(request)
        except MethodNotAllowed as exc:
            return self.method_not_allowed(request, exc)
        except HTTPException as exc:  # redirects and the like
            return exc.get_response(request.environ)  # type: ignore[return-value]
        rule = adapter.match(return_rule=True)[0].rule
        if is_control:
            return self.handlers[endpoint](request, **values)

        self.stats.count(self.stats_key(request, rule))
        fault = self.faults.take(request.method, request.full_path.rstrip("?"))
        if fault is not None and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        if fault is not None and fault.status is not None and fault.after_apply:
            self.handlers[endpoint](request, **values)
        if fault is not None and fault.status is not None:
            response = (
                json_response(fault.body, fault.status)
                if fault.body is not None
                else self.error_response(fault.status, request)
            )
            for key, value in fault.headers.items():
                response.headers[key] = value
            return response
        response = self.handlers[endpoint](request, **values)
        if fault is not None:
            for key, value in fault.headers.items():
                response.headers[key] = value
        if fault is not None and fault.drop_response:
            drop_connection(request)
        return response

    def not_found(self, request: Request) -> Response:
        return json_response({"error": {"code": "NOT_FOUND", "message": f"no resource at {request.path}"}}, 404)

    def method_not_allowed(self, request: Request, exc: MethodNotAllowed) -> Response:
        return json_response(
            {"error": {"code": "METHOD_NOT_ALLOWED", "message": f"{request.method} not allowed"}}, 405
        )


def drop_connection(request: Request) -> None:
    """Cut the client's connection after the request was applied, before any answer is written."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        raise RuntimeError("drop_response needs the werkzeug development server (werkzeug.socket)")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
