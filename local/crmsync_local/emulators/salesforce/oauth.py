"""OAuth 2.0 token endpoint (client credentials, JWT bearer, username-password, refresh token) and the
sessions it issues.

Connected apps, user credentials and refresh tokens are registered through the control API (a real org
hands a refresh token out at the end of the web-server flow, which needs a browser; the control API stands
in for that step). A refresh-token grant answers like Salesforce's: a new access token and no new refresh
token; an unknown or revoked token is 400 `invalid_grant`. Access tokens are opaque
random strings bound to a user; the REST API accepts them as `Authorization: Bearer <token>` (or the
older `OAuth <token>`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANT_PASSWORD = "password"
GRANT_REFRESH_TOKEN = "refresh_token"
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    client_secret: str | None = None
    public_key: RSAPublicKey | None = None
    run_as_username: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "has_secret": self.client_secret is not None,
            "has_certificate": self.public_key is not None,
            "run_as_username": self.run_as_username,
        }


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    security_token: str


@dataclass(frozen=True)
class RefreshGrant:
    client_id: str
    username: str


@dataclass(frozen=True)
class Session:
    token: str
    user_id: str
    username: str
    client_id: str | None
    issued_at: datetime


class OAuthError(Exception):
    """A token-endpoint failure: HTTP 400 with `{"error","error_description"}`."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.body = {"error": error, "error_description": description}


def load_public_key(pem: str) -> RSAPublicKey:
    """A connected app's verification key, from its X.509 certificate or a bare public key PEM."""
    data = pem.encode()
    key = (
        x509.load_pem_x509_certificate(data).public_key()
        if b"BEGIN CERTIFICATE" in data
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the JWT bearer flow needs an RSA key (RS256)")
    return key


class OAuthServer:
    def __init__(self, org_id: str) -> None:
        self.org_id = org_id
        self.apps: dict[str, ConnectedApp] = {}
        self.credentials: dict[str, Credential] = {}
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self._lock = threading.Lock()

    # -- registration ------------------------------------------------------------------------------------
    def register_app(self, app: ConnectedApp) -> None:
        with self._lock:
            self.apps[app.client_id] = app

    def register_credential(self, credential: Credential) -> None:
        with self._lock:
            self.credentials[credential.username.lower()] = credential

    def issue_refresh_token(self, client_id: str, username: str) -> str:
        """What the web-server flow would leave the client with: a refresh token for app and user."""
        if client_id not in self.apps:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        token = f"5Aep861{secrets.token_urlsafe(60)}"
        with self._lock:
            self.refresh_tokens[token] = RefreshGrant(client_id, username)
        return token

    # -- sessions --------------------------------------------------------------------------------------------
    def issue(self, user_id: str, username: str, client_id: str | None, now: datetime) -> Session:
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        session = Session(token, user_id, username, client_id, now)
        with self._lock:
            self.sessions[token] = session
        return session

    def session_for(self, authorization: str | None) -> Session | None:
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        with self._lock:
            return self.sessions.get(token.strip())

    def expire_all(self) -> int:
        with self._lock:
            count = len(self.sessions)
            self.sessions.clear()
        return count

    def expire_older_than(self, horizon: datetime) -> None:
        with self._lock:
            for token in [t for t, s in self.sessions.items() if s.issued_at < horizon]:
                del self.sessions[token]

    # -- token endpoint ----------------------------------------------------------------------------------------
    def token(
        self,
        form: Mapping[str, str],
        *,
        find_user: Callable[[str], str | None],
        base_url: str,
        now: datetime,
        real_now: datetime,
    ) -> dict[str, Any]:
        """The token response for a form-encoded token request; raises OAuthError as Salesforce would."""
        grant = form.get("grant_type", "")
        if grant == GRANT_CLIENT_CREDENTIALS:
            app = self._client(form, need_secret=True)
            if not app.run_as_username:
                raise OAuthError("invalid_grant", "no client credentials user enabled")
            username = app.run_as_username
        elif grant == GRANT_JWT_BEARER:
            app, username = self._jwt(form.get("assertion", ""), base_url, real_now)
        elif grant == GRANT_PASSWORD:
            app = self._client(form, need_secret=True)
            username = form.get("username", "")
            credential = self.credentials.get(username.lower())
            supplied = form.get("password", "")
            expected = credential.password + credential.security_token if credential else None
            if credential is None or not hmac.compare_digest(supplied.encode(), (expected or "").encode()):
                raise OAuthError("invalid_grant", "authentication failure")
        elif grant == GRANT_REFRESH_TOKEN:
            refresh = self.refresh_tokens.get(form.get("refresh_token", ""))
            app = self._client(form, need_secret=bool(form.get("client_secret")))
            if refresh is None or refresh.client_id != app.client_id:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            username = refresh.username
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        user_id = find_user(username)
        if user_id is None:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        session = self.issue(user_id, username, app.client_id, now)
        identity = f"{base_url}/id/{self.org_id}/{user_id}"
        issued_at = str(int(now.timestamp() * 1000))
        key = (app.client_secret or app.client_id).encode()
        signature = base64.b64encode(
            hmac.new(key, (identity + issued_at).encode(), hashlib.sha256).digest()
        ).decode()
        return {
            "access_token": session.token,
            "instance_url": base_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": signature,
            "scope": "api",
        }

    def _client(self, form: Mapping[str, str], *, need_secret: bool) -> ConnectedApp:
        app = self.apps.get(form.get("client_id", ""))
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if need_secret:
            supplied = form.get("client_secret", "")
            if app.client_secret is None or not hmac.compare_digest(supplied.encode(), app.client_secret.encode()):
                raise OAuthError("invalid_client", "invalid client credentials")
        return app

    def _jwt(self, assertion: str, base_url: str, real_now: datetime) -> tuple[ConnectedApp, str]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        app = self.apps.get(str(unverified.get("iss", "")))
        if app is None:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if app.public_key is None:
            raise OAuthError("invalid_grant", "invalid assertion")
        audiences = [*LOGIN_AUDIENCES, base_url, base_url + "/"]
        try:
            claims = jwt.decode(
                assertion,
                app.public_key,
                algorithms=["RS256"],
                audience=audiences,
                options={"require": ["exp", "iss", "sub", "aud"]},
                leeway=0,
            )
        except jwt.InvalidAudienceError as exc:
            raise OAuthError("invalid_grant", "audience is invalid") from exc
        except jwt.ExpiredSignatureError as exc:
            raise OAuthError("invalid_grant", "expired authorization code") from exc
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        if claims["exp"] < real_now.timestamp():
            raise OAuthError("invalid_grant", "expired authorization code")
        return app, str(claims["sub"])
