"""OAuth token endpoint and session handling, as a connector's own token call (raw requests) sees them."""

from __future__ import annotations

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession
from simple_salesforce.format import format_soql

from tests.fixtures.salesforce_emulator import SalesforceEmulatorHandle, SalesforceOAuthCredentials


def _token(emulator: SalesforceEmulatorHandle, form: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = emulator.http().post(f"{emulator.url}/services/oauth2/token", data=form)
    return response.status_code, response.json()


def _client(emulator: SalesforceEmulatorHandle, token: dict[str, object]) -> Salesforce:
    return Salesforce(
        instance_url=str(token["instance_url"]),
        session_id=str(token["access_token"]),
        session=emulator.http(),
        version="59.0",
    )


def test_client_credentials_flow_returns_documented_token_response(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, salesforce_oauth.client_credentials_form())

    assert status == 200
    assert body["instance_url"] == salesforce_emulator.url
    assert body["token_type"] == "Bearer"
    assert {"access_token", "id", "issued_at", "signature"} <= set(body)
    assert str(body["issued_at"]).isdigit()


def test_client_credentials_token_runs_as_the_apps_user(salesforce_emulator, salesforce_oauth):
    _, body = _token(salesforce_emulator, salesforce_oauth.client_credentials_form())
    sf = _client(salesforce_emulator, body)

    created = sf.Contact.create({"LastName": "Runas"})
    record = sf.query(format_soql("SELECT CreatedBy.Username FROM Contact WHERE Id = {}", created["id"]))[
        "records"
    ][0]

    assert record["CreatedBy"]["Username"] == salesforce_oauth.username


def test_wrong_client_secret_is_invalid_client(salesforce_emulator, salesforce_oauth):
    form = salesforce_oauth.client_credentials_form() | {"client_secret": "nope"}

    assert _token(salesforce_emulator, form) == (
        400,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
    )


def test_unknown_client_id_is_invalid_client_id(salesforce_emulator, salesforce_oauth):
    form = salesforce_oauth.client_credentials_form() | {"client_id": "who-is-this"}

    assert _token(salesforce_emulator, form) == (
        400,
        {"error": "invalid_client_id", "error_description": "client identifier invalid"},
    )


def test_jwt_bearer_flow_issues_a_working_token(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, salesforce_oauth.jwt_form())

    assert status == 200
    assert _client(salesforce_emulator, body).query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_jwt_accepts_the_emulator_url_and_test_salesforce_as_audience(salesforce_emulator, salesforce_oauth):
    for audience in (salesforce_emulator.url, "https://test.salesforce.com"):
        status, _ = _token(salesforce_emulator, salesforce_oauth.jwt_form(audience=audience))
        assert status == 200, audience


def test_jwt_with_foreign_audience_is_invalid_grant(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, salesforce_oauth.jwt_form(audience="https://example.com"))

    assert status == 400
    assert body["error"] == "invalid_grant"


def test_expired_jwt_is_invalid_grant(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, salesforce_oauth.jwt_form(lifetime_s=-60))

    assert (status, body["error"]) == (400, "invalid_grant")


def test_jwt_signed_with_another_key_is_invalid_grant(salesforce_emulator, salesforce_oauth):
    import jwt as pyjwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assertion = pyjwt.encode(
        {
            "iss": salesforce_oauth.client_id,
            "sub": salesforce_oauth.username,
            "aud": "https://login.salesforce.com",
            "exp": 4_000_000_000,
        },
        other,
        algorithm="RS256",
    )
    status, body = _token(
        salesforce_emulator,
        {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )

    assert (status, body) == (400, {"error": "invalid_grant", "error_description": "invalid assertion"})


def test_password_flow_takes_password_and_security_token_concatenated(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, salesforce_oauth.password_form())

    assert status == 200
    assert body["access_token"]


def test_password_without_security_token_is_authentication_failure(salesforce_emulator, salesforce_oauth):
    form = salesforce_oauth.password_form() | {"password": salesforce_oauth.password}

    assert _token(salesforce_emulator, form) == (
        400,
        {"error": "invalid_grant", "error_description": "authentication failure"},
    )


def _refresh_form(credentials: SalesforceOAuthCredentials, refresh_token: str) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "refresh_token": refresh_token,
    }


def test_refresh_token_grant_issues_a_working_token_for_the_tokens_user(salesforce_emulator, salesforce_oauth):
    refresh = salesforce_emulator.control.issue_refresh_token(
        salesforce_oauth.client_id, salesforce_oauth.username
    )

    status, body = _token(salesforce_emulator, _refresh_form(salesforce_oauth, refresh))

    assert status == 200
    sf = _client(salesforce_emulator, body)
    user = sf.query(format_soql("SELECT Username FROM User WHERE Id = {}", str(body["id"]).rsplit("/", 1)[1]))
    assert user["records"][0]["Username"] == salesforce_oauth.username


def test_refresh_token_response_has_no_new_refresh_token(salesforce_emulator, salesforce_oauth):
    refresh = salesforce_emulator.control.issue_refresh_token(salesforce_oauth.client_id)

    _, body = _token(salesforce_emulator, _refresh_form(salesforce_oauth, refresh))

    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"} <= set(body)
    assert "refresh_token" not in body


def test_unknown_refresh_token_is_invalid_grant(salesforce_emulator, salesforce_oauth):
    status, body = _token(salesforce_emulator, _refresh_form(salesforce_oauth, "5Aep861nonsense"))

    assert (status, body["error"]) == (400, "invalid_grant")


def test_refresh_token_of_another_app_is_invalid_grant(salesforce_emulator, salesforce_oauth):
    salesforce_emulator.control.register_app("3MVG9other", client_secret="other-secret")
    refresh = salesforce_emulator.control.issue_refresh_token("3MVG9other")

    status, body = _token(salesforce_emulator, _refresh_form(salesforce_oauth, refresh))

    assert (status, body["error"]) == (400, "invalid_grant")


def test_refresh_token_with_a_wrong_client_secret_is_invalid_client(salesforce_emulator, salesforce_oauth):
    refresh = salesforce_emulator.control.issue_refresh_token(salesforce_oauth.client_id)
    form = {**_refresh_form(salesforce_oauth, refresh), "client_secret": "wrong"}

    status, body = _token(salesforce_emulator, form)

    assert (status, body["error"]) == (400, "invalid_client")


def test_unknown_grant_type_is_unsupported_grant_type(salesforce_emulator):
    status, body = _token(salesforce_emulator, {"grant_type": "authorization_code"})

    assert (status, body["error"]) == (400, "unsupported_grant_type")


def test_request_without_token_is_invalid_session_id(salesforce_emulator):
    response = salesforce_emulator.http().get(salesforce_emulator.api_url("limits"))

    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_oauth_authorization_scheme_is_accepted(salesforce_emulator):
    token = salesforce_emulator.token()
    response = salesforce_emulator.http().get(
        salesforce_emulator.api_url("limits"), headers={"Authorization": f"OAuth {token}"}
    )

    assert response.status_code == 200


def test_expired_sessions_raise_salesforce_expired_session(salesforce_emulator, salesforce_client):
    salesforce_client.query("SELECT Id FROM Contact")
    salesforce_emulator.control.expire_sessions()

    with pytest.raises(SalesforceExpiredSession) as raised:
        salesforce_client.query("SELECT Id FROM Contact")
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"


def test_credentials_fixture_covers_every_flow(salesforce_oauth: SalesforceOAuthCredentials):
    assert salesforce_oauth.client_credentials_form()["grant_type"] == "client_credentials"
    assert salesforce_oauth.password_form()["password"].endswith(salesforce_oauth.security_token)
    assert salesforce_oauth.jwt_form()["grant_type"].endswith("jwt-bearer")
