"""An applied configuration (examples/syncs.yaml) on the local stack, with an emulator as the CRM:
`sync_env` for Salesforce, `dynamics_env` for Dynamics 365."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync.config import CrmsyncConfig, load_config
from crmsync.services.operations import Operator
from crmsync_local.marketing import marketing_profiles

ROOT = Path(__file__).parents[2]
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class SyncEnvironment:
    stack: Any
    crm: Any
    operator: Operator
    config: CrmsyncConfig

    @property
    def container(self):
        return self.operator.container

    def run(self, sync_id: str = "sf-contacts", **start: Any) -> dict[str, Any]:
        run = self.operator.start(sync_id, **start)
        return self.operator.wait(run, timeout=120, poll=0.02)

    def profiles(self) -> list[dict[str, Any]]:
        return marketing_profiles(self.container).scan_profiles()

    def reapply(self, sync_id: str, **changes: Any) -> None:
        """Apply examples/syncs.yaml with one sync changed, as an operator editing the file would."""
        self.reapply_syncs({sync_id: changes})

    def reapply_syncs(self, changes: dict[str, dict[str, Any]]) -> None:
        """Apply examples/syncs.yaml with these syncs changed (by sync id), the others as they are."""
        syncs = [
            type(s).model_validate({**s.model_dump(by_alias=True, exclude_none=True), **changes[s.id]})
            if s.id in changes
            else s
            for s in self.config.syncs
        ]
        self.operator.apply(self.config.model_copy(update={"syncs": syncs}))

    def watermark(self, sync_id: str = "sf-contacts"):
        return self.operator.watermark(sync_id)[1]

    def seed_contacts(self, count: int, *, start: datetime = T0, step=timedelta(minutes=1), prefix="c", **fields):
        rows = []
        for i in range(count):
            stamp = (start + i * step).isoformat()
            rows.append(
                {
                    "FirstName": f"Ana{prefix}{i}",
                    "LastName": f"Lima{prefix}{i}",
                    "Email": f"ana.{prefix}{i}@example.com",
                    "SystemModstamp": stamp,
                    "LastModifiedDate": stamp,
                    "CreatedDate": stamp,
                    **fields,
                }
            )
        return self.crm.control.seed("Contact", rows)


def salesforce_example_config(url: str, ca_bundle: str, **more: str) -> CrmsyncConfig:
    """examples/syncs.yaml with its Salesforce connection pointed at an emulator (`more`: other variables)."""
    return load_config(
        (ROOT / "examples/syncs.yaml").read_text(),
        environ={"CRMSYNC_SALESFORCE_URL": url, "CRMSYNC_CA_BUNDLE": ca_bundle, **more},
    )


@pytest.fixture
def sync_env(local_stack, salesforce_emulator, salesforce_oauth, monkeypatch) -> SyncEnvironment:
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    monkeypatch.setenv("CRMSYNC_RETRY_BASE_DELAY_SECONDS", "0")
    return salesforce_environment(local_stack, salesforce_emulator, salesforce_oauth)


def salesforce_environment(local_stack, salesforce_emulator, salesforce_oauth) -> SyncEnvironment:
    """`sync_env` on a stack and emulator given (the environment variables are the caller's)."""
    local_stack.client("secretsmanager").create_secret(
        Name="crmsync/sf-prod",
        SecretString=json.dumps(
            {"client_id": salesforce_oauth.client_id, "client_secret": salesforce_oauth.client_secret}
        ),
    )
    config = salesforce_example_config(salesforce_emulator.url, salesforce_emulator.ca_bundle)
    operator = Operator("crmsync")
    operator.apply(config)
    salesforce_emulator.control.set_clock(T0 + timedelta(days=1), frozen=True)
    return SyncEnvironment(stack=local_stack, crm=salesforce_emulator, operator=operator, config=config)


class DynamicsSyncEnvironment(SyncEnvironment):
    """The Dynamics emulator (`crm` is its fixture handle) behind `dyn-prod` of examples/syncs.yaml."""

    def seed_contacts(self, count: int, *, start: datetime = T0, step=timedelta(minutes=1), prefix="c", **fields):
        rows = []
        for i in range(count):
            stamp = (start + i * step).isoformat()
            rows.append(
                {
                    "firstname": f"Ana{prefix}{i}",
                    "lastname": f"Lima{prefix}{i}",
                    "emailaddress1": f"ana.{prefix}{i}@example.net",
                    "createdon": stamp,
                    "modifiedon": stamp,
                    **fields,
                }
            )
        return self.crm.control.put_records("contacts", rows)


@pytest.fixture
def dynamics_env(local_stack, dynamics_emulator, monkeypatch) -> DynamicsSyncEnvironment:
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    monkeypatch.setenv("CRMSYNC_RETRY_BASE_DELAY_SECONDS", "0")
    return dynamics_environment(local_stack, dynamics_emulator)


def dynamics_environment(local_stack, dynamics_emulator) -> DynamicsSyncEnvironment:
    """`dynamics_env` on a stack and emulator given (the environment variables are the caller's)."""
    app = dynamics_emulator.secret_app
    local_stack.client("secretsmanager").create_secret(
        Name="crmsync/dyn-prod",
        SecretString=json.dumps({"client_id": app.client_id, "client_secret": app.client_secret}),
    )
    config = load_config(
        (ROOT / "examples/syncs.yaml").read_text(),
        environ={
            "CRMSYNC_DYNAMICS_URL": dynamics_emulator.url,
            "CRMSYNC_DYNAMICS_TENANT_ID": dynamics_emulator.tenant_id,
            "CRMSYNC_DYNAMICS_AUTHORITY": dynamics_emulator.authority,
            "CRMSYNC_CA_BUNDLE": dynamics_emulator.ca_bundle,
        },
    )
    operator = Operator("crmsync")
    operator.apply(config)
    dynamics_emulator.control.set_clock(T0 + timedelta(days=1), frozen=True)
    return DynamicsSyncEnvironment(stack=local_stack, crm=dynamics_emulator, operator=operator, config=config)
