"""Builds stores and connectors from typed settings; the one client factory of the project.

Handlers call `container()` at invocation time (never at import time), which reads the environment
once per container and caches boto3 clients and CRM connectors (with their tokens) across
invocations. Tests and the local stack inject clients or call `reset_caches()`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, Field

from .config import DynamicsConnection, SalesforceConnection
from .connectors.http import CrmHttpSession
from .connectors.port import CrmConnector, CrmWriter
from .connectors.retry import RetryPolicy
from .errors import ConfigurationError
from .stores.batches import BatchLedger
from .stores.definitions import DefinitionStore
from .stores.dynamo_wire import make_lean
from .stores.enumerations import EnumerationStore
from .stores.profiles import ProfileStore, ResourceStore
from .stores.rejects import DEFAULT_RETENTION_DAYS, RejectRouter, RejectStore
from .stores.runs import RunLedger
from .stores.secrets import SecretReader
from .stores.two_way import ConsentLedger, WriteLedger
from .stores.watermarks import WatermarkStore


class Settings(BaseModel):
    """What a function needs to know about its deployment, from its environment (template.yaml)."""

    model_config = ConfigDict(frozen=True)

    definitions_table: str = Field(alias="DEFINITIONS_TABLE")
    watermarks_table: str = Field(alias="WATERMARKS_TABLE")
    runs_table: str = Field(alias="RUNS_TABLE")
    profiles_table: str = Field(alias="PROFILES_TABLE")
    resources_table: str = Field(alias="RESOURCES_TABLE")
    rejects_queue_url: str = Field(alias="REJECTS_QUEUE_URL")
    rejects_table: str = Field(alias="REJECTS_TABLE")
    data_bucket: str = Field(alias="DATA_BUCKET")
    sync_ledger_table: str | None = Field(default=None, alias="SYNC_LEDGER_TABLE")
    consent_table: str | None = Field(default=None, alias="CONSENT_TABLE")
    enumerations_table: str | None = Field(default=None, alias="ENUMERATIONS_TABLE")
    events_queue_url: str | None = Field(default=None, alias="EVENTS_QUEUE_URL")
    events_dlq_url: str | None = Field(default=None, alias="EVENTS_DLQ_URL")
    stack_name: str = Field(default="crmsync", alias="STACK_NAME")
    region: str | None = Field(default=None, alias="AWS_REGION")
    retry_attempts: int = Field(default=4, ge=1, le=10, alias="CRMSYNC_RETRY_ATTEMPTS")
    retry_base_delay: float = Field(default=0.5, ge=0, le=30, alias="CRMSYNC_RETRY_BASE_DELAY_SECONDS")
    lease_seconds: int = Field(default=900, ge=60, le=86_400, alias="CRMSYNC_LEASE_SECONDS")
    reject_retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS, ge=0, le=3650, alias="CRMSYNC_REJECT_RETENTION_DAYS"
    )

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        missing = [
            name
            for name in (
                "DEFINITIONS_TABLE",
                "WATERMARKS_TABLE",
                "RUNS_TABLE",
                "PROFILES_TABLE",
                "RESOURCES_TABLE",
                "REJECTS_QUEUE_URL",
                "REJECTS_TABLE",
                "DATA_BUCKET",
            )
            if not env.get(name)
        ]
        if missing:
            raise ConfigurationError(f"the function's environment lacks {', '.join(missing)} (see template.yaml)")
        return cls.model_validate({k: v for k, v in env.items() if k in _ALIASES})

    @classmethod
    def for_stack(cls, stack_name: str, *, account_id: str, region: str, queue_url: str) -> Settings:
        """The names `template.yaml` gives a stack's resources; the CLI derives them from --stack."""
        return cls.model_validate(
            {
                "DEFINITIONS_TABLE": f"{stack_name}-definitions",
                "WATERMARKS_TABLE": f"{stack_name}-watermarks",
                "RUNS_TABLE": f"{stack_name}-runs",
                "PROFILES_TABLE": f"{stack_name}-profiles",
                "RESOURCES_TABLE": f"{stack_name}-resources",
                "REJECTS_QUEUE_URL": queue_url,
                "REJECTS_TABLE": f"{stack_name}-rejects",
                "DATA_BUCKET": f"{stack_name}-data-{account_id}-{region}",
                "SYNC_LEDGER_TABLE": f"{stack_name}-sync-ledger",
                "CONSENT_TABLE": f"{stack_name}-consent",
                "ENUMERATIONS_TABLE": f"{stack_name}-enumerations",
                "STACK_NAME": stack_name,
                "AWS_REGION": region,
            }
        )


