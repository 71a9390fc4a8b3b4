"""moto performance fixes the stack installs: same behaviour, without moto's quadratic costs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_local.stack import LocalStack

CANARY_TEMPLATE = Path(__file__).parent / "canary" / "template.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_path = tmp_path_factory.mktemp("speedups") / "local-stack.log"
    with LocalStack(CANARY_TEMPLATE, time_scale=0, log_path=log_path) as started:
        yield started


def _put(table: str, pk: str) -> dict[str, object]:
    return {"Put": {"TableName": table, "Item": {"pk": {"S": pk}, "sk": {"S": "tx"}}}}


def test_transaction_cost_does_not_grow_with_items_times_table_size(stack: LocalStack) -> None:
    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    for start in range(0, 1000, 25):
        rows = [
            {"PutRequest": {"Item": {"pk": {"S": f"bulk-{i}"}, "sk": {"S": "tx"}}}}
            for i in range(start, start + 25)
        ]
        dynamodb.batch_write_item(RequestItems={table: rows})
    started = time.monotonic()
    dynamodb.transact_write_items(TransactItems=[_put(table, f"fast-{i}") for i in range(100)])
    assert time.monotonic() - started < 1.0  # moto alone copies the table 100 times: ~3.5 s here
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "fast-99"}, "sk": {"S": "tx"}}).get("Item")


def test_failed_transaction_still_rolls_every_item_back(stack: LocalStack) -> None:
    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    check = {
        "ConditionCheck": {
            "TableName": table,
            "Key": {"pk": {"S": "absent"}, "sk": {"S": "tx"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(TransactItems=[_put(table, "rolled-1"), _put(table, "rolled-2"), check])
    for pk in ("rolled-1", "rolled-2"):
        assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": "tx"}})
