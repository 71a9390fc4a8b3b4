"""The run ledger and the per-sync lease that keeps two runs of one sync from overlapping (SPEC I12).

Items of the runs table:
- `LOCK#<sync>` / `LOCK`: the lease — holder run id and expiry; taken with a conditional put, renewed
  by every step of the holder, deleted (conditionally) when the run ends.

A step is not over in an instant: a page or batch step may run up to its Lambda timeout (900 s), which
the default lease equals. Renewed only when the step started, the lease could expire while the step was
still writing, and a scheduled run take the same sync over. So taking or renewing the lease also starts
a *heartbeat*: a daemon thread that renews it every quarter of its length while the step runs, until
`stop_heartbeats()` (the step handler calls it when the invocation ends, however it ends). At the end of
a step the lease has three quarters of its length left, which covers the Retry back-off and the
scheduling between two steps. A heartbeat that finds the lease taken stops: the step's own writes are
conditional on its claim, and its next step fails with `LeaseLost`.
- `RUN#<sync>` / `<startedAt>#<runId>`: one per run — status, window, counts, error, and `progress`:
  what its page and batch steps have added so far (`steps` done, `total` when known, and the counts), which
  `crmsync run --wait` shows as the run goes; the summary in `result` is the exact account.
- `SCHEMA#<sync>` / `SCHEMA`: the object's description as the sync's last run saw it (zlib-compressed
  JSON), when the CRM said so (`describedAt`, for `If-Modified-Since`) and which definition of the sync
  accepted it: what the next run's drift check compares with.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..errors import LeaseLost, RunAlreadyInProgress
from .dynamo import TransactionConflict, deserialize, every_item, serialize, serialize_value, transact_write

RUN_RETENTION_SECONDS = 180 * 86_400
HEARTBEATS_PER_LEASE = 4

logger = logging.getLogger(__name__)
_heartbeats: dict[tuple[str, str], threading.Event] = {}
_heartbeats_lock = threading.Lock()


def _stop_heartbeat(sync_id: str, run_id: str) -> None:
    with _heartbeats_lock:
        stop = _heartbeats.pop((sync_id, run_id), None)
    if stop is not None:
        stop.set()


def stop_heartbeats() -> None:
    """Stop renewing every lease this process renews (the invocation that needed them is over)."""
    with _heartbeats_lock:
        for stop in _heartbeats.values():
            stop.set()
        _heartbeats.clear()


def _condition_failed(error: ClientError) -> bool:
    return bool(error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


@dataclass(frozen=True)
class RunKey:
    sync_id: str
    run_id: str
    started_at: str

    @property
    def sk(self) -> str:
        return f"{self.started_at}#{self.run_id}"

    def key(self) -> dict[str, Any]:
        return serialize({"pk": f"RUN#{self.sync_id}", "sk": self.sk})


class RunLedger:
    def __init__(self, client: Any, table: str, clock: Any = time.time) -> None:
        self.client = client
        self.table = table
        self.clock = clock

    # -- lease -------------------------------------------------------------------------------------
    @staticmethod
    def _lock_key(sync_id: str) -> dict[str, Any]:
        return serialize({"pk": f"LOCK#{sync_id}", "sk": "LOCK"})

    def acquire(
        self, sync_id: str, run_id: str, lease_seconds: int, *, apart_from: Mapping[str, str] | None = None
    ) -> None:
        """Take the sync's lease; `RunAlreadyInProgress` when another run holds it.

        `apart_from` names other syncs (id -> what they are to this one, for the message) whose runs
        must not overlap this sync's either: an import sync and the initial transfer loading it. Their
        leases are checked in the same transaction that takes this one, so of two such runs starting at
        once exactly one starts - each side checks the other's lease, never a copy read earlier. A run
        holding both (the transfer's import route starts the import under the transfer's run id) passes.
        """
        now = int(self.clock())
        free = "attribute_not_exists(pk) OR expiresAt < :now OR holder = :run"
        values = serialize({":now": now, ":run": run_id})
        item = serialize(
            {
                "pk": f"LOCK#{sync_id}",
                "sk": "LOCK",
                "holder": run_id,
                "expiresAt": now + lease_seconds,
                "acquiredAt": datetime.fromtimestamp(now, UTC).isoformat(),
            }
        )
        others = list(apart_from or {})
        try:
            if not others:
                self.client.put_item(
                    TableName=self.table, Item=item, ConditionExpression=free, ExpressionAttributeValues=values
                )
            else:
                checks = [
                    {
                        "ConditionCheck": {
                            "TableName": self.table,
                            "Key": self._lock_key(other),
                            "ConditionExpression": free,
                            "ExpressionAttributeValues": values,
                        }
                    }
                    for other in others
                ]
                put = {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": free}}
                put["Put"]["ExpressionAttributeValues"] = values
                transact_write(self.client, [put, *checks])
        except TransactionConflict as conflict:
            if 0 in conflict.failed:
                raise self._busy(sync_id) from None
            other = others[conflict.failed[0] - 1]
            role = (apart_from or {})[other]
            raise self._busy(
                other, f"sync {sync_id!r} does not start while {role} {other!r} is running", "; they never overlap"
            ) from None
        except ClientError as error:
            if not _condition_failed(error):
                raise
            raise self._busy(sync_id) from None
        self._keep(sync_id, run_id, lease_seconds)

    def _busy(
        self, holder_sync: str, what: str | None = None, why: str = "; runs of one sync never overlap"
    ) -> RunAlreadyInProgress:
        """The refusal of a start, naming the run that holds `holder_sync`'s lease."""
        holder = self.lease_holder(holder_sync)
        return RunAlreadyInProgress(
            (what or f"sync {holder_sync!r} is already running")
            + (
                f" (run {holder['holder']}, lease until "
                f"{datetime.fromtimestamp(holder['expiresAt'], UTC).isoformat()})"
                if holder
                else ""
            )
            + why
        )

    def _keep(self, sync_id: str, run_id: str, lease_seconds: int) -> None:
        """Renew the lease every `lease_seconds / HEARTBEATS_PER_LEASE` until `stop_heartbeats()`."""
        stop = threading.Event()
        with _heartbeats_lock:
            previous = _heartbeats.pop((sync_id, run_id), None)
            if previous is not None:
                previous.set()
            _heartbeats[(sync_id, run_id)] = stop

        def beat() -> None:
            while not stop.wait(lease_seconds / HEARTBEATS_PER_LEASE):
                try:
                    self._extend(sync_id, run_id, lease_seconds)
                except LeaseLost:
                    logger.warning(
                        "lease lost while a step was running", extra={"sync_id": sync_id, "run_id": run_id}
                    )
                    return
                except Exception:
                    logger.warning(
                        "lease heartbeat failed; the next renewal tries again",
                        extra={"sync_id": sync_id, "run_id": run_id},
                        exc_info=True,
                    )

        threading.Thread(target=beat, name=f"lease-{sync_id}", daemon=True).start()

    def lease_holder(self, sync_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=self._lock_key(sync_id), ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def renew(self, sync_id: str, run_id: str, lease_seconds: int) -> None:
        """Extend the lease now (`LeaseLost` when another run holds it) and keep it while the step runs."""
        self._extend(sync_id, run_id, lease_seconds)
        self._keep(sync_id, run_id, lease_seconds)

    def _extend(self, sync_id: str, run_id: str, lease_seconds: int) -> None:
        now = int(self.clock())
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._lock_key(sync_id),
                UpdateExpression="SET expiresAt = :until",
                ConditionExpression="holder = :run",
                ExpressionAttributeValues=serialize({":run": run_id, ":until": now + lease_seconds}),
            )
        except ClientError as error:
            if not _condition_failed(error):
                raise
            raise LeaseLost(
                f"run {run_id} of sync {sync_id!r} lost its lease; it stops without applying more"
            ) from None

    def release_action(self, sync_id: str, run_id: str) -> dict[str, Any]:
        """The lease's release, for a transaction that ends the run; its heartbeat stops here."""
        _stop_heartbeat(sync_id, run_id)
        return {
            "Delete": {
                "TableName": self.table,
                "Key": self._lock_key(sync_id),
                "ConditionExpression": "holder = :run",
                "ExpressionAttributeValues": serialize({":run": run_id}),
            }
        }

    def release(self, sync_id: str, run_id: str) -> bool:
        """Release the lease if this run still holds it; False when it did not."""
        _stop_heartbeat(sync_id, run_id)
        try:
            self.client.delete_item(
                TableName=self.table,
                Key=self._lock_key(sync_id),
                ConditionExpression="holder = :run",
                ExpressionAttributeValues=serialize({":run": run_id}),
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    # -- ledger ------------------------------------------------------------------------------------
    def record_start(self, key: RunKey, *, operation: str, trigger: str, details: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=serialize(
                {
                    "pk": f"RUN#{key.sync_id}",
                    "sk": key.sk,
                    "syncId": key.sync_id,
                    "runId": key.run_id,
                    "operation": operation,
                    "trigger": trigger,
                    "status": "RUNNING",
                    "startedAt": key.started_at,
                    "expiresAt": int(self.clock()) + RUN_RETENTION_SECONDS,
                    "progress": {},
                    **details,
                }
            ),
        )

    def add_progress(self, key: RunKey, counts: dict[str, int], *, total: int | None = None) -> bool:
        """Add one step's counts to the run's `progress` (and count the step). Parallel batches add at
        once, hence ADD. False when the run has no `progress` map (recorded before it existed, or never
        recorded): nothing is created."""
        names = {"#p": "progress", "#steps": "steps"}
        values: dict[str, Any] = {":one": 1}
        parts = ["#p.#steps :one"]
        for index, (name, value) in enumerate(sorted(counts.items())):
            names[f"#c{index}"] = name
            values[f":c{index}"] = value
            parts.append(f"#p.#c{index} :c{index}")
        expression = "ADD " + ", ".join(parts)
        if total is not None:
            names["#total"] = "total"
            values[":total"] = total
            expression += " SET #p.#total = :total"
        try:
            self.client.update_item(
                TableName=self.table,
                Key=key.key(),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(#p)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def finish_action(self, key: RunKey, status: str, summary: dict[str, Any]) -> dict[str, Any]:
        names = {"#s": "status", "#e": "endedAt", "#r": "result"}
        return {
            "Update": {
                "TableName": self.table,
                "Key": key.key(),
                "UpdateExpression": "SET #s = :s, #e = :e, #r = :r",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":s": serialize_value(status),
                    ":e": serialize_value(datetime.now(UTC).isoformat(timespec="seconds")),
                    ":r": serialize_value(summary),
                },
            }
        }

    def record_end(self, key: RunKey, status: str, summary: dict[str, Any]) -> None:
        action = self.finish_action(key, status, summary)["Update"]
        self.client.update_item(**action)

    def get(self, key: RunKey) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table, Key=key.key(), ConsistentRead=True)
        return deserialize(response["Item"]) if "Item" in response else None

    def recent(self, sync_id: str, limit: int = 20) -> list[dict[str, Any]]:
        response = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": f"RUN#{sync_id}"}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [deserialize(i) for i in response.get("Items", [])]

    # -- schema seen -------------------------------------------------------------------------------
    @staticmethod
    def _schema_key(sync_id: str) -> dict[str, Any]:
        return serialize({"pk": f"SCHEMA#{sync_id}", "sk": "SCHEMA"})

    def schema_seen(self, sync_id: str) -> dict[str, Any] | None:
        """`{"description": <snapshot JSON>, "describedAt": str | None, "definition": str}` or None."""
        response = self.client.get_item(TableName=self.table, Key=self._schema_key(sync_id), ConsistentRead=True)
        if "Item" not in response:
            return None
        item = deserialize(response["Item"])
        body = item["body"]
        raw = body.value if hasattr(body, "value") else body
        return {
            "description": json.loads(zlib.decompress(bytes(raw))),
            "describedAt": item.get("describedAt"),
            "definition": item.get("definition", ""),
        }

    def remember_schema(
        self, sync_id: str, description: dict[str, Any], described_at: str | None, definition: str
    ) -> None:
        item: dict[str, Any] = {
            "pk": f"SCHEMA#{sync_id}",
            "sk": "SCHEMA",
            "body": zlib.compress(json.dumps(description, separators=(",", ":")).encode(), 6),
            "definition": definition,
            "savedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if described_at:
            item["describedAt"] = described_at
        self.client.put_item(TableName=self.table, Item=serialize(item))

    def matching(self, sync_id: str, ending: str) -> list[dict[str, Any]]:
        """The sync's runs whose id ends with `ending` (a full id, or the short id `crmsync runs` prints)."""
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "contains(runId, :ending)",
            "ExpressionAttributeValues": serialize({":pk": f"RUN#{sync_id}", ":ending": ending}),
        }
        found += [r for r in every_item(self.client, "query", kwargs) if str(r["runId"]).endswith(ending)]
        return found