_ALIASES = {f.alias for f in Settings.model_fields.values() if f.alias}


UNVALIDATED_SERVICES = frozenset({"dynamodb"})
LEAN_SERVICES = frozenset({"dynamodb"})  # item requests and answers as plain JSON (stores/dynamo_wire.py)


@dataclass
class AwsClients:
    """boto3 clients, created once per container, each counting its calls (for run metrics and benches)."""

    region: str | None = None
    calls: Counter[str] = field(default_factory=Counter)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                client = boto3.client(
                    service,
                    region_name=self.region,
                    config=Config(
                        retries={"mode": "adaptive", "max_attempts": 8},
                        connect_timeout=5,
                        read_timeout=30,
                        # DynamoDB requests are built by the stores from typed values, never from input;
                        # botocore's walk of every request against the model cost 11 of 66 s of an import
                        # (DynamoDB itself still refuses a bad request with ValidationException).
                        parameter_validation=service not in UNVALIDATED_SERVICES,
                    ),
                )
                if service in LEAN_SERVICES:
                    make_lean(client)
                client.meta.events.register(
                    f"before-call.{client.meta.service_model.endpoint_prefix}.*", self._count(service)
                )
                self._clients[service] = client
            return self._clients[service]

    def _count(self, service: str) -> Any:
        def counter(**_: Any) -> None:
            self.calls[service] += 1

        return counter


def _required(name: str | None, variable: str) -> str:
    """A table only some functions have (the two-way sync's ledgers): named, or a configuration error."""
    if not name:
        raise ConfigurationError(f"the function's environment lacks {variable} (see template.yaml)")
    return name


