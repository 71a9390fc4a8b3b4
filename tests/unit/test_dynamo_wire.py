"""The lean DynamoDB client writes and reads exactly what botocore's serializer and parser do."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.parsers import create_parser

from crmsync.stores.dynamo import serialize
from crmsync.stores.dynamo_wire import ITEM_OPERATIONS, LeanSerializer, _parse_plain, make_lean

ITEM = serialize({"pk": "P#1", "attrs": {"email": "a@example.net", "n": 3, "ok": True, "tags": ["x", 1.5]}})
KEY = {"pk": {"S": "P#1"}}
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"TableName": "t", "Key": KEY, "ConsistentRead": True}),
    ("PutItem", {"TableName": "t", "Item": ITEM, "ConditionExpression": "attribute_not_exists(pk)"}),
    (
        "UpdateItem",
        {
            "TableName": "t",
            "Key": KEY,
            "UpdateExpression": "SET #a = :a",
            "ConditionExpression": "version = :v",
            "ExpressionAttributeNames": {"#a": "été"},
            "ExpressionAttributeValues": {":a": {"S": "x"}, ":v": {"N": "2"}},
        },
    ),
    ("DeleteItem", {"TableName": "t", "Key": KEY, "ReturnValues": "ALL_OLD"}),
    ("BatchGetItem", {"RequestItems": {"t": {"Keys": [KEY, {"pk": {"S": "X#2"}}], "ConsistentRead": True}}}),
    ("BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": ITEM}}, {"DeleteRequest": {"Key": KEY}}]}}),
    (
        "TransactWriteItems",
        {"TransactItems": [{"Put": {"TableName": "t", "Item": ITEM}}, {"Delete": {"TableName": "t", "Key": KEY}}]},
    ),
    ("TransactGetItems", {"TransactItems": [{"Get": {"TableName": "t", "Key": KEY}}]}),
    (
        "Query",
        {
            "TableName": "t",
            "IndexName": "ByChange",
            "KeyConditionExpression": "changeShard = :s AND updatedAt > :u",
            "ExpressionAttributeValues": {":s": {"S": "03"}, ":u": {"S": "2026-01-01"}},
            "ExclusiveStartKey": KEY,
            "Limit": 100,
        },
    ),
    ("Scan", {"TableName": "t", "Segment": 0, "TotalSegments": 4, "ProjectionExpression": "pk"}),
]


@pytest.fixture(scope="module")
def client() -> Any:
    return boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(parameter_validation=False),
    )


def both(client: Any, operation: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    model = client.meta.service_model.operation_model(operation)
    botocore_serializer = client._serializer
    return LeanSerializer(botocore_serializer).serialize_to_request(params, model), (
        botocore_serializer.serialize_to_request(params, model)
    )


def test_every_lean_operation_is_covered_here():
    assert {operation for operation, _ in REQUESTS} == ITEM_OPERATIONS


@pytest.mark.parametrize(("operation", "params"), REQUESTS, ids=[o for o, _ in REQUESTS])
def test_an_item_request_is_written_byte_for_byte_as_botocore_writes_it(client, operation, params):
    lean, botocore_request = both(client, operation, params)

    assert lean == botocore_request


def test_a_request_holding_a_binary_value_is_left_to_botocore(client):
    params = {"TableName": "t", "Item": {"pk": {"S": "P#1"}, "blob": {"B": b"\x00raw"}, "set": {"BS": [b"a"]}}}

    lean, botocore_request = both(client, "PutItem", params)

    assert lean == botocore_request
    assert b'"blob": {"B": "AHJhdw=="}' in lean["body"]


def test_an_operation_outside_the_item_operations_is_left_to_botocore(client):
    lean, botocore_request = both(client, "DescribeTable", {"TableName": "t"})

    assert lean == botocore_request


ANSWERS: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"Item": ITEM}),
    ("GetItem", {}),
    ("BatchGetItem", {"Responses": {"t": [ITEM, ITEM]}, "UnprocessedKeys": {"t": {"Keys": [KEY]}}}),
    ("Query", {"Items": [ITEM], "Count": 1, "ScannedCount": 1, "LastEvaluatedKey": KEY}),
    ("BatchWriteItem", {"UnprocessedItems": {}, "ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 1.0}]}),
    ("UpdateItem", {"Attributes": ITEM}),
]


def parse(client: Any, operation: str, body: bytes, *, status: int = 200, lean: bool) -> dict[str, Any]:
    model = client.meta.service_model.operation_model(operation)
    response = {"status_code": status, "headers": {"x-amzn-requestid": "r-1"}, "body": body}
    customized: dict[str, Any] = {}
    if lean:
        _parse_plain(operation_model=model, response_dict=response, customized_response_dict=customized)
    parsed = create_parser("json").parse(response, model.output_shape)
    parsed.update(customized)
    return parsed


@pytest.mark.parametrize(("operation", "answer"), ANSWERS, ids=[f"{o}-{i}" for i, (o, _) in enumerate(ANSWERS)])
def test_an_item_answer_is_read_as_botocore_reads_it(client, operation, answer):
    body = json.dumps(answer).encode()

    assert parse(client, operation, body, lean=True) == parse(client, operation, body, lean=False)


@pytest.mark.parametrize(
    "item",
    [{"pk": {"S": "P#1"}, "blob": {"B": "AHJhdw=="}}, {"pk": {"S": "P#1"}, "gone": None}],
    ids=["binary", "null"],
)
def test_an_answer_holding_a_binary_value_or_a_null_is_left_to_botocore(client, item):
    body = json.dumps({"Item": item}).encode()
    response = {"status_code": 200, "headers": {}, "body": body}
    customized: dict[str, Any] = {}

    _parse_plain(
        operation_model=client.meta.service_model.operation_model("GetItem"),
        response_dict=response,
        customized_response_dict=customized,
    )

    assert customized == {}
    assert response["body"] == body


def test_an_error_answer_is_left_to_botocore(client):
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}).encode()

    assert parse(client, "PutItem", body, status=400, lean=True) == parse(
        client, "PutItem", body, status=400, lean=False
    )


def test_a_client_is_made_lean_once():
    fresh = boto3.client("dynamodb", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")

    make_lean(make_lean(fresh))

    assert isinstance(fresh._serializer, LeanSerializer)
    assert not isinstance(fresh._serializer.wrapped, LeanSerializer)
