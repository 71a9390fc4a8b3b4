"""The Enumerations table: the marketing side's copy of CRM picklists and option sets (SPEC S2).

One item per value: `pk` = the enumeration's name, `sk` = the value as text (a Dataverse option value is
its integer as text), with `label`, `active`, `default`, `order` (the CRM's position), where it came from
(`source`) and the run that last wrote it. An enumeration is read with one Query and written with
`BatchWriteItem`: only values that changed are written, and with `replace` the values the CRM no longer
has are deleted; without it they are kept (values are added and updated, never removed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..connectors.port import PicklistValue
from .dynamo import batch_write, every_item, serialize


@dataclass(frozen=True)
class EnumerationValue:
    value: str
    label: str
    active: bool
    default: bool
    order: int
    source: str = ""

    def same_as(self, other: EnumerationValue) -> bool:
        return (self.label, self.active, self.default, self.order, self.source) == (
            other.label,
            other.active,
            other.default,
            other.order,
            other.source,
        )


@dataclass(frozen=True)
class EnumerationChange:
    name: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept: int = 0
    """Local values the CRM no longer has, kept because the enumeration does not `replace`."""


class EnumerationStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def values(self, name: str) -> list[EnumerationValue]:
        """The enumeration's values in the CRM's order."""
        found: list[EnumerationValue] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": name}),
            "ConsistentRead": True,
        }
        for item in every_item(self.client, "query", kwargs):
            found.append(
                EnumerationValue(
                    value=str(item["sk"]),
                    label=str(item.get("label", "")),
                    active=bool(item.get("active", True)),
                    default=bool(item.get("default", False)),
                    order=int(item.get("order", 0)),
                    source=str(item.get("source", "")),
                )
            )
        return sorted(found, key=lambda v: (v.order, v.value))

    def apply(
        self,
        name: str,
        crm_values: Sequence[PicklistValue],
        *,
        replace: bool,
        source: str,
        run_id: str,
    ) -> EnumerationChange:
        """Bring the enumeration in step with the CRM's values; write only what changed."""
        current = {v.value: v for v in self.values(name)}
        now = datetime.now(UTC).isoformat(timespec="seconds")
        puts: list[dict[str, Any]] = []
        added = updated = unchanged = 0
        seen: set[str] = set()
        for order, crm in enumerate(crm_values):
            if crm.value in seen:
                continue
            seen.add(crm.value)
            wanted = EnumerationValue(crm.value, crm.label, crm.active, crm.default, order, source)
            existing = current.get(crm.value)
            if existing is not None and existing.same_as(wanted):
                unchanged += 1
                continue
            if existing is None:
                added += 1
            else:
                updated += 1
            puts.append(
                {
                    "pk": name,
                    "sk": wanted.value,
                    "label": wanted.label,
                    "active": wanted.active,
                    "default": wanted.default,
                    "order": wanted.order,
                    "source": source,
                    "runId": run_id,
                    "updatedAt": now,
                }
            )
        gone = [value for value in current if value not in seen]
        deletes = [{"pk": name, "sk": value} for value in gone] if replace else []
        batch_write(self.client, self.table, puts=puts, deletes=deletes)
        return EnumerationChange(
            name=name,
            added=added,
            updated=updated,
            unchanged=unchanged,
            removed=len(deletes),
            kept=0 if replace else len(gone),
        )
