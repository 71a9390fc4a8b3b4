"""Canary handler: counts attempts in DynamoDB and fails with FlakyError until the wanted attempt."""

import os

import boto3


class FlakyError(Exception):
    """A transient failure the canary state machine retries by this name."""


def handler(event, context):
    attempts = boto3.client("dynamodb").update_item(
        TableName=os.environ["COUNTER_TABLE"],
        Key={"pk": {"S": event["key"]}, "sk": {"S": "attempts"}},
        UpdateExpression="ADD attempts :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW",
    )["Attributes"]["attempts"]["N"]
    if int(attempts) < event["succeedOnAttempt"]:
        raise FlakyError(f"attempt {attempts} failed")
    return {"attempts": int(attempts)}
