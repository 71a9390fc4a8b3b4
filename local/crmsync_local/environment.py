"""The embedded default: emulated AWS (the local stack) plus emulated Salesforce and Dynamics 365, wired
together.

`crmsync demo` runs it in-process; `crmsync local up` serves it over HTTP(S) for other processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crmsync.services.insight import LOCAL_LOG_VARIABLE
from crmsync_local.emulators.common import EmulatorServer
from crmsync_local.emulators.dynamics import DynamicsControl, DynamicsEmulator
from crmsync_local.emulators.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SalesforceControl,
    SalesforceEmulator,
)
from crmsync_local.stack import DEFAULT_TEMPLATE, LocalStack
from crmsync_local.stack.stack import DrainResult

SALESFORCE_SECRET = "crmsync/sf-prod"
DYNAMICS_SECRET = "crmsync/dyn-prod"
DYNAMICS_CLIENT_ID = "5f1c2e3d-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
DYNAMICS_CLIENT_SECRET = "crmsync~local~dynamics"
STATE_DIR = Path(".crmsync")
EVENTS_QUEUE = "EventsQueue"


@dataclass
class LocalEnvironment:
    """Start with `with LocalEnvironment(...) as env:`; everything stops on exit."""

    serve: bool = False
    port: int = 0
    time_scale: float = 1.0
    log_path: Path = field(default_factory=lambda: STATE_DIR / "local-lambda.log")
    stack: LocalStack | None = None
    salesforce: EmulatorServer | None = None
    dynamics: EmulatorServer | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def __enter__(self) -> LocalEnvironment:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.salesforce = EmulatorServer(SalesforceEmulator()).start()
        self.dynamics = EmulatorServer(DynamicsEmulator()).start()
        self.stack = LocalStack(DEFAULT_TEMPLATE, time_scale=self.time_scale, log_path=self.log_path)
        try:
            if self.serve:
                self.stack.serve(port=self.port)
            else:
                self.stack.start()
            self._set_env("AWS_DEFAULT_REGION", self.stack.region)
            self._set_env("AWS_REGION", self.stack.region)
            # Work the CLI does in this process logs where the functions do (`crmsync logs RUN_ID` reads it).
            self._set_env(LOCAL_LOG_VARIABLE, str(self.log_path.resolve()))
            self.stack.client("secretsmanager").create_secret(
                Name=SALESFORCE_SECRET,
                Description="Salesforce emulator connected app (client credentials)",
                SecretString=json.dumps({"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}),
            )
            self.dynamics_control.register_app(
                client_id=DYNAMICS_CLIENT_ID, client_secret=DYNAMICS_CLIENT_SECRET, display_name="crmsync local"
            )
            self.stack.client("secretsmanager").create_secret(
                Name=DYNAMICS_SECRET,
                Description="Dynamics emulator app registration (client credentials)",
                SecretString=json.dumps(
                    {"client_id": DYNAMICS_CLIENT_ID, "client_secret": DYNAMICS_CLIENT_SECRET}
                ),
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.salesforce is not None:
            self.salesforce.stop()
        if self.dynamics is not None:
            self.dynamics.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def deliver_events(self, *, release_failed: bool = False) -> DrainResult:
        """One pass of the events queue's event-source mapping (what Lambda's poller does on AWS): batches
        of the template's `BatchSize` to the push function; messages it answers as failures stay in the
        queue until their visibility timeout passes (or at once, with `release_failed`)."""
        assert self.stack is not None
        return self.stack.drain_queue(EVENTS_QUEUE, release_failed=release_failed)

    def _set_env(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    @property
    def salesforce_control(self) -> SalesforceControl:
        assert self.salesforce is not None
        return SalesforceControl(self.salesforce.url, self.salesforce.ca_bundle)

    @property
    def dynamics_control(self) -> DynamicsControl:
        assert self.dynamics is not None
        return DynamicsControl(self.dynamics.url, self.dynamics.ca_bundle)

    @property
    def dynamics_emulator(self) -> DynamicsEmulator:
        assert self.dynamics is not None
        assert isinstance(self.dynamics.app, DynamicsEmulator)
        return self.dynamics.app

    def seed(self, *, contacts: int = 2400) -> dict[str, int]:
        """Load the demo's data and schema into both emulators (what `crmsync local up --seed` does), so
        that examples/syncs.yaml applies and every sync in it runs: Salesforce Contacts and
        Subscription__c rows, the Marketing_Profile_Id__c external id on Lead and Contact that the
        export upserts by, Dynamics contacts and new_subscription rows."""
        from crmsync_local import demo_data

        now = datetime.now(UTC).replace(microsecond=0)
        self.salesforce_control.set_clock(now, frozen=False)
        salesforce = demo_data.seed_salesforce(self.salesforce_control, contacts_count=contacts, now=now)
        demo_data.define_export_fields(self.salesforce_control)
        dynamics, subscriptions = demo_data.seed_dynamics(
            self.dynamics_control, contacts_count=max(100, contacts // 4), now=now
        )
        return {
            "salesforce_contacts": len(salesforce),
            "dynamics_contacts": len(dynamics),
            "dynamics_subscriptions": len(subscriptions),
        }

    def crm_environ(self) -> dict[str, str]:
        """The variables `examples/syncs.yaml` interpolates to reach this environment's CRMs."""
        assert self.salesforce is not None
        return {
            "CRMSYNC_SALESFORCE_URL": self.salesforce.url,
            "CRMSYNC_DYNAMICS_URL": self.dynamics_emulator.base_url,
            "CRMSYNC_DYNAMICS_TENANT_ID": self.dynamics_emulator.tenant_id,
            "CRMSYNC_DYNAMICS_AUTHORITY": self.dynamics_emulator.authority,
            "CRMSYNC_CA_BUNDLE": self.salesforce.ca_bundle,  # one test CA signs both emulators
        }

    def config_environ(self) -> dict[str, str]:
        return {**os.environ, **self.crm_environ()}

    def state(self) -> dict[str, Any]:
        """The state file of `crmsync local up`."""
        assert self.stack is not None
        assert self.salesforce is not None
        assert self.dynamics is not None
        resources = {logical_id: info["physical_id"] for logical_id, info in self.stack.resources.items()}
        return {
            "aws_endpoint": self.stack.endpoint_url,
            "region": self.stack.region,
            "stack": self.stack.stack_name,
            "salesforce": {"url": self.salesforce.url, "control": self.salesforce.control_url},
            "dynamics": {
                "url": self.dynamics.url,
                "control": self.dynamics.control_url,
                "authority": self.dynamics_emulator.authority,
                "tenant_id": self.dynamics_emulator.tenant_id,
            },
            "ca_bundle": self.salesforce.ca_bundle,
            "secrets": {"salesforce": SALESFORCE_SECRET, "dynamics": DYNAMICS_SECRET},
            "log_file": str(self.log_path.resolve()),
            "environment": {
                **(self.stack.client_environment() if self.stack.endpoint_url else {}),
                **self.crm_environ(),
                LOCAL_LOG_VARIABLE: str(self.log_path.resolve()),  # where `crmsync logs RUN_ID` reads
            },
            "resources": resources,
        }
