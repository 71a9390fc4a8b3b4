"""Entra ID side of the Dynamics emulator, proven with the real msal client over HTTPS."""

from __future__ import annotations

import jwt
import msal

from tests.fixtures.dynamics_emulator import DynamicsAppCredentials, DynamicsEmulatorHandle, make_certificate


def test_msal_acquires_a_token_with_a_client_secret(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    result = dynamics_emulator.msal_app().acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert result["token_type"] == "Bearer"
    assert result["token_source"] == "identity_provider"
    assert result["expires_in"] > 3000


def test_msal_serves_the_second_token_from_its_cache(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    app = dynamics_emulator.msal_app()
    first = app.acquire_token_for_client(scopes=[dynamics_emulator.scope])
    dynamics_emulator.control.reset_stats()

    second = app.acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert dynamics_emulator.control.stats()["total"] == 0


def test_msal_acquires_a_token_with_a_certificate_thumbprint(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    app = dynamics_emulator.msal_app(dynamics_emulator.certificate_app)

    result = app.acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert "access_token" in result, result
    assert jwt.decode(result["access_token"], options={"verify_signature": False})["appidacr"] == "2"


def test_msal_acquires_a_token_with_a_public_certificate(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    app = dynamics_emulator.msal_app(dynamics_emulator.certificate_app, public_certificate=True)

    result = app.acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert "access_token" in result, result


def test_access_token_is_an_rs256_jwt_signed_with_the_published_keys(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    token = dynamics_emulator.token()
    http = dynamics_emulator.http()
    discovery = http.get(f"{dynamics_emulator.authority}/v2.0/.well-known/openid-configuration").json()
    keys = http.get(discovery["jwks_uri"]).json()["keys"]

    header = jwt.get_unverified_header(token)
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=dynamics_emulator.url)

    assert header["alg"] == "RS256"
    assert claims["tid"] == dynamics_emulator.tenant_id
    assert claims["appid"] == dynamics_emulator.secret_app.client_id
    assert claims["exp"] > claims["iat"]


def test_openid_configuration_points_at_the_emulator(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    url = f"{dynamics_emulator.authority}/v2.0/.well-known/openid-configuration"

    config = dynamics_emulator.http().get(url).json()

    assert config["token_endpoint"] == f"{dynamics_emulator.authority}/oauth2/v2.0/token"
    assert config["issuer"] == f"{dynamics_emulator.authority}/v2.0"
    assert config["jwks_uri"].startswith(dynamics_emulator.authority)
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]


def test_unknown_tenant_fails_discovery_with_aadsts90002(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    url = f"{dynamics_emulator.url}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"

    response = dynamics_emulator.http().get(url)

    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_wrong_client_secret_is_invalid_client_aadsts7000215(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    wrong = DynamicsAppCredentials(dynamics_emulator.secret_app.client_id, dynamics_emulator.tenant_id, "not-it")

    result = dynamics_emulator.msal_app(wrong).acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_unknown_client_is_unauthorized_client_aadsts700016(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    stranger = DynamicsAppCredentials("0e0e0e0e-0000-4000-8000-000000000000", dynamics_emulator.tenant_id, "x")

    result = dynamics_emulator.msal_app(stranger).acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_scope_without_default_suffix_is_invalid_scope(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    result = dynamics_emulator.msal_app().acquire_token_for_client(
        scopes=[f"{dynamics_emulator.url}/user_impersonation"]
    )

    assert result["error"] == "invalid_scope"


def test_scope_of_another_resource_is_invalid_resource(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    result = dynamics_emulator.msal_app().acquire_token_for_client(
        scopes=["https://other.crm.dynamics.com/.default"]
    )

    assert result["error"] == "invalid_resource"
    assert result["error_codes"] == [500011]


def test_a_token_for_another_resource_of_the_tenant_is_issued_and_refused_by_the_org(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.register_resource("https://other.crm.dynamics.com")
    result = dynamics_emulator.msal_app().acquire_token_for_client(
        scopes=["https://other.crm.dynamics.com/.default"]
    )

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/WhoAmI", headers=dynamics_emulator.headers(result["access_token"])
    )

    assert jwt.decode(result["access_token"], options={"verify_signature": False})["aud"] == (
        "https://other.crm.dynamics.com"
    )
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert 'error_description="The access token was issued for another resource"' in challenge
    assert f'resource_id="{dynamics_emulator.url}/"' in challenge


def test_unregistered_certificate_is_refused_with_aadsts700027(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    other = make_certificate("not registered")
    credentials = DynamicsAppCredentials(
        dynamics_emulator.certificate_app.client_id,
        dynamics_emulator.tenant_id,
        private_key_pem=other.private_key_pem,
        thumbprint=other.thumbprint,
    )

    result = dynamics_emulator.msal_app(credentials).acquire_token_for_client(scopes=[dynamics_emulator.scope])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_web_api_without_token_is_401_with_bearer_challenge(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = dynamics_emulator.http().get(f"{dynamics_emulator.api_url}/contacts")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert response.json()["error"]["code"] == "0x8005F101"


def test_web_api_with_expired_token_is_401_invalid_token(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    token = dynamics_emulator.token()
    dynamics_emulator.control.expire_access_tokens()

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/WhoAmI", headers=dynamics_emulator.headers(token)
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_web_api_refuses_a_token_from_another_tenant(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    other_tenant = "99999999-8888-4777-8666-555555555555"
    app = dynamics_emulator.control.register_app(client_secret="elsewhere", tenant_id=other_tenant)
    client = msal.ConfidentialClientApplication(
        app["client_id"],
        client_credential="elsewhere",
        authority=f"{dynamics_emulator.url}/{other_tenant}",
        instance_discovery=False,
        http_client=dynamics_emulator.http(),
    )
    token = client.acquire_token_for_client(scopes=[dynamics_emulator.scope])["access_token"]

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/WhoAmI", headers=dynamics_emulator.headers(token)
    )

    assert response.status_code == 401


def test_whoami_answers_the_application_user_of_the_app(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    http = dynamics_emulator.http()
    headers = dynamics_emulator.headers()

    whoami = http.get(f"{dynamics_emulator.api_url}/WhoAmI", headers=headers).json()
    user = http.get(f"{dynamics_emulator.api_url}/systemusers({whoami['UserId']})", headers=headers).json()

    assert user["applicationid"] == dynamics_emulator.secret_app.client_id
    assert {"BusinessUnitId", "OrganizationId"} <= whoami.keys()
