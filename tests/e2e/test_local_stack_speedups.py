"""moto performance fixes the stack installs: same behaviour, without moto's quadratic costs."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from crmsync_local.stack import LocalStack

CANARY_TEMPLATE = Path(__file__).parent / "canary" / "template.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_path = tmp_path_factory.mktemp("speedups") / "local-stack.log"
    with LocalStack(CANARY_TEMPLATE, time_scale=0, log_path=log_path) as started:
        yield started


def _put(table: str, pk: str) -> dict[str, object]:
    return {"Put": {"TableName": table, "Item": {"pk": {"S": pk}, "sk": {"S": "tx"}}}}


def test_a_transaction_copies_only_the_items_it_touches(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models.table import Table

    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    for start in range(0, 200, 25):
        rows = [
            {"PutRequest": {"Item": {"pk": {"S": f"bulk-{i}"}, "sk": {"S": "tx"}}}}
            for i in range(start, start + 25)
        ]
        dynamodb.batch_write_item(RequestItems={table: rows})
    copied: list[str] = []
    original = copy.deepcopy
    monkeypatch.setattr(
        copy, "deepcopy", lambda value, memo=None: copied.append(type(value).__name__) or original(value, memo)
    )
    dynamodb.transact_write_items(TransactItems=[_put(table, f"fast-{i}") for i in range(100)])
    assert Table.__name__ not in copied
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "fast-99"}, "sk": {"S": "tx"}}).get("Item")


def test_conditions_see_the_state_before_the_transaction(stack: LocalStack) -> None:
    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    check_absent = {
        "ConditionCheck": {
            "TableName": table,
            "Key": {"pk": {"S": "other"}, "sk": {"S": "tx"}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    dynamodb.transact_write_items(TransactItems=[_put(table, "first"), check_absent])
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "first"}, "sk": {"S": "tx"}}).get("Item")


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


def test_an_item_over_400_kb_is_still_refused(stack: LocalStack) -> None:
    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    big = {"pk": {"S": "big"}, "sk": {"S": "tx"}, **{f"a{i}": {"S": "x" * 100_000} for i in range(5)}}
    with pytest.raises(dynamodb.exceptions.ClientError, match="Item size has exceeded"):
        dynamodb.put_item(TableName=table, Item=big)


def test_item_reads_answer_exactly_what_moto_serializer_answers(stack: LocalStack) -> None:
    from crmsync_local.stack import speedups

    dynamodb = stack.client("dynamodb")
    table = stack.resource_names()["CanaryTable"]
    item = {
        "pk": {"S": "reads-1"},
        "sk": {"S": "tx"},
        "attrs": {"M": {"name": {"S": "Zoé"}, "score": {"N": "4.5"}, "tags": {"L": [{"S": "a"}, {"BOOL": True}]}}},
        "none": {"NULL": True},
        "blob": {"B": b"\x00\x01"},
        "set": {"SS": ["x", "y"]},
    }
    dynamodb.put_item(TableName=table, Item=item)
    key = {"pk": {"S": "reads-1"}, "sk": {"S": "tx"}}

    def reads() -> list[object]:
        return [
            dynamodb.get_item(TableName=table, Key=key)["Item"],
            dynamodb.batch_get_item(RequestItems={table: {"Keys": [key]}})["Responses"],
            dynamodb.query(
                TableName=table,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": "reads-1"}},
            )["Items"],
        ]

    fast = reads()
    speedups.uninstall()
    try:
        assert reads() == fast
    finally:
        speedups.install()


def test_a_definition_is_parsed_once_per_process_and_an_invalid_one_still_refused(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    parsed: list[str] = []
    original = AmazonStateLanguageParser.parse
    monkeypatch.setattr(
        AmazonStateLanguageParser, "parse", staticmethod(lambda text: parsed.append(text) or original(text))
    )
    stepfunctions = stack.client("stepfunctions")
    role = f"arn:aws:iam::{stack.account_id}:role/speedups"
    definition = '{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}'
    for name in ("parsed-once-1", "parsed-once-2"):
        stepfunctions.create_state_machine(name=name, definition=definition, roleArn=role)
    assert parsed == [definition]
    invalid = '{"StartAt": "Missing", "States": {"Done": {"Type": "NoSuchType"}}}'
    for name in ("refused-1", "refused-2"):
        with pytest.raises(ClientError, match="ASLParserException"):
            stepfunctions.create_state_machine(name=name, definition=invalid, roleArn=role)
    assert parsed == [definition, invalid, invalid]


def test_the_handlers_default_session_reads_botocore_models_through_one_loader(stack: LocalStack) -> None:
    import boto3

    from crmsync_local.stack import speedups

    session = boto3.DEFAULT_SESSION
    assert session is not None
    loader = session._session.get_component("data_loader")
    assert loader is speedups._loader
    assert len(loader.search_paths) == len(set(loader.search_paths))
    assert boto3.client("dynamodb", region_name=stack.region).list_tables()["TableNames"]
