"""`SalesforceControl`: a small Python client of the emulator's control API, for tests, benchmarks and
the demo. One method per endpoint; errors raise `requests.HTTPError` with the emulator's message.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import requests


class SalesforceControl:
    def __init__(self, base_url: str, ca_bundle: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE on this machine would override `verify`
        self.session.verify = ca_bundle if ca_bundle else True

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self.session.request(
            method, f"{self.base_url}/__emulator{path}", json=json, params=params, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise requests.HTTPError(
                f"{method} /__emulator{path} -> {response.status_code}: {response.text}", response=response
            )
        return response.json() if response.content else None

    # -- state -----------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget records, sessions, jobs, faults and stats; restore the clock, config and seed users/app."""
        self._call("POST", "/reset")

    # -- records ---------------------------------------------------------------------------------------------
    def seed(self, sobject: str, records: Iterable[dict[str, Any]]) -> list[str]:
        """Create or update records with no validation; Id, CreatedDate, LastModifiedDate, SystemModstamp,
        IsDeleted and `deletedDate` may be given. Returns the ids in order."""
        ids: list[str] = self._call("POST", f"/sobjects/{sobject}", json=list(records))["ids"]
        return ids

    def records(self, sobject: str) -> list[dict[str, Any]]:
        """Every stored record, deleted ones included (with IsDeleted and deletedDate)."""
        rows: list[dict[str, Any]] = self._call("GET", f"/sobjects/{sobject}")["records"]
        return rows

    def timeline(self, sobject: str, record_id: str) -> list[dict[str, Any]]:
        """The record's timeline: `{object, at, record}` of custom-object records looking it up, oldest first."""
        rows: list[dict[str, Any]] = self._call("GET", f"/timeline/{sobject}/{record_id}")["records"]
        return rows

    def delete(
        self, sobject: str, record_id: str, *, deleted_date: datetime | str | None = None, hard: bool = False
    ) -> None:
        """Delete as Salesforce does: to the recycle bin (or for good with `hard`)."""
        params: dict[str, Any] = {"hard": str(hard).lower()}
        if deleted_date is not None:
            params["deletedDate"] = (
                deleted_date.isoformat() if isinstance(deleted_date, datetime) else deleted_date
            )
        self._call("DELETE", f"/sobjects/{sobject}/{record_id}", params=params)

    def purge(self, sobject: str) -> int:
        """Delete every record of `sobject` for good, in one call; answers how many there were."""
        deleted: int = self._call("DELETE", f"/sobjects/{sobject}")["deleted"]
        return deleted

    # -- faults and stats --------------------------------------------------------------------------------------
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
        """Inject a fault on requests whose `"<METHOD> <path?query>"` matches the regular expression;
        `after` lets that many matching requests through first."""
        spec: dict[str, Any] = {
            "match": match,
            "status": status,
            "times": times,
            "latency_ms": latency_ms,
            "drop_response": drop_response,
            "after": after,
            "after_apply": after_apply,
        }
        if headers:
            spec["headers"] = headers
        if body is not None:
            spec["body"] = body
        fault: dict[str, Any] = self._call("POST", "/faults", json=spec)["faults"][0]
        return fault

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._call("GET", "/faults")["faults"]
        return faults

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def stats(self) -> dict[str, Any]:
        """`{"total": n, "calls": {"GET /services/data/<apiversion:version>/query": n, ...}}`."""
        stats: dict[str, Any] = self._call("GET", "/stats")
        return stats

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def usage(self) -> dict[str, int]:
        usage: dict[str, int] = self._call("GET", "/usage")
        return usage

    # -- clock and config ----------------------------------------------------------------------------------------
    def clock(self) -> dict[str, Any]:
        clock: dict[str, Any] = self._call("GET", "/clock")
        return clock

    def set_clock(self, now: datetime | str, *, frozen: bool = True) -> dict[str, Any]:
        """Pin the emulated clock (frozen unless `frozen=False`, which lets it tick on from `now`)."""
        value = now.isoformat() if isinstance(now, datetime) else now
        clock: dict[str, Any] = self._call("POST", "/clock", json={"now": value, "frozen": frozen})
        return clock

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        clock: dict[str, Any] = self._call("POST", "/clock", json={"advance_seconds": seconds})
        return clock

    def use_real_clock(self) -> dict[str, Any]:
        clock: dict[str, Any] = self._call("POST", "/clock", json={"real_time": True})
        return clock

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = self._call("GET", "/config")
        return config

    def configure(self, **settings: Any) -> dict[str, Any]:
        """e.g. `configure(query_page_size=500, deleted_retention_days=2, daily_api_limit=100,
        deleted_id_limit=10, bulk_in_progress_polls=2, api_requests_used=0)`."""
        config: dict[str, Any] = self._call("POST", "/config", json=settings)
        return config

    # -- OAuth -------------------------------------------------------------------------------------------------------
    def register_app(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        certificate: str | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        """A connected app: secret for client credentials/password, certificate (or public key PEM) for JWT,
        `username` as the client-credentials run-as user."""
        app: dict[str, Any] = self._call(
            "POST",
            "/oauth/apps",
            json={
                "client_id": client_id,
                "client_secret": client_secret,
                "certificate": certificate,
                "username": username,
            },
        )
        return app

    def register_user(
        self,
        username: str,
        *,
        password: str | None = None,
        security_token: str = "",
        first_name: str = "Api",
        last_name: str | None = None,
    ) -> str:
        """Create a User (if needed) and its login credentials; returns the user id."""
        body = {
            "username": username,
            "password": password,
            "security_token": security_token,
            "first_name": first_name,
            "last_name": last_name or username.split("@")[0],
        }
        user_id: str = self._call("POST", "/oauth/users", json=body)["id"]
        return user_id

    def issue_refresh_token(self, client_id: str, username: str | None = None) -> str:
        """A refresh token for a registered connected app (default user: the integration user), as the
        web-server flow would leave it with a client; `grant_type=refresh_token` exchanges it."""
        body: dict[str, Any] = {"client_id": client_id}
        if username:
            body["username"] = username
        token: str = self._call("POST", "/oauth/refresh-tokens", json=body)["refresh_token"]
        return token

    def issue_token(self, username: str | None = None) -> dict[str, Any]:
        """An access token without an OAuth flow (default: the integration user)."""
        token: dict[str, Any] = self._call("POST", "/sessions", json={"username": username} if username else {})
        return token

    def expire_sessions(self) -> int:
        """Invalidate every issued token; the next API call answers 401 INVALID_SESSION_ID."""
        expired: int = self._call("POST", "/sessions/expire")["expired"]
        return expired

    # -- schema --------------------------------------------------------------------------------------------------------
    def define_object(
        self,
        sobject: str,
        *,
        label: str | None = None,
        fields: Iterable[dict[str, Any]] = (),
        record_types: Iterable[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Create a custom object (`Thing__c`) or add custom fields; a field spec is like
        `{"name": "Score__c", "type": "double", "externalId": False, "unique": False, "required": False,
        "length": 80, "picklistValues": [...], "restrictedPicklist": False, "referenceTo": "Contact"}`; a
        picklist value may be `{"value", "label", "active"}`. A record type is `{"developerName",
        "picklists": {"LeadSource": {"values": [...], "default": ...}}}`."""
        body: dict[str, Any] = {"fields": list(fields)}
        if label:
            body["label"] = label
        if record_types:
            body["recordTypes"] = list(record_types)
        describe: dict[str, Any] = self._call("POST", f"/schema/{sobject}", json=body)
        return describe

    def remove_field(self, sobject: str, field: str) -> None:
        """Delete a custom field; its values go with it."""
        self._call("DELETE", f"/schema/{sobject}/{field}")

    def retype_field(self, sobject: str, field: str, **spec: Any) -> dict[str, Any]:
        """Change a custom field's type, e.g. `retype_field("Contact", "Score__c", type="string")`."""
        describe: dict[str, Any] = self._call("PATCH", f"/schema/{sobject}/{field}", json=spec)
        return describe
