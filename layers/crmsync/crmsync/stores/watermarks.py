"""Watermarks: option name -> `yyyy/MM/dd hh:mm:ss` (UTC), moved only forward and only under a lease.

Where a sync reads Dynamics change tracking, the item also holds the delta link the next run follows
(`deltaLink`). It is written by the same conditional update that moves the watermark, so the two never
disagree: a failed run moves neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..domain.windows import format_watermark, parse_watermark
from ..errors import WatermarkConflict
from .dynamo import deserialize, serialize


@dataclass(frozen=True)
class Watermark:
    option: str
    value: datetime
    updated_at: str | None = None
    run_id: str | None = None
    delta_link: str | None = None

    @property
    def text(self) -> str:
        return format_watermark(self.value)


class WatermarkStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def get(self, option: str) -> Watermark | None:
        response = self.client.get_item(
            TableName=self.table, Key=serialize({"option": option}), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        item = deserialize(response["Item"])
        return Watermark(
            option=option,
            value=parse_watermark(item["value"]),
            updated_at=item.get("updatedAt"),
            run_id=item.get("runId"),
            delta_link=item.get("deltaLink"),
        )

    def advance_action(
        self, option: str, value: datetime, run_id: str, *, delta_link: str | None = None
    ) -> dict[str, Any]:
        """A transaction action moving the watermark to `value` only if that is forward (text compares as
        time), with the delta link to follow next - or none, for a sync that reads a window."""
        values: dict[str, Any] = {
            ":v": format_watermark(value),
            ":now": datetime.now(UTC).isoformat(timespec="seconds"),
            ":run": run_id,
        }
        expression = "SET #v = :v, updatedAt = :now, runId = :run"
        if delta_link is None:
            expression += " REMOVE deltaLink"
        else:
            expression += ", deltaLink = :delta"
            values[":delta"] = delta_link
        return {
            "Update": {
                "TableName": self.table,
                "Key": serialize({"option": option}),
                "UpdateExpression": expression,
                "ConditionExpression": "attribute_not_exists(#v) OR #v <= :v",
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": serialize(values),
            }
        }

    def set(self, option: str, value: datetime, *, actor: str = "operator") -> Watermark:
        """Set by hand (`crmsync watermark set`): may move backwards, which re-imports from there. It drops
        the delta link: a change-tracking sync then reads every record and compares ids."""
        text = format_watermark(value)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize({"option": option, "value": text, "updatedAt": now, "runId": actor}),
            )
        except ClientError as exc:
            raise WatermarkConflict(f"could not set {option}: {exc}") from None
        return Watermark(option=option, value=value, updated_at=now, run_id=actor)

    def delete(self, option: str) -> None:
        """Reset: the next run is a first run again (SPEC I9)."""
        self.client.delete_item(TableName=self.table, Key=serialize({"option": option}))
