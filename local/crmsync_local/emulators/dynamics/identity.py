"""Microsoft Entra ID, as much of it as a confidential client needs: OpenID discovery, signing keys and the
client-credentials token endpoint, with `client_secret` or a certificate-signed `client_assertion`.

It works with the real msal `ConfidentialClientApplication(…, authority=<base>/<tenant>,
instance_discovery=False)`: msal reads `{authority}/v2.0/.well-known/openid-configuration`, then posts to
`token_endpoint`. A certificate credential arrives as a JWT whose header carries `x5t` (SHA-1 thumbprint,
RS256, when msal is given a thumbprint) or `x5t#S256` and `x5c` (PS256, when given the certificate); the
signature is verified with the registered certificate. Errors use the AAD shape (`error`,
`error_description` beginning with the AADSTS code, `error_codes`, `trace_id`, `correlation_id`, …).

Access tokens are RS256 JWTs signed by the emulator's key (published at `jwks_uri`), shaped like the v1
tokens Dataverse receives: `aud` is the resource (the org URL), `appid`, `tid`, `oid`, `exp`. Their
lifetime is counted on the real clock (see clock.py for why). Besides the org, the tenant may hold other
resource principals (another environment, an API): Entra ID issues tokens for them, and the org refuses
those tokens with 401, which is how a client meets "a token for the wrong resource".
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_TOKEN_LIFETIME = 3599


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class RegisteredApp:
    client_id: str
    tenant_id: str
    display_name: str
    secrets: list[str] = field(default_factory=list)
    certificates: list[x509.Certificate] = field(default_factory=list)
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def certificate_for(self, header: dict[str, Any]) -> x509.Certificate | None:
        for certificate in self.certificates:
            sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - x5t is SHA-1 by definition (RFC 7515)
            sha256 = certificate.fingerprint(hashes.SHA256())
            if "x5t#S256" in header and _b64url_decode(header["x5t#S256"]) == sha256:
                return certificate
            if "x5t" in header and _b64url_decode(header["x5t"]) == sha1:
                return certificate
            if (
                "x5c" in header
                and header["x5c"]
                and base64.b64decode(header["x5c"][0]) == certificate.public_bytes(serialization.Encoding.DER)
            ):
                return certificate
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "object_id": self.object_id,
            "secrets": len(self.secrets),
            "certificates": [c.fingerprint(hashes.SHA1()).hex().upper() for c in self.certificates],  # noqa: S303
        }


class AadError(Exception):
    """An Entra ID token-endpoint error (status, `error`, AADSTS number and text)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self, now: datetime) -> dict[str, Any]:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
                f"Timestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


class InvalidToken(Exception):
    """A bearer token Dataverse would refuse; the message goes into `WWW-Authenticate`."""


