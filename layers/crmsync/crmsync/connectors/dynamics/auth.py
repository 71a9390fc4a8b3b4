"""Entra ID client-credentials tokens for a Dataverse org, through MSAL (SPEC C2).

MSAL talks to Entra ID through our `CrmHttpSession` (https only, timeout, CA bundle, calls counted) and
keeps the token in its cache until shortly before it expires; `renew()` drops it after the org answered
401. A custom authority (a sovereign cloud, the local emulator) is used as given: no instance discovery
and no authority validation, which would otherwise send it to login.microsoftonline.com.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from msal.exceptions import MsalServiceError

from ...config import DynamicsConnection
from ...errors import CrmAuthenticationFailed, CrmSecretInvalid, CrmsyncError, CrmUnavailable
from ..http import CrmHttpSession

REQUIRED_SECRET_FIELDS = {
    "client_secret": ("client_id", "client_secret"),
    "certificate": ("client_id", "private_key"),
}
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
_AADSTS = re.compile(r"^AADSTS\d+:\s*")


def check_secret(connection: DynamicsConnection, secret: dict[str, Any]) -> None:
    flow = connection.auth.flow
    missing = [key for key in REQUIRED_SECRET_FIELDS[flow] if not secret.get(key)]
    if flow == "certificate" and not (secret.get("certificate") or secret.get("thumbprint")):
        missing.append("certificate or thumbprint")
    if missing:
        raise CrmSecretInvalid(
            f"secret {connection.secret!r} of connection {connection.name!r} lacks {', '.join(missing)} "
            f"(needed by the {flow} flow)"
        )


def client_credential(connection: DynamicsConnection, secret: dict[str, Any]) -> str | dict[str, str]:
    """What `ConfidentialClientApplication(client_credential=…)` takes; PEM fields are checked here, so a
    broken secret is named as such rather than failing inside MSAL."""
    if connection.auth.flow == "client_secret":
        return str(secret["client_secret"])
    passphrase = secret.get("private_key_passphrase")
    where = f"secret {connection.secret!r}"
    try:
        serialization.load_pem_private_key(
            str(secret["private_key"]).encode(), password=passphrase.encode() if passphrase else None
        )
    except (ValueError, TypeError):
        raise CrmSecretInvalid(f"{where}: private_key is not a usable PEM private key") from None
    credential = {"private_key": str(secret["private_key"])}
    if passphrase:
        credential["passphrase"] = str(passphrase)
    if secret.get("certificate"):
        try:
            x509.load_pem_x509_certificate(str(secret["certificate"]).encode())
        except ValueError:
            raise CrmSecretInvalid(f"{where}: certificate is not a PEM X.509 certificate") from None
        credential["public_certificate"] = str(secret["certificate"])
    if secret.get("thumbprint"):
        credential["thumbprint"] = str(secret["thumbprint"]).replace(":", "").upper()
    return credential


class DynamicsTokenProvider:
    """One MSAL confidential client per connection, created on first use (it discovers the authority)."""

    def __init__(self, connection: DynamicsConnection, secret: dict[str, Any], session: CrmHttpSession) -> None:
        check_secret(connection, secret)
        self.connection = connection
        self._client_id = str(secret["client_id"])
        self._credential = client_credential(connection, secret)
        self._session = session
        self._application: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    @property
    def scope(self) -> str:
        return self.connection.scope

    def token(self) -> str:
        """An access token for the org, from MSAL's cache while it is valid."""
        with self._lock:
            return self._acquire()

    def renew(self, stale: str) -> str:
        """A new token after the org refused `stale`, unless another caller already replaced it."""
        with self._lock:
            current = self._acquire()
            if current != stale:
                return current
            self._app().remove_tokens_for_client()
            return self._acquire()

    def _app(self) -> msal.ConfidentialClientApplication:
        if self._application is None:
            custom = self.connection.authority is not None
            options: dict[str, Any] = {"instance_discovery": False, "validate_authority": False} if custom else {}
            try:
                self._application = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._credential,
                    authority=self.connection.effective_authority,
                    http_client=self._session,
                    **options,
                )
            except requests.RequestException as exc:
                raise CrmUnavailable(f"Entra ID authority unreachable: {type(exc).__name__}") from None
            except MsalServiceError:
                raise CrmUnavailable(
                    f"Entra ID authority {self.connection.effective_authority} answered a server error"
                ) from None
            except ValueError:
                raise CrmAuthenticationFailed(
                    f"connection {self.connection.name!r}: Entra ID does not know the authority "
                    f"{self.connection.effective_authority} (check tenant_id and authority)"
                ) from None
        return self._application

    def _acquire(self) -> str:
        application = self._app()
        try:
            result = application.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise CrmUnavailable(f"Entra ID token endpoint unreachable: {type(exc).__name__}") from None
        except (ValueError, MsalServiceError):
            raise CrmUnavailable("Entra ID answered the token request with something that is not JSON") from None
        if "access_token" in result:
            return str(result["access_token"])
        raise self._refusal(result)

    def _refusal(self, result: dict[str, Any]) -> CrmsyncError:
        error = str(result.get("error", "unknown_error"))
        codes = result.get("error_codes") or []
        description = _AADSTS.sub("", str(result.get("error_description", ""))).split("\r\n")[0].split("\n")[0]
        text = (
            f"Entra ID refused the {self.connection.auth.flow} credentials of connection "
            f"{self.connection.name!r} for scope {self.scope}: {error}"
            + (f" (AADSTS{codes[0]})" if codes else "")
            + (f": {description.strip()}" if description.strip() else "")
        )
        if error in TRANSIENT_ERRORS:
            return CrmUnavailable(text)
        return CrmAuthenticationFailed(text)