class Container:
    """Stores and connectors of one deployment."""

    def __init__(self, settings: Settings, clients: AwsClients | None = None) -> None:
        self.settings = settings
        self.aws = clients or AwsClients(region=settings.region)
        self._connectors: dict[str, tuple[str, CrmConnector]] = {}
        self._secrets: SecretReader | None = None
        self._lock = threading.RLock()

    @property
    def definitions(self) -> DefinitionStore:
        return DefinitionStore(self.aws.client("dynamodb"), self.settings.definitions_table)

    @property
    def watermarks(self) -> WatermarkStore:
        return WatermarkStore(self.aws.client("dynamodb"), self.settings.watermarks_table)

    @property
    def runs(self) -> RunLedger:
        return RunLedger(self.aws.client("dynamodb"), self.settings.runs_table)

    @property
    def batches(self) -> BatchLedger:
        return BatchLedger(
            self.aws.client("dynamodb"), self.settings.runs_table, self.aws.client("s3"), self.settings.data_bucket
        )

    @property
    def profiles(self) -> ProfileStore:
        return ProfileStore(self.aws.client("dynamodb"), self.settings.profiles_table)

    @property
    def resources(self) -> ResourceStore:
        return ResourceStore(self.aws.client("dynamodb"), self.settings.resources_table)

    @property
    def write_ledger(self) -> WriteLedger:
        return WriteLedger(
            self.aws.client("dynamodb"), _required(self.settings.sync_ledger_table, "SYNC_LEDGER_TABLE")
        )

    @property
    def consent(self) -> ConsentLedger:
        return ConsentLedger(self.aws.client("dynamodb"), _required(self.settings.consent_table, "CONSENT_TABLE"))

    @property
    def enumerations(self) -> EnumerationStore:
        if not self.settings.enumerations_table:
            raise ConfigurationError("the function's environment lacks ENUMERATIONS_TABLE (see template.yaml)")
        return EnumerationStore(self.aws.client("dynamodb"), self.settings.enumerations_table)

    @property
    def reject_store(self) -> RejectStore:
        return RejectStore(
            self.aws.client("dynamodb"),
            self.settings.rejects_table,
            self.aws.client("s3"),
            self.settings.data_bucket,
            retention_days=self.settings.reject_retention_days,
        )

    @property
    def rejects(self) -> RejectRouter:
        """Where a step sends its rejects: logged, stored, and the rejects queue notified."""
        return RejectRouter(self.reject_store, self.aws.client("sqs"), self.settings.rejects_queue_url)

    @property
    def secrets(self) -> SecretReader:
        """Cached: the reader holds the secrets cache (re-read every five minutes)."""
        with self._lock:
            if self._secrets is None:
                self._secrets = SecretReader(self.aws.client("secretsmanager"))
            return self._secrets

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.settings.retry_attempts, base_delay=self.settings.retry_base_delay)

    def connector(self, connection: SalesforceConnection | DynamicsConnection) -> CrmConnector:
        """One connector per connection and secret version; its token cache lives as long as it does."""
        secret = self.secrets.read(connection.secret)
        fingerprint = hashlib.sha256(
            (connection.model_dump_json() + json.dumps(secret, sort_keys=True)).encode()
        ).hexdigest()
        with self._lock:
            cached = self._connectors.get(connection.name)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            connector = build_connector(connection, secret, self.retry_policy)
            self._connectors[connection.name] = (fingerprint, connector)
            return connector

    def writer(self, connection: SalesforceConnection | DynamicsConnection) -> CrmWriter:
        """The writer port over the connection's (cached) connector."""
        return build_writer(self.connector(connection))


def build_connector(
    connection: SalesforceConnection | DynamicsConnection, secret: dict[str, Any], retry: RetryPolicy
) -> CrmConnector:
    session = CrmHttpSession(timeout=connection.timeout_seconds, ca_bundle=connection.ca_bundle)
    if isinstance(connection, SalesforceConnection):
        from .connectors.salesforce.auth import SalesforceTokenProvider
        from .connectors.salesforce.connector import SalesforceConnector

        return SalesforceConnector(
            connection, SalesforceTokenProvider(connection, secret, session), session, retry
        )
    from .connectors.dynamics.auth import DynamicsTokenProvider
    from .connectors.dynamics.connector import DynamicsConnector

    return DynamicsConnector(connection, DynamicsTokenProvider(connection, secret, session), session, retry)


def build_writer(connector: CrmConnector) -> CrmWriter:
    """The writer over a connector, sharing its session, tokens and retry policy."""
    from .connectors.dynamics.connector import DynamicsConnector
    from .connectors.dynamics.writer import DynamicsWriter
    from .connectors.salesforce.connector import SalesforceConnector
    from .connectors.salesforce.writer import SalesforceWriter

    if isinstance(connector, SalesforceConnector):
        return SalesforceWriter(connector)
    if isinstance(connector, DynamicsConnector):
        return DynamicsWriter(connector)
    raise ConfigurationError(f"exports to {connector.kind} are not supported by this build")


_container: tuple[Settings, Container] | None = None
_container_lock = threading.Lock()


def container(settings: Settings | None = None) -> Container:
    """The container for the current environment, reused while the environment's settings stay the same."""
    global _container
    wanted = settings or Settings.from_environ()
    with _container_lock:
        if _container is None or _container[0] != wanted:
            _container = (wanted, Container(wanted))
        return _container[1]


def reset_caches() -> None:
    """Forget cached clients, connectors and tokens (a new Lambda container, or a new local stack)."""
    global _container
    with _container_lock:
        _container = None
