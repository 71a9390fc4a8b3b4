"""The container's lean DynamoDB client against the local stack: what is written reads back the same,
binary values included, and DynamoDB's refusals reach the stores as botocore's errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from crmsync.services.operations import Operator
from crmsync.stores.dynamo import batch_get, deserialize, serialize
from crmsync.stores.dynamo_wire import LeanSerializer

ITEM = {"pk": "P#wire", "attrs": {"email": "a@example.net", "n": 3, "ok": True}, "blob": b"\x00raw", "tags": {"x"}}


@pytest.fixture
def store(local_stack, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    profiles = Operator("crmsync").container.profiles
    return profiles.client, profiles.table


def test_the_containers_dynamodb_client_is_lean(store):
    client, _ = store

    assert isinstance(client._serializer, LeanSerializer)


def test_an_item_with_binary_and_plain_values_reads_back_as_written(store):
    client, table = store
    client.put_item(TableName=table, Item=serialize(ITEM))

    read = client.get_item(TableName=table, Key=serialize({"pk": "P#wire"}), ConsistentRead=True)["Item"]

    assert deserialize(read) == {**ITEM, "tags": ["x"]}
    assert batch_get(client, table, [{"pk": "P#wire"}, {"pk": "P#none"}]) == [{**ITEM, "tags": ["x"]}]


def test_a_failed_condition_reaches_the_caller_as_botocores_error(store):
    client, table = store
    client.put_item(TableName=table, Item=serialize({"pk": "P#taken"}))

    with pytest.raises(ClientError) as refused:
        client.put_item(
            TableName=table, Item=serialize({"pk": "P#taken"}), ConditionExpression="attribute_not_exists(pk)"
        )

    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_a_plain_answer_is_loaded_by_the_lean_client_before_botocore_parses_it(store):
    client, table = store
    client.put_item(TableName=table, Item=serialize({"pk": "P#plain", "attrs": {"n": 1}}))
    bodies: list[bytes] = []

    def after_lean(response_dict, **_):  # registered after the lean client's handler, at the same level
        bodies.append(response_dict["body"])

    client.meta.events.register("before-parse.dynamodb", after_lean)
    try:
        read = client.get_item(TableName=table, Key=serialize({"pk": "P#plain"}), ConsistentRead=True)
    finally:
        client.meta.events.unregister("before-parse.dynamodb", after_lean)

    assert bodies == [b"{}"]
    assert deserialize(read["Item"]) == {"pk": "P#plain", "attrs": {"n": 1}}
