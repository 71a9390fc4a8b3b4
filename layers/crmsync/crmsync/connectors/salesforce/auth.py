"""Salesforce OAuth 2.0 token calls (SPEC C2), done by us: simple-salesforce's login helpers hard-code
salesforce.com hosts, while orgs log in through My Domain and tests through the emulator."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from ...config import SalesforceConnection
from ...errors import CrmAuthenticationFailed, CrmSecretInvalid, CrmUnavailable
from ..http import CrmHttpSession

REQUIRED_SECRET_FIELDS = {
    "client_credentials": ("client_id", "client_secret"),
    "jwt_bearer": ("client_id", "username", "private_key"),
    "password": ("client_id", "client_secret", "username", "password"),
}
JWT_LIFETIME_SECONDS = 180


@dataclass(frozen=True)
class SalesforceToken:
    access_token: str
    instance_url: str
    issued_at: float
    identity: str | None = None
    """The token response's `id`, `https://login.salesforce.com/id/<org id>/<user id>`."""

    @property
    def user_id(self) -> str | None:
        return self.identity.rstrip("/").rsplit("/", 1)[-1] if self.identity else None

    def __repr__(self) -> str:
        return f"SalesforceToken(instance_url={self.instance_url!r}, issued_at={self.issued_at})"


def check_secret(connection: SalesforceConnection, secret: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED_SECRET_FIELDS[connection.auth.flow] if not secret.get(key)]
    if missing:
        raise CrmSecretInvalid(
            f"secret {connection.secret!r} of connection {connection.name!r} lacks {', '.join(missing)} "
            f"(needed by the {connection.auth.flow} flow)"
        )


class SalesforceTokenProvider:
    """Obtains and caches one access token per connection; `renew()` after INVALID_SESSION_ID."""

    def __init__(self, connection: SalesforceConnection, secret: dict[str, Any], session: CrmHttpSession) -> None:
        check_secret(connection, secret)
        self.connection = connection
        self._secret = secret
        self._session = session
        self._token: SalesforceToken | None = None
        self._lock = threading.Lock()

    @property
    def token_endpoint(self) -> str:
        base = self.connection.auth.token_url or self.connection.instance_url
        return f"{base}/services/oauth2/token"

    @property
    def audience(self) -> str:
        if self.connection.auth.audience:
            return self.connection.auth.audience
        return "https://test.salesforce.com" if self.connection.sandbox else "https://login.salesforce.com"

    def token(self) -> SalesforceToken:
        with self._lock:
            if self._token is None:
                self._token = self._request_token()
            return self._token

    def renew(self, stale: SalesforceToken | None = None) -> SalesforceToken:
        """A new token, unless another caller already replaced `stale`."""
        with self._lock:
            if self._token is None or self._token is stale or stale is None:
                self._token = self._request_token()
            return self._token

    def _form(self) -> dict[str, str]:
        secret, flow = self._secret, self.connection.auth.flow
        if flow == "client_credentials":
            return {
                "grant_type": "client_credentials",
                "client_id": secret["client_id"],
                "client_secret": secret["client_secret"],
            }
        if flow == "jwt_bearer":
            now = int(time.time())
            claims = {
                "iss": secret["client_id"],
                "sub": secret["username"],
                "aud": self.audience,
                "exp": now + JWT_LIFETIME_SECONDS,
            }
            try:
                assertion = jwt.encode(claims, secret["private_key"], algorithm="RS256")
            except (ValueError, TypeError, jwt.PyJWTError) as exc:
                raise CrmSecretInvalid(
                    f"secret {self.connection.secret!r}: private_key is not a usable RSA PEM key ({type(exc).__name__})"
                ) from None
            return {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        return {
            "grant_type": "password",
            "client_id": secret["client_id"],
            "client_secret": secret["client_secret"],
            "username": secret["username"],
            "password": secret["password"] + secret.get("security_token", ""),
        }

    def _request_token(self) -> SalesforceToken:
        try:
            response = self._session.post(
                self.token_endpoint, data=self._form(), headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            raise CrmUnavailable(f"Salesforce token endpoint unreachable: {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise CrmUnavailable(f"Salesforce token endpoint answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error", f"HTTP {response.status_code}")
            description = body.get("error_description", "")
            raise CrmAuthenticationFailed(
                f"Salesforce refused the {self.connection.auth.flow} login of connection "
                f"{self.connection.name!r}: {error}" + (f" ({description})" if description else "")
            )
        instance_url = str(body.get("instance_url") or self.connection.instance_url).rstrip("/")
        return SalesforceToken(
            access_token=body["access_token"],
            instance_url=instance_url,
            issued_at=time.time(),
            identity=str(body["id"]) if body.get("id") else None,
        )
