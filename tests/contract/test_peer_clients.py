"""Clients we did not write, run unchanged against the emulators: if they read a table end to end, the
emulators speak the real protocol (login, describe, paging, metadata, `$batch`).

tap-salesforce and airbyte-source-salesforce log in with a refresh token and read Contact; airbyte's
Dataverse source signs in with client credentials, reads the metadata (with a `$batch` of DateTime
behaviours) and reads contact. Each is given only its instance URL, credentials, the test CA and its
hard-coded login host pointed at the emulator (bench/peers/sitecustomize.py). Microsoft's Dataverse SDK is
in `make test` (test_dynamics_sdk.py); these three need their own virtual environments, too heavy for
`make test`: `make test-peers` builds them (.venv-peers/) and runs this file, which skips a peer that is not
installed. `make bench-peers` times them side by side with crmsync's read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.peers_bench import (
    PEER_PACKAGES,
    PEERS_DIR,
    airbyte_dataverse,
    airbyte_salesforce,
    tap_salesforce,
)
from crmsync_local import demo_data
from crmsync_local.emulators.salesforce.org import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle
from tests.fixtures.salesforce_emulator import SalesforceEmulatorHandle

RECORDS = 30
TIMEOUT = 600


def _installed(package: str) -> pytest.MarkDecorator:
    stamp = PEERS_DIR / package / f".installed-{PEER_PACKAGES[package]}"
    return pytest.mark.skipif(not stamp.exists(), reason=f"{package} is not installed: make test-peers")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
def salesforce_peer(salesforce_emulator: SalesforceEmulatorHandle) -> dict[str, str]:
    salesforce_emulator.control.seed("Contact", list(demo_data.contacts(RECORDS, now=_now(), rejects=False)))
    return {
        "url": salesforce_emulator.url,
        "ca_bundle": salesforce_emulator.ca_bundle,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": salesforce_emulator.control.issue_refresh_token(DEFAULT_CLIENT_ID),
    }


@_installed("tap-salesforce")
def test_tap_salesforce_reads_every_contact(salesforce_peer: dict[str, str], tmp_path: Path) -> None:
    result = tap_salesforce(tmp_path, salesforce_peer, TIMEOUT)

    assert (result.error, result.records) == (None, RECORDS)


@_installed("airbyte-source-salesforce")
def test_airbyte_source_salesforce_reads_every_contact(salesforce_peer: dict[str, str], tmp_path: Path) -> None:
    result = airbyte_salesforce(tmp_path, salesforce_peer, TIMEOUT)

    assert (result.error, result.records) == (None, RECORDS)


@_installed("airbyte-source-microsoft-dataverse")
def test_airbyte_source_microsoft_dataverse_reads_every_contact(
    dynamics_emulator: DynamicsEmulatorHandle, tmp_path: Path
) -> None:
    dynamics_emulator.control.put_records("contacts", list(demo_data.dynamics_contacts(RECORDS, now=_now())))
    app = dynamics_emulator.secret_app
    dyn = {
        "url": dynamics_emulator.url,
        "ca_bundle": dynamics_emulator.ca_bundle,
        "tenant_id": app.tenant_id,
        "client_id": app.client_id,
        "client_secret": str(app.client_secret),
    }

    result = airbyte_dataverse(tmp_path, dyn, TIMEOUT)

    assert (result.error, result.records) == (None, RECORDS)
