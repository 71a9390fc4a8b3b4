"""The embedded default: emulated AWS (the local stack) plus an emulated Salesforce, wired together.

`crmsync demo` runs it in-process; `crmsync local up` serves it over HTTP(S) for other processes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crmsync_local.emulators.common import EmulatorServer
from crmsync_local.emulators.salesforce import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SalesforceControl,
    SalesforceEmulator,
)
from crmsync_local.stack import DEFAULT_TEMPLATE, LocalStack

SALESFORCE_SECRET = "crmsync/sf-prod"
STATE_DIR = Path(".crmsync")


@dataclass
class LocalEnvironment:
    """Start with `with LocalEnvironment(...) as env:`; everything stops on exit."""

    serve: bool = False
    port: int = 0
    time_scale: float = 1.0
    log_path: Path = field(default_factory=lambda: STATE_DIR / "local-lambda.log")
    stack: LocalStack | None = None
    salesforce: EmulatorServer | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    def __enter__(self) -> LocalEnvironment:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.salesforce = EmulatorServer(SalesforceEmulator()).start()
        self.stack = LocalStack(DEFAULT_TEMPLATE, time_scale=self.time_scale, log_path=self.log_path)
        try:
            if self.serve:
                self.stack.serve(port=self.port)
            else:
                self.stack.start()
            self._set_env("AWS_DEFAULT_REGION", self.stack.region)
            self._set_env("AWS_REGION", self.stack.region)
            self.stack.client("secretsmanager").create_secret(
                Name=SALESFORCE_SECRET,
                Description="Salesforce emulator connected app (client credentials)",
                SecretString=json.dumps({"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}),
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
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def _set_env(self, name: str, value: str) -> None:
        self._saved_env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    @property
    def salesforce_control(self) -> SalesforceControl:
        assert self.salesforce is not None
        return SalesforceControl(self.salesforce.url, self.salesforce.ca_bundle)

    def config_environ(self) -> dict[str, str]:
        """What `examples/syncs.yaml` interpolates to reach this environment's CRM."""
        assert self.salesforce is not None
        return {
            **os.environ,
            "CRMSYNC_SALESFORCE_URL": self.salesforce.url,
            "CRMSYNC_CA_BUNDLE": self.salesforce.ca_bundle,
        }

    def state(self) -> dict[str, Any]:
        """The state file of `crmsync local up`."""
        assert self.stack is not None
        assert self.salesforce is not None
        resources = {logical_id: info["physical_id"] for logical_id, info in self.stack.resources.items()}
        return {
            "aws_endpoint": self.stack.endpoint_url,
            "region": self.stack.region,
            "stack": self.stack.stack_name,
            "salesforce": {"url": self.salesforce.url, "control": self.salesforce.control_url},
            "ca_bundle": self.salesforce.ca_bundle,
            "secrets": {"salesforce": SALESFORCE_SECRET},
            "environment": {
                **(self.stack.client_environment() if self.stack.endpoint_url else {}),
                "CRMSYNC_SALESFORCE_URL": self.salesforce.url,
                "CRMSYNC_CA_BUNDLE": self.salesforce.ca_bundle,
            },
            "resources": resources,
        }
