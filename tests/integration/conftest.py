"""Our connectors, built as production builds them (`wiring.build_connector`), against the emulators over
HTTPS with the real clients (simple-salesforce, msal, requests)."""

from __future__ import annotations

import pytest

from crmsync.config import DynamicsConnection, SalesforceConnection
from crmsync.connectors.retry import RetryPolicy
from crmsync.wiring import build_connector


def salesforce_connection(
    url: str, ca_bundle: str, flow: str = "client_credentials", **extra
) -> SalesforceConnection:
    return SalesforceConnection.model_validate(
        {
            "kind": "salesforce",
            "name": "sf",
            "instance_url": url,
            "api_version": "62.0",
            "secret": "crmsync/sf",
            "ca_bundle": ca_bundle,
            "auth": {"flow": flow, **extra},
        }
    )


def secret_for(credentials, flow: str) -> dict:
    if flow == "client_credentials":
        return {"client_id": credentials.client_id, "client_secret": credentials.client_secret}
    if flow == "jwt_bearer":
        return {
            "client_id": credentials.client_id,
            "username": credentials.username,
            "private_key": credentials.private_key_pem,
        }
    return {
        "client_id": credentials.client_id,
        "client_secret": credentials.client_secret,
        "username": credentials.username,
        "password": credentials.password,
        "security_token": credentials.security_token,
    }


@pytest.fixture
def fast_retry() -> RetryPolicy:
    return RetryPolicy(attempts=4, base_delay=0, sleep=lambda _: None)


@pytest.fixture
def make_connector(salesforce_emulator, salesforce_oauth, fast_retry):
    def make(
        flow: str = "client_credentials", secret: dict | None = None, retry: RetryPolicy | None = None, **auth
    ):
        connection = salesforce_connection(salesforce_emulator.url, salesforce_emulator.ca_bundle, flow, **auth)
        return build_connector(connection, secret or secret_for(salesforce_oauth, flow), retry or fast_retry)

    return make


@pytest.fixture
def connector(make_connector):
    return make_connector()


def dynamics_connection(emulator, flow: str = "client_secret", **extra) -> DynamicsConnection:
    return DynamicsConnection.model_validate(
        {
            "kind": "dynamics",
            "name": "dyn",
            "instance_url": emulator.url,
            "tenant_id": emulator.tenant_id,
            "authority": emulator.authority,
            "secret": "crmsync/dyn",
            "ca_bundle": emulator.ca_bundle,
            "auth": {"flow": flow},
            **extra,
        }
    )


def dynamics_secret(emulator, flow: str = "client_secret") -> dict:
    if flow == "client_secret":
        return {"client_id": emulator.secret_app.client_id, "client_secret": emulator.secret_app.client_secret}
    app = emulator.certificate_app
    return {"client_id": app.client_id, "private_key": app.private_key_pem, "certificate": app.certificate_pem}


@pytest.fixture
def make_dynamics_connector(dynamics_emulator, fast_retry):
    def make(flow: str = "client_secret", secret: dict | None = None, retry: RetryPolicy | None = None, **extra):
        connection = dynamics_connection(dynamics_emulator, flow, **extra)
        return build_connector(connection, secret or dynamics_secret(dynamics_emulator, flow), retry or fast_retry)

    return make


@pytest.fixture
def dynamics(make_dynamics_connector):
    return make_dynamics_connector()
