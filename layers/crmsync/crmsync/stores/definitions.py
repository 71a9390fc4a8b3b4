"""Validated sync definitions and connections, stored by `crmsync config apply` (DESIGN §6).

Applying is declarative: the stored definitions become the file's. `plan` compares the two - what the
file adds, changes, leaves as it is, and what it no longer has - and `apply` writes the file's items and
deletes the others, except those the caller keeps (a sync with a run in flight). Only definitions go:
profiles, resources, watermarks, run records and rejects stay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..config import Connection, CrmsyncConfig, DynamicsConnection, SalesforceConnection, SyncDefinition
from ..errors import ConfigurationError, SyncNotFound
from .dynamo import batch_write, deserialize, every_item, serialize

_connection_adapter: TypeAdapter[SalesforceConnection | DynamicsConnection] = TypeAdapter(Connection)
_sync_adapter: TypeAdapter[SyncDefinition] = TypeAdapter(SyncDefinition)


@dataclass(frozen=True)
class StoredSync:
    """A sync with the connection it reads from and the instance name it was applied under."""

    sync: SyncDefinition
    connection: SalesforceConnection | DynamicsConnection
    instance: str


@dataclass
class DefinitionPlan:
    """What applying a file does to the stored definitions, by sync id and connection name."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    connections_added: list[str] = field(default_factory=list)
    connections_changed: list[str] = field(default_factory=list)
    connections_removed: list[str] = field(default_factory=list)


def _sync_item(sync: SyncDefinition, instance: str) -> tuple[str, str]:
    return instance, sync.model_dump_json(by_alias=True, exclude_none=True)


class DefinitionStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def _stored(self) -> dict[str, dict[str, Any]]:
        """Every stored item by its key (`connection#<name>`, `sync#<id>`)."""
        items: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        for item in every_item(self.client, "scan", kwargs):
            items[item["pk"]] = item
        return items

    def plan(self, config: CrmsyncConfig) -> DefinitionPlan:
        """Compare the file with what is stored; nothing is written."""
        stored = self._stored()
        plan = DefinitionPlan()
        for sync in config.syncs:
            item = stored.get(f"sync#{sync.id}")
            if item is None:
                plan.added.append(sync.id)
            elif (item.get("instance"), item.get("body")) != _sync_item(sync, config.instance):
                plan.changed.append(sync.id)
            else:
                plan.unchanged.append(sync.id)
        for connection in config.connections:
            item = stored.get(f"connection#{connection.name}")
            if item is None:
                plan.connections_added.append(connection.name)
            elif item.get("body") != connection.model_dump_json(by_alias=True):
                plan.connections_changed.append(connection.name)
        in_file = {f"sync#{s.id}" for s in config.syncs} | {f"connection#{c.name}" for c in config.connections}
        for pk, item in sorted(stored.items()):
            if pk in in_file:
                continue
            name = pk.split("#", 1)[1]
            if item.get("kind") == "sync":
                plan.removed.append(name)
            elif item.get("kind") == "connection":
                plan.connections_removed.append(name)
        return plan

    def apply(self, config: CrmsyncConfig, *, keep: frozenset[str] = frozenset()) -> DefinitionPlan:
        """Make the stored definitions the file's: store its connections and syncs, delete the syncs and
        connections it no longer has, but for the syncs in `keep` and the connections they use."""
        plan = self.plan(config)
        kept_connections = {self.connection_name_of(sync_id) for sync_id in keep}
        deletes = [{"pk": f"sync#{sync_id}"} for sync_id in plan.removed if sync_id not in keep]
        deletes += [{"pk": f"connection#{n}"} for n in plan.connections_removed if n not in kept_connections]
        self._put(config)
        if deletes:
            batch_write(self.client, self.table, deletes=deletes)
        return plan

    def connection_name_of(self, sync_id: str) -> str | None:
        item = self._get(f"sync#{sync_id}")
        return str(json.loads(item["body"])["connection"]) if item else None

    def _put(self, config: CrmsyncConfig) -> None:
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
            instance, body = _sync_item(sync, config.instance)
            items.append(
                {"pk": f"sync#{sync.id}", "kind": "sync", "instance": instance, "body": body, "appliedAt": now}
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

    def transfers_of(self, import_sync_id: str) -> list[str]:
        """The initial_transfer syncs that load the import sync `import_sync_id`, sorted."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#k = :sync AND contains(body, :operation)",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": serialize({":sync": "sync", ":operation": '"initial_transfer"'}),
            "ConsistentRead": True,
        }
        naming: list[str] = []
        for item in every_item(self.client, "scan", kwargs):
            body = json.loads(item["body"])
            if body.get("operation") == "initial_transfer" and body.get("import_sync") == import_sync_id:
                naming.append(str(body["id"]))
        return sorted(naming)

    def list_syncs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "#k = :sync",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": serialize({":sync": "sync"}),
        }
        for item in every_item(self.client, "scan", kwargs):
            body = json.loads(item["body"])
            items.append(
                {
                    "id": body["id"],
                    "instance": item["instance"],
                    "appliedAt": item.get("appliedAt"),
                    **{k: body.get(k) for k in ("operation", "connection", "object", "schedule", "enabled")},
                }
            )
        return sorted(items, key=lambda i: i["id"])
