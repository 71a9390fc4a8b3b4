"""Canary SQS consumer: reports the messages whose body says "fail" as batch item failures."""

import os

import boto3


def handler(event, context):
    table = os.environ["COUNTER_TABLE"]
    dynamodb = boto3.client("dynamodb")
    failures = []
    for record in event["Records"]:
        if "fail" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": "processed"}, "sk": {"S": record["messageId"]}, "body": {"S": record["body"]}},
        )
    print(f"batch of {len(event['Records'])}, {len(failures)} failed")
    return {"batchItemFailures": failures}