class EntraId:
    def __init__(self, default_tenant: str) -> None:
        self.default_tenant = default_tenant
        self.tenants: set[str] = {default_tenant}
        self.apps: dict[str, RegisteredApp] = {}
        self.resources: set[str] = set()  # resource principals besides the org, e.g. another environment
        self.token_lifetime = DEFAULT_TOKEN_LIFETIME
        self.not_before = 0.0
        self._issued_at: dict[str, float] = {}  # token id (`uti`) -> precise issue time, for revocation
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._certificate = self._self_signed(self._key)
        self.key_id = b64url(self._certificate.fingerprint(hashes.SHA1()))  # noqa: S303 - kid/x5t convention

    @staticmethod
    def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync emulator token signing")])
        now = datetime.now(UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )

    def reset(self) -> None:
        with self._lock:
            self.apps.clear()
            self.resources.clear()
            self.tenants = {self.default_tenant}
            self.token_lifetime = DEFAULT_TOKEN_LIFETIME
            self.not_before = 0.0
            self._issued_at.clear()

    # -- registration (control API) ------------------------------------------------------------------
    def register(
        self,
        *,
        client_id: str | None = None,
        tenant_id: str | None = None,
        client_secret: str | None = None,
        certificate_pem: str | None = None,
        display_name: str | None = None,
    ) -> RegisteredApp:
        client_id = (client_id or str(uuid.uuid4())).lower()
        tenant_id = (tenant_id or self.default_tenant).lower()
        with self._lock:
            app = self.apps.get(client_id)
            if app is None:
                app = RegisteredApp(client_id, tenant_id, display_name or f"crmsync app {client_id[:8]}")
                self.apps[client_id] = app
            if client_secret:
                app.secrets.append(client_secret)
            if certificate_pem:
                app.certificates.append(x509.load_pem_x509_certificate(certificate_pem.encode()))
            self.tenants.add(tenant_id)
        return app

    def register_resource(self, url: str) -> str:
        """Add a resource principal (an Application ID URI) tokens can be requested for."""
        resource = url.rstrip("/")
        if not resource.startswith("https://"):
            raise ValueError("a resource is an https:// Application ID URI")
        with self._lock:
            self.resources.add(resource)
        return resource

    def expire_tokens(self) -> None:
        """Every access token issued so far becomes invalid (as if it had expired)."""
        with self._lock:
            self.not_before = time.time() + 1e-3

    # -- discovery -------------------------------------------------------------------------------------
    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in self.tenants

    def openid_configuration(self, base_url: str, tenant: str) -> dict[str, Any]:
        root = f"{base_url}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        der = self._certificate.public_bytes(serialization.Encoding.DER)
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.key_id,
                    "x5t": self.key_id,
                    "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(numbers.e.to_bytes(3, "big")),
                    "x5c": [base64.b64encode(der).decode()],
                }
            ]
        }

    # -- token endpoint --------------------------------------------------------------------------------
    def issue_token(
        self,
        *,
        tenant: str,
        form: dict[str, str],
        basic_auth: tuple[str, str] | None,
        resource_ok: Any,
        token_endpoint: str,
        v1: bool = False,
    ) -> dict[str, Any]:
        """The token response for a client-credentials request, or AadError."""
        tenant = tenant.lower()
        if not self.knows_tenant(tenant):
            raise AadError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud. Check with your subscription administrator, this may happen if there are "
                "no active subscriptions for the tenant.",
            )
        grant_type = form.get("grant_type")
        if not grant_type:
            raise AadError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        if grant_type != "client_credentials":
            raise AadError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        client_id = form.get("client_id") or (basic_auth[0] if basic_auth else None)
        if not client_id:
            raise AadError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        resource = self._resource(form, v1)
        app = self.apps.get(client_id.lower())
        if app is None or app.tenant_id != tenant:
            raise AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
                "happen if the application has not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        credential_kind = self._authenticate(app, form, basic_auth, token_endpoint)
        if not resource_ok(resource):
            raise AadError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {tenant}. This can "
                "happen if the application has not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
            )
        now = int(time.time())
        token_id = b64url(uuid.uuid4().bytes)
        claims = {
            "aud": resource,
            "iss": f"{urlparse(token_endpoint)._replace(path='').geturl()}/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "aio": b64url(uuid.uuid4().bytes),
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": credential_kind,
            "idp": f"https://sts.windows.net/{tenant}/",
            "idtyp": "app",
            "oid": app.object_id,
            "rh": b64url(uuid.uuid4().bytes),
            "sub": app.object_id,
            "tid": tenant,
            "uti": token_id,
            "ver": "1.0",
        }
        with self._lock:
            self._issued_at[token_id] = time.time()
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id, "x5t": self.key_id})
        response: dict[str, Any] = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        if v1:
            response.update(
                {"expires_on": str(now + self.token_lifetime), "not_before": str(now), "resource": resource}
            )
        return response

    @staticmethod
    def _resource(form: dict[str, str], v1: bool) -> str:
        if v1:
            resource = form.get("resource")
            if not resource:
                raise AadError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                )
            return resource.rstrip("/")
        scope = (form.get("scope") or "").strip()
        if not scope:
            raise AadError(
                400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
            )
        scopes = scope.split()
        if len(scopes) != 1:
            raise AadError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
            )
        if not scopes[0].endswith("/.default"):
            raise AadError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        return scopes[0].removesuffix("/.default").rstrip("/")

    def _authenticate(
        self, app: RegisteredApp, form: dict[str, str], basic_auth: tuple[str, str] | None, token_endpoint: str
    ) -> str:
        """Check the secret or the assertion; answer `appidacr` ("1" secret, "2" certificate)."""
        secret = form.get("client_secret") or (basic_auth[1] if basic_auth else None)
        assertion = form.get("client_assertion")
        if secret is not None:
            if secret not in app.secrets:
                raise AadError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                    f"value, not the client secret ID, for a secret added to app '{app.client_id}'.",
                )
            return "1"
        if assertion is None:
            raise AadError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AadError(
                400,
                "invalid_request",
                700023,
                f"Client assertion type is invalid. The client_assertion_type must be '{ASSERTION_TYPE}'.",
            )
        self._verify_assertion(app, assertion, token_endpoint)
        return "2"

    @staticmethod
    def _verify_assertion(app: RegisteredApp, assertion: str, token_endpoint: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise AadError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from exc
        certificate = app.certificate_for(header)
        if certificate is None:
            thumbprint = header.get("x5t#S256") or header.get("x5t") or "none"
            raise AadError(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', "
                f"Please visit the Azure Portal, Enterprise applications, Application ID: {app.client_id}]",
            )
        try:
            claims = jwt.decode(
                assertion,
                certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
                leeway=300,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AadError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            ) from exc
        except jwt.InvalidSignatureError as exc:
            raise AadError(401, "invalid_client", 700027, "Client assertion failed signature validation.") from exc
        except jwt.PyJWTError as exc:
            raise AadError(401, "invalid_client", 50027, f"JWT token is invalid or malformed. {exc}") from exc
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise AadError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        audience = urlparse(str(claims.get("aud")))
        expected = urlparse(token_endpoint)
        if audience.netloc != expected.netloc or not audience.path.endswith(
            ("/oauth2/v2.0/token", "/oauth2/token")
        ):
            raise AadError(
                401,
                "invalid_client",
                700212,
                f"Client assertion audience claim does not match Realm issuer. Audience: '{claims.get('aud')}'.",
            )

    # -- validating bearer tokens (Dataverse side) -----------------------------------------------------
    def validate(self, token: str, *, audiences: set[str], tenant: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key.public_key(), algorithms=["RS256"], options={"verify_aud": False}
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("The access token is expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("The access token is invalid") from exc
        if str(claims.get("aud", "")).rstrip("/") not in audiences:
            raise InvalidToken("The access token was issued for another resource")
        if claims.get("tid") != tenant:
            raise InvalidToken("The access token was issued by another tenant")
        issued = self._issued_at.get(str(claims.get("uti")), float(claims.get("iat", 0)))
        if issued < self.not_before:
            raise InvalidToken("The access token is expired")
        if claims.get("appid") not in self.apps:
            raise InvalidToken("The application of the access token is not registered")
        return claims

    @staticmethod
    def unverified_subject(token: str) -> str | None:
        """The token's subject without checking it, to key per-user service-protection counters early."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        subject = claims.get("oid") or claims.get("sub")
        return str(subject) if subject else None
