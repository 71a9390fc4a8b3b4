"""The repository's template.yaml, created in moto by the `local_stack` fixture."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from crmsync.registry import OPERATIONS
from crmsync_local.stack import DEFAULT_TEMPLATE, LocalStack, TemplateError
from tests.fixtures.local_stack import AwsEnv, LocalStackFactory

ACCOUNT = "123456789012"
FUNCTIONS = {
    "ImportStartFunction": "crmsync-import-start",
    "ImportPageFunction": "crmsync-import-page",
    "ImportFinishFunction": "crmsync-import-finish",
    "ExportStartFunction": "crmsync-export-start",
    "ExportBatchFunction": "crmsync-export-batch",
    "ExportFinishFunction": "crmsync-export-finish",
    "RunFailedFunction": "crmsync-run-failed",
}
TABLES = {
    "DefinitionsTable": "crmsync-definitions",
    "WatermarksTable": "crmsync-watermarks",
    "RunsTable": "crmsync-runs",
    "ProfilesTable": "crmsync-profiles",
    "ResourcesTable": "crmsync-resources",
}


def test_tables_exist_under_their_template_names(aws_env: AwsEnv) -> None:
    dynamodb = aws_env.client("dynamodb")
    for logical_id, name in TABLES.items():
        assert aws_env.names[logical_id] == name
        assert dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"


def test_functions_exist_under_their_template_names(aws_env: AwsEnv) -> None:
    for logical_id, name in FUNCTIONS.items():
        assert aws_env.names[logical_id] == name
        configuration = aws_env.client("lambda").get_function_configuration(FunctionName=name)
        assert configuration["Handler"] == "app.handler"
        assert configuration["Runtime"] == "python3.12"


def test_queues_bucket_state_machine_group_and_role_exist_under_their_names(aws_env: AwsEnv) -> None:
    sqs = aws_env.client("sqs")
    assert sqs.get_queue_url(QueueName="crmsync-rejects")["QueueUrl"].endswith(f"/{ACCOUNT}/crmsync-rejects")
    assert sqs.get_queue_url(QueueName="crmsync-rejects-dlq")["QueueUrl"].endswith("/crmsync-rejects-dlq")
    assert aws_env.names["RejectsQueue"] == f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/crmsync-rejects"
    aws_env.client("s3").head_bucket(Bucket=f"crmsync-data-{ACCOUNT}-us-east-1")
    for operation in OPERATIONS.values():
        machine_arn = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-{operation.machine}"
        assert aws_env.names[operation.logical_id] == machine_arn
        described = aws_env.client("stepfunctions").describe_state_machine(stateMachineArn=machine_arn)
        assert described["name"] == f"crmsync-{operation.machine}"
    assert aws_env.client("scheduler").get_schedule_group(Name="crmsync-syncs")["Name"] == "crmsync-syncs"
    assert aws_env.client("iam").get_role(RoleName="crmsync-scheduler")["Role"]["Arn"] == (
        f"arn:aws:iam::{ACCOUNT}:role/crmsync-scheduler"
    )


def test_every_template_resource_is_created(local_stack: LocalStack) -> None:
    declared = {lid for lid in local_stack.template.body["Resources"] if local_stack.plan.is_active(lid)}
    assert declared <= set(local_stack.resources)
    serverless = [lid for lid in declared if local_stack.plan.type_of(lid).startswith("AWS::Serverless::")]
    for implicit in set(local_stack.resources) - declared:  # SAM's <Id>Role, <Id><EventId>, ...
        assert any(implicit.startswith(owner) for owner in serverless), implicit
    assert all(info["physical_id"] for info in local_stack.resources.values())


def test_definition_substitutions_are_fully_resolved(local_stack: LocalStack) -> None:
    properties = local_stack.plan.raw_properties("ImportStateMachine")
    raw = (DEFAULT_TEMPLATE.parent / properties["DefinitionUri"]).read_text()
    definition = local_stack.client("stepfunctions").describe_state_machine(
        stateMachineArn=local_stack.resource_names()["ImportStateMachine"]
    )["definition"]
    assert "${" not in definition
    substitutions = local_stack.plan.properties("ImportStateMachine")["DefinitionSubstitutions"]
    used = {key for key in substitutions if "${" + key + "}" in raw}
    assert used, "the import ASL uses no DefinitionSubstitutions"
    for key in used:
        assert substitutions[key] in definition, key
    assert substitutions["ImportPageFunctionArn"] == (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:crmsync-import-page"
    )


def test_function_environment_resolves_globals_to_physical_names(aws_env: AwsEnv) -> None:
    variables = aws_env.client("lambda").get_function_configuration(FunctionName="crmsync-import-page")[
        "Environment"
    ]["Variables"]
    assert variables["PROFILES_TABLE"] == "crmsync-profiles"
    assert variables["RUNS_TABLE"] == "crmsync-runs"
    assert variables["REJECTS_QUEUE_URL"] == f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/crmsync-rejects"
    assert variables["DATA_BUCKET"] == f"crmsync-data-{ACCOUNT}-us-east-1"
    assert variables["STACK_NAME"] == "crmsync"
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_function_settings_override_globals(local_stack: LocalStack) -> None:
    global_settings = local_stack.template.body["Globals"]["Function"]
    for logical_id, name in FUNCTIONS.items():
        declared = local_stack.template.body["Resources"][logical_id]["Properties"]
        configuration = local_stack.client("lambda").get_function_configuration(FunctionName=name)
        for setting in ("Timeout", "MemorySize"):
            assert configuration[setting] == declared.get(setting, global_settings[setting]), (name, setting)
        assert configuration["TracingConfig"] == {"Mode": "Active"}
        assert [layer["Arn"] for layer in configuration["Layers"]] == [
            f"arn:aws:lambda:us-east-1:{ACCOUNT}:layer:crmsync-core:1"
        ]


def test_rejects_queue_redrives_to_its_dead_letter_queue(aws_env: AwsEnv) -> None:
    attributes = aws_env.client("sqs").get_queue_attributes(
        QueueUrl=aws_env.names["RejectsQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:crmsync-rejects-dlq",
        "maxReceiveCount": 10,
    }
    assert attributes["MessageRetentionPeriod"] == "1209600"
    assert attributes["VisibilityTimeout"] == "60"


def test_runs_table_expires_items_by_ttl(aws_env: AwsEnv) -> None:
    ttl = aws_env.client("dynamodb").describe_time_to_live(TableName="crmsync-runs")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_data_bucket_is_versioned(aws_env: AwsEnv) -> None:
    s3 = aws_env.client("s3")
    assert s3.get_bucket_versioning(Bucket=aws_env.names["DataBucket"])["Status"] == "Enabled"


def test_https_only_deny_is_in_the_template_but_left_out_locally(local_stack: LocalStack, aws_env: AwsEnv) -> None:
    # moto ignores policy Conditions: applied, the HTTPS-only Deny would refuse every object write.
    (statement,) = local_stack.plan.properties("DataBucketPolicy")["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        aws_env.client("s3").get_bucket_policy(Bucket=aws_env.names["DataBucket"])


def test_outputs_resolve(local_stack: LocalStack) -> None:
    assert local_stack.outputs == {
        "ImportStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-import",
        "ExportStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-export",
        "DeletionImportStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-import-deleted",
        "DeleteStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-delete",
        "TwoWayStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-two-way",
        "EnumerationsStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-enumerations",
        "InitialTransferStateMachineArn": f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:crmsync-initial-transfer",
        "RejectsQueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/crmsync-rejects",
        "SchedulerRoleArn": f"arn:aws:iam::{ACCOUNT}:role/crmsync-scheduler",
        "SyncScheduleGroupName": "crmsync-syncs",
        "EventsQueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/crmsync-events",
        "EventsDeadLetterQueueUrl": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/crmsync-events-dlq",
        "EventsBusName": "crmsync-marketing-events",
        "DashboardUrl": "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards:name=crmsync",
    }


def test_the_dashboard_is_created_with_its_widgets(local_stack: LocalStack) -> None:
    body = json.loads(local_stack.client("cloudwatch").get_dashboard(DashboardName="crmsync")["DashboardBody"])
    assert len([w for w in body["widgets"] if w["type"] == "metric"]) == 6


def test_handlers_are_registered_from_code_uri(local_stack: LocalStack) -> None:
    spec = local_stack.functions["ImportPageFunction"]
    assert spec.code_dir == DEFAULT_TEMPLATE.parent / "functions" / "import_page"
    assert spec.handler == "app.handler"
    assert spec.environment["PROFILES_TABLE"] == "crmsync-profiles"
    assert spec.layer_dirs == (DEFAULT_TEMPLATE.parent / "layers" / "crmsync",)


def test_parameters_override_defaults(local_stack_factory: LocalStackFactory) -> None:
    stack = local_stack_factory(parameters={"LogLevel": "DEBUG"}, stack_name="acme")
    variables = stack.client("lambda").get_function_configuration(FunctionName="acme-import-page")["Environment"][
        "Variables"
    ]
    assert variables["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert variables["PROFILES_TABLE"] == "acme-profiles"


def test_unsupported_property_fails_naming_logical_id_and_property(
    tmp_path: Path, local_stack_factory: LocalStackFactory
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        textwrap.dedent(
            """
            Resources:
              Events:
                Type: AWS::SQS::Queue
                Properties: { QueueName: events, ReceiveMessageWaitTimeSeconds: 1, Teleport: true }
            """
        )
    )
    with pytest.raises(
        TemplateError, match=r"Events \(AWS::SQS::Queue\): propert\(y/ies\) Teleport not supported"
    ):
        local_stack_factory(template)


def test_unresolved_definition_placeholder_is_listed(
    tmp_path: Path, local_stack_factory: LocalStackFactory
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        textwrap.dedent(
            """
            Transform: AWS::Serverless-2016-10-31
            Resources:
              Machine:
                Type: AWS::Serverless::StateMachine
                Properties:
                  Definition:
                    StartAt: A
                    States:
                      A: { Type: Task, Resource: "${KnownArn}", Next: B }
                      B: { Type: Task, Resource: "${ForgottenArn}", End: true }
                  DefinitionSubstitutions:
                    KnownArn: arn:aws:lambda:us-east-1:123456789012:function:known
            """
        )
    )
    with pytest.raises(
        TemplateError, match=r"Machine .*unresolved placeholder\(s\) in the definition: \$\{ForgottenArn\}"
    ):
        local_stack_factory(template)


def test_missing_definition_file_is_reported(tmp_path: Path, local_stack_factory: LocalStackFactory) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Machine:\n    Type: AWS::Serverless::StateMachine\n"
        "    Properties:\n      DefinitionUri: statemachines/nope.asl.json\n"
    )
    with pytest.raises(TemplateError, match=r"Machine .*DefinitionUri statemachines/nope.asl.json not found"):
        local_stack_factory(template)


def test_log_groups_alarms_and_the_schedules_dead_letter_queue_are_created(aws_env: AwsEnv) -> None:
    groups = {
        g["logGroupName"]: g.get("retentionInDays")
        for g in aws_env.client("logs").describe_log_groups(logGroupNamePrefix="/crmsync/crmsync/")["logGroups"]
    }
    assert groups == {f"/crmsync/crmsync/{name.removeprefix('crmsync-')}": 365 for name in groups_of_functions()}
    alarms = {a["AlarmName"]: a for a in aws_env.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert set(alarms) >= {
        "crmsync-import-runs-failed",
        "crmsync-export-runs-failed",
        "crmsync-import-deleted-runs-failed",
        "crmsync-delete-runs-failed",
        "crmsync-rejects-dead-letters",
        "crmsync-schedules-dead-letters",
        "crmsync-rejects-age",
        "crmsync-rejects-waiting",
    }
    assert alarms["crmsync-rejects-age"]["Threshold"] == 604800
    assert alarms["crmsync-rejects-waiting"]["Threshold"] == 604800
    assert (alarms["crmsync-rejects-waiting"]["Namespace"], alarms["crmsync-rejects-waiting"]["MetricName"]) == (
        "crmsync",
        "OldestRejectAge",
    )
    assert alarms["crmsync-rejects-age"].get("AlarmActions", []) == []  # no AlarmTopicArn given
    aws_env.client("sqs").get_queue_url(QueueName="crmsync-schedules-dlq")


def groups_of_functions() -> list[str]:
    names = re.findall(r'FunctionName: !Sub "\$\{AWS::StackName\}-([a-z-]+)"', DEFAULT_TEMPLATE.read_text())
    return [f"crmsync-{name}" for name in names]


def test_a_function_logs_to_its_logging_config_group(local_stack: LocalStack) -> None:
    spec = local_stack.functions["ImportStartFunction"]
    assert spec.log_group == "/crmsync/crmsync/import-start"
    from crmsync_local.stack.runtime import LambdaContext

    assert LambdaContext(spec, "r", spec.arn, "s").log_group_name == "/crmsync/crmsync/import-start"
