"""Validated sync definitions and connections, stored by `crmsync config apply` (DESIGN §6)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..config import Connection, CrmsyncConfig, DynamicsConnection, SalesforceConnection, SyncDefinition
from ..errors import ConfigurationError, SyncNotFound
from .dynamo import batch_write, deserialize, serialize

_connection_adapter: TypeAdapter[SalesforceConnection | DynamicsConnection] = TypeAdapter(Connection)
_sync_adapter: TypeAdapter[SyncDefinition] = TypeAdapter(SyncDefinition)


@dataclass(frozen=True)
class StoredSync:
    """A sync with the connection it reads from and the instance name it was applied under."""

    sync: SyncDefinition
    connection: SalesforceConnection | DynamicsConnection
    instance: str


class DefinitionStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def apply(self, config: CrmsyncConfig) -> None:
        """Store every connection and sync of a validated configuration (replacing same-named ones)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        items: list[dict[str, Any]] = []
        for connection in config.connections:
            items.append(
                {
                    "pk": f"connection#{connection.name}",
                    "kind": "connection",
                    "body": connection.model_dump_json(by_alias=True),
                    "appliedAt": now,
                }
            )
        for sync in config.syncs:
            items.append(
                {
                    "pk": f"sync#{sync.id}",
                    "kind": "sync",
                    "instance": config.instance,
                    "body": sync.model_dump_json(by_alias=True, exclude_none=True),
                    "appliedAt": now,
                }
            )
        batch_write(self.client, self.table, puts=items)

    def _get(self, pk: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=serialize({"pk": pk}), ConsistentRead=True)
        item = response.get("Item")
        return deserialize(item) if item else None

    def connection(self, name: str) -> SalesforceConnection | DynamicsConnection:
        item = self._get(f"connection#{name}")
        if item is None:
            raise ConfigurationError(f"no connection named {name!r} was applied")
        try:
            return _connection_adapter.validate_json(item["body"])
        except ValidationError as exc:
            raise ConfigurationError(f"stored connection {name!r} no longer validates: {exc}") from None

    def sync(self, sync_id: str) -> StoredSync:
        item = self._get(f"sync#{sync_id}")
        if item is None:
            raise SyncNotFound(f"no sync named {sync_id!r} was applied (crmsync config apply FILE)")
        try:
            sync = _sync_adapter.validate_json(item["body"])
        except ValidationError as exc:
            raise ConfigurationError(f"stored sync {sync_id!r} no longer validates: {exc}") from None
        return StoredSync(sync=sync, connection=self.connection(sync.connection), instance=item["instance"])

    def list_syncs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#k = :sync",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": serialize({":sync": "sync"}),
        }
        while True:
            response = self.client.scan(**kwargs)
            for raw in response.get("Items", []):
                item = deserialize(raw)
                body = json.loads(item["body"])
                items.append(
                    {
                        "id": body["id"],
                        "instance": item["instance"],
                        "appliedAt": item.get("appliedAt"),
                        **{k: body.get(k) for k in ("operation", "connection", "object", "schedule", "enabled")},
                    }
                )
            if "LastEvaluatedKey" not in response:
                return sorted(items, key=lambda i: i["id"])
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
