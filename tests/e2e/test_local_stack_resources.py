"""Every resource type the local stack supports, created from tests/e2e/canary/kitchen_sink.yaml."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_local.stack import LocalStack

KITCHEN_SINK = Path(__file__).parent / "canary" / "kitchen_sink.yaml"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_path = tmp_path_factory.mktemp("kitchen") / "local-stack.log"
    with LocalStack(KITCHEN_SINK, stack_name="kitchen", time_scale=0, log_path=log_path) as started:
        yield started


def test_every_declared_resource_and_sam_implicit_resource_is_created(stack: LocalStack) -> None:
    declared = set(stack.template.body["Resources"]) - {"ProdOnlyQueue"}
    implicit = {
        "FunctionRole",
        "EventMachineRole",
        "EventMachineNightly",
        "EventMachineNightlyRole",
        "EventMachineChanges",
        "EventMachineChangesRole",
    }
    assert set(stack.resources) == declared | implicit


def test_resource_with_false_condition_and_its_output_are_skipped(stack: LocalStack) -> None:
    assert "ProdOnlyQueue" not in stack.resources
    assert set(stack.outputs) == {"SecretArn"}


def test_secret_refs_are_the_arns_moto_assigned(stack: LocalStack) -> None:
    secrets = stack.client("secretsmanager")
    generated = stack.resources["GeneratedSecret"]["physical_id"]
    assert re.fullmatch(
        rf"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:GeneratedSecret-\w+-\w{{6}}", generated
    )
    value = json.loads(secrets.get_secret_value(SecretId=generated)["SecretString"])
    assert (value["username"], len(value["password"])) == ("crm", 24)
    environment = stack.functions["Function"].environment
    assert environment["SECRET_ARN"] == generated
    assert secrets.describe_secret(SecretId=environment["NAMED_SECRET_ARN"])["Name"] == "kitchen/crm"
    assert stack.outputs["SecretArn"] == generated


def test_table_stream_arn_is_bound_after_creation(stack: LocalStack) -> None:
    table = stack.client("dynamodb").describe_table(TableName=stack.resource_names()["Table"])["Table"]
    assert stack.functions["Function"].environment["STREAM_ARN"] == table["LatestStreamArn"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-email"]
    assert [index["IndexName"] for index in table["LocalSecondaryIndexes"]] == ["by-pk-email"]


def test_environment_values_become_strings(stack: LocalStack) -> None:
    assert stack.functions["Function"].environment["DEBUG"] == "true"


def test_generated_fifo_queue_name_ends_in_fifo(stack: LocalStack) -> None:
    name = stack.resource_names()["OrderedQueue"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"kitchen-OrderedQueue-[A-Z2-7]{12}\.fifo", name)
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resource_names()["OrderedQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert json.loads(attributes["Policy"])["Statement"][0]["Action"] == "sqs:SendMessage"


def test_only_the_stacks_own_layers_are_attached(stack: LocalStack) -> None:
    layer_arn = stack.resource_names()["Layer"]
    assert layer_arn == f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:Layer:1"
    configuration = stack.client("lambda").get_function_configuration(
        FunctionName=stack.resource_names()["Function"]
    )
    assert [layer["Arn"] for layer in configuration["Layers"]] == [layer_arn]
    assert stack.functions["Function"].layer_dirs == (KITCHEN_SINK.parent / "functions",)


def test_plain_state_machine_uses_definition_string_and_role_arn(stack: LocalStack) -> None:
    description = stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=stack.resource_names()["PlainMachine"]
    )
    assert description["roleArn"] == f"arn:aws:iam::{ACCOUNT}:role/kitchen/{stack.resource_names()['CustomRole']}"
    assert (
        json.loads(description["definition"])["States"]["Call"]["Resource"] == stack.resources["Function"]["arn"]
    )


def test_state_machine_events_become_rules_targeting_it(stack: LocalStack) -> None:
    events = stack.client("events")
    names = stack.resource_names()
    assert events.describe_rule(Name=names["EventMachineNightly"])["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert json.loads(events.describe_rule(Name=names["EventMachineChanges"])["EventPattern"]) == {
        "source": ["crmsync"]
    }
    (target,) = events.list_targets_by_rule(Rule=names["EventMachineChanges"])["Targets"]
    assert target["Arn"] == names["EventMachine"]
    assert target["RoleArn"] == stack.resources["EventMachineChangesRole"]["arn"]


def test_schedule_is_created_in_its_group(stack: LocalStack) -> None:
    names = stack.resource_names()
    schedule = stack.client("scheduler").get_schedule(Name=names["Schedule"], GroupName=names["Group"])
    assert schedule["Target"]["Arn"] == names["EventMachine"]
    assert schedule["Target"]["Input"] == '{"from": "schedule"}'


def test_rule_targets_keep_their_input(stack: LocalStack) -> None:
    (target,) = stack.client("events").list_targets_by_rule(Rule=stack.resource_names()["Rule"])["Targets"]
    assert target["Input"] == '{"from": "rule"}'


def test_log_group_retention_comes_from_the_mapping(stack: LocalStack) -> None:
    (group,) = stack.client("logs").describe_log_groups(logGroupNamePrefix="/crmsync/kitchen")["logGroups"]
    assert group["retentionInDays"] == 7


def test_bucket_cors_and_policy_are_applied(stack: LocalStack) -> None:
    s3 = stack.client("s3")
    bucket = stack.resource_names()["Bucket"]
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["MaxAgeSeconds"] == 60
    (statement,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statement["Action"] == "s3:DeleteBucket"  # the conditional Deny is left out: moto ignores Conditions


def test_explicit_sqs_event_source_mapping_is_drained(stack: LocalStack) -> None:
    queue_url = stack.resource_names()["OrderedQueue"]
    stack.client("sqs").send_message(QueueUrl=queue_url, MessageBody="ordered", MessageGroupId="g")
    result = stack.drain_queue("OrderedQueue")
    assert (result.batches, result.succeeded) == (1, 1)
    record = json.loads(stack.lambda_logs[0].text.removeprefix("echo received "))["Records"][0]
    assert record["attributes"]["MessageGroupId"] == "g"
    assert record["eventSourceARN"] == stack.resources["OrderedQueue"]["arn"]
