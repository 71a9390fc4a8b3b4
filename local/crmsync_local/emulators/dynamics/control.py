"""A small Python client of the Dynamics emulator's control API, for tests, benchmarks and the demo.

control = DynamicsControl("https://127.0.0.1:8443", ca_bundle="/tmp/crmsync-test-ca.pem")
ids = control.put_records("contacts", [{"firstname": "Ada", "lastname": "Lovelace"}])
control.advance_clock(3600)
control.delete_record("contacts", ids[0])
control.add_fault(r"GET /api/data/v9\\.2/contacts", status=429, headers={"Retry-After": "2"})
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import requests

from .clock import utc_iso


class DynamicsControlError(RuntimeError):
    """The control API refused a call (bad spec, unknown entity set, …)."""


class DynamicsControl:
    def __init__(self, base_url: str, ca_bundle: str | None = None, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise override `verify`
        self.session.verify = ca_bundle if ca_bundle else True

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/__emulator/{path}", json=payload, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise DynamicsControlError(f"{method} /__emulator/{path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    # -- org addresses -------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """url, api_url, authority, tenant_id, resource, scope, organization/business unit/admin ids."""
        return dict(self._call("GET", "info"))

    # -- records -----------------------------------------------------------------------------------------------
    def put_records(self, entity_set: str, records: list[dict[str, Any]]) -> list[str]:
        """Create or update records (Web API property names; `createdon`, `modifiedon`, `statecode`, the
        primary id and `_x_value` lookups may be given). Answers the ids in order."""
        return list(self._call("POST", f"records/{entity_set}", records)["ids"])

    def records(self, entity_set: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"records/{entity_set}")["value"])

    def timeline(self, entity_set: str, record_id: str) -> list[dict[str, Any]]:
        """The record's timeline: the `activitypointers` regarding it (each with `activity`, its row in the
        activity table), oldest first."""
        return list(self._call("GET", f"timeline/{entity_set}/{record_id}")["value"])

    def delete_record(self, entity_set: str, record_id: str) -> None:
        """Delete as a user would: the deletion shows up in change tracking."""
        self._call("DELETE", f"records/{entity_set}/{record_id}")

    # -- clock ---------------------------------------------------------------------------------------------------
    def clock(self) -> dict[str, Any]:
        return dict(self._call("GET", "clock"))

    def set_clock(self, now: datetime | str, *, frozen: bool = False) -> dict[str, Any]:
        moment = utc_iso(now) if isinstance(now, datetime) else now
        return dict(self._call("POST", "clock", {"now": moment, "frozen": frozen}))

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return dict(self._call("POST", "clock", {"advance_seconds": seconds}))

    # -- configuration -------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return dict(self._call("GET", "config"))

    def configure(
        self,
        *,
        max_page_size: int | None = None,
        service_protection: dict[str, int] | None = None,
        change_tracking_retention_days: float | None = None,
        token_lifetime_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Change org settings. `service_protection` keys: max_requests, window_seconds, max_execution_ms,
        max_concurrent, concurrency_retry_after."""
        spec: dict[str, Any] = {}
        if max_page_size is not None:
            spec["max_page_size"] = max_page_size
        if service_protection is not None:
            spec["service_protection"] = service_protection
        if change_tracking_retention_days is not None:
            spec["change_tracking_retention_days"] = change_tracking_retention_days
        if token_lifetime_seconds is not None:
            spec["token_lifetime_seconds"] = token_lifetime_seconds
        return dict(self._call("POST", "config", spec))

    def expire_delta_tokens(self) -> None:
        """Every delta token issued so far answers ExpiredVersionStamp (0x80044352)."""
        self._call("POST", "changetracking/expire")

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused with 401."""
        self._call("POST", "tokens/expire")

    # -- identity and schema -----------------------------------------------------------------------------------
    def register_app(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        certificate_pem: str | None = None,
        tenant_id: str | None = None,
        display_name: str | None = None,
    ) -> dict[str, Any]:
        """Register a client application (secret and/or certificate); answers client_id, tenant_id, user_id."""
        spec = {
            "client_id": client_id,
            "client_secret": client_secret,
            "certificate_pem": certificate_pem,
            "tenant_id": tenant_id,
            "display_name": display_name,
        }
        return dict(self._call("POST", "apps", {k: v for k, v in spec.items() if v is not None}))

    def register_resource(self, url: str) -> list[str]:
        """Another resource principal in the tenant (another environment, an API): Entra ID issues tokens
        for `<url>/.default`, which the org refuses with 401. Answers every registered resource."""
        return list(self._call("POST", "resources", {"url": url})["resources"])

    def define_entity(self, spec: dict[str, Any]) -> None:
        """Create or extend a table, e.g. {"logical_name": "new_thing", "entity_set_name": "new_things",
        "attributes": [{"logical_name": "new_code", "type": "String", "max_length": 20},
        {"logical_name": "new_kind", "type": "Picklist", "options": {"100000000": "A"}},
        {"logical_name": "new_contactid", "type": "Lookup", "targets": ["contact"]}],
        "keys": [{"schema_name": "new_code_key", "attributes": ["new_code"]}], "change_tracking": true}."""
        self._call("POST", "entities", spec)

    def remove_attribute(self, logical_name: str, attribute: str) -> None:
        """Delete a custom column (and its values)."""
        self._call("DELETE", f"entities/{logical_name}/attributes/{attribute}")

    def retype_attribute(self, logical_name: str, attribute: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Give a column another type, e.g. {"type": "Integer"} or {"type": "Picklist", "options": {...}}."""
        result: dict[str, Any] = self._call("PATCH", f"entities/{logical_name}/attributes/{attribute}", spec)
        return result

    def entities(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "entities")["entities"])

    # -- base harness: faults, stats, reset ----------------------------------------------------------------------
    def add_fault(
        self,
        match: str,
        *,
        status: int | None = None,
        times: int | None = 1,
        latency_ms: int = 0,
        drop_response: bool = False,
        headers: dict[str, str] | None = None,
        body: Any = None,
        after: int = 0,
        after_apply: bool = False,
    ) -> dict[str, Any]:
        """`match` is a regular expression on `"<METHOD> <path?query>"`; `after` lets that many matching
        requests through first (a crash after k of n batches)."""
        spec: dict[str, Any] = {
            "match": match,
            "times": times,
            "latency_ms": latency_ms,
            "drop_response": drop_response,
            "after": after,
            "after_apply": after_apply,
        }
        if status is not None:
            spec["status"] = status
        if headers:
            spec["headers"] = headers
        if body is not None:
            spec["body"] = body
        return dict(self._call("POST", "faults", spec)["faults"][0])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        self._call("POST", "stats/reset")

    def reset(self) -> None:
        """Forget records, apps, schema changes, faults, stats, configuration and clock changes."""
        self._call("POST", "reset")

    def close(self) -> None:
        self.session.close()
