"""The stack is hardened (issue 11): logs that expire, alarms, dead letters, backups, expiring personal data,
prefix-scoped S3 grants, TLS-only queues, and every checkov finding left is a justified skip."""

import re
from pathlib import Path

import pytest

from tests.unit.test_template_iam import TEMPLATE, statements

ROOT = Path(__file__).parents[2]
RESOURCES = TEMPLATE["Resources"]


def of_type(resource_type):
    return {k: v for k, v in RESOURCES.items() if v["Type"] == resource_type}


FUNCTIONS = of_type("AWS::Serverless::Function")
STATE_MACHINES = of_type("AWS::Serverless::StateMachine")
ALARMS = of_type("AWS::CloudWatch::Alarm")


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_log_group_with_a_retention(function):
    properties = FUNCTIONS[function]["Properties"]
    group_id = properties["LoggingConfig"]["LogGroup"]["Ref"]
    group = RESOURCES[group_id]
    assert group["Type"] == "AWS::Logs::LogGroup"
    # Not /aws/lambda/<name>: Lambda creates that group on a function's first call, so declaring it would
    # fail the update of every stack deployed before.
    suffix = properties["FunctionName"]["Sub"].removeprefix("${AWS::StackName}-")
    assert group["Properties"]["LogGroupName"]["Sub"] == f"/crmsync/${{AWS::StackName}}/{suffix}"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("machine", sorted(STATE_MACHINES))
def test_every_state_machine_logs_its_failures_without_execution_data(machine):
    logging = STATE_MACHINES[machine]["Properties"]["Logging"]
    assert logging["Level"] in ("ERROR", "ALL")
    assert logging["IncludeExecutionData"] is False  # inputs and outputs may hold values
    (destination,) = logging["Destinations"]
    group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["GetAtt"]
    assert RESOURCES[group.split(".")[0]]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def alarmed(metric, dimension_value):
    return [
        a["Properties"]
        for a in ALARMS.values()
        if a["Properties"]["MetricName"] == metric
        and dimension_value in repr(a["Properties"]["Dimensions"][0]["Value"])
    ]


@pytest.mark.parametrize("machine", sorted(STATE_MACHINES))
def test_failed_runs_of_every_state_machine_raise_an_alarm(machine):
    assert alarmed("ExecutionsFailed", machine)


@pytest.mark.parametrize("queue", ["RejectsDeadLetterQueue", "ScheduleDeadLetterQueue"])
def test_a_message_in_a_dead_letter_queue_raises_an_alarm(queue):
    (alarm,) = alarmed("ApproximateNumberOfMessagesVisible", queue)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_rejects_older_than_the_parameter_raise_an_alarm():
    (alarm,) = alarmed("ApproximateAgeOfOldestMessage", "RejectsQueue")
    assert alarm["Threshold"] == {"Ref": "RejectAgeAlarmSeconds"}


def test_a_reject_waiting_in_the_store_longer_than_the_parameter_raises_an_alarm():
    (alarm,) = [a["Properties"] for a in ALARMS.values() if a["Properties"]["MetricName"] == "OldestRejectAge"]
    assert (alarm["Namespace"], alarm["Statistic"]) == ("crmsync", "Maximum")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "crmsync"}]  # the stack-wide maximum of the syncs'
    assert alarm["Threshold"] == {"Ref": "RejectAgeAlarmSeconds"}
    measure = FUNCTIONS["RejectsAgeFunction"]["Properties"]
    (schedule,) = measure["Events"].values()
    assert schedule == {"Type": "Schedule", "Properties": {"Schedule": "rate(15 minutes)"}}
    assert alarm["Period"] >= 900  # each period holds one measure at least


def test_alarms_notify_the_topic_given_as_a_parameter_when_there_is_one():
    assert TEMPLATE["Conditions"]["HasAlarmTopic"] == {"Not": [{"Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    assert TEMPLATE["Parameters"]["AlarmTopicArn"]["Default"] == ""
    for alarm in ALARMS.values():
        for key in ("AlarmActions", "OKActions"):
            assert alarm["Properties"][key] == {
                "If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }


def test_schedules_have_a_dead_letter_queue_their_role_may_send_to():
    role = RESOURCES["SchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert any(s["Action"] == "sqs:SendMessage" and "ScheduleDeadLetterQueue" in repr(s["Resource"]) for s in role)
    operations = (ROOT / "layers/crmsync/crmsync/services/operations.py").read_text()
    assert '"DeadLetterConfig": {"Arn": self.names.schedule_dead_letter_queue_arn}' in operations


@pytest.mark.parametrize("table", sorted(of_type("AWS::DynamoDB::Table")))
def test_every_table_has_point_in_time_recovery(table):
    assert RESOURCES[table]["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }


@pytest.mark.parametrize("prefix", ["runs/", "populations/", "inbox/", "rejects/", "events/archive/"])
def test_every_prefix_holding_personal_data_expires(prefix):
    rules = RESOURCES["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r.get("Prefix") == prefix]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"]
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] <= 7


def s3_resources(function):
    for statement in statements(function):
        if any(a.startswith("s3:") for a in statement["Action"]):
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            yield from (r["Sub"] for r in resources)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_s3_grants_are_scoped_to_prefixes(function):
    for resource in s3_resources(function):
        assert re.fullmatch(
            r"\$\{DataBucket\.Arn\}/(runs|populations|inbox|rejects|events/archive)/\*", resource
        ), resource


@pytest.mark.parametrize("queue", sorted(of_type("AWS::SQS::Queue")))
def test_every_queue_refuses_requests_without_tls(queue):
    policies = [p["Properties"] for p in of_type("AWS::SQS::QueuePolicy").values()]
    covering = [p for p in policies if {"Ref": queue} in p["Queues"]]
    assert len(covering) == 1, f"{queue} has {len(covering)} queue policies (a queue takes one)"
    (tls,) = [s for s in covering[0]["PolicyDocument"]["Statement"] if s.get("Sid") == "TlsOnly"]
    assert (tls["Effect"], tls["Action"]) == ("Deny", "sqs:*")
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    resources = tls["Resource"] if isinstance(tls["Resource"], list) else [tls["Resource"]]
    assert {"GetAtt": f"{queue}.Arn"} in resources


def test_every_checkov_skip_says_why():
    skips = [
        (name, skip)
        for name, resource in RESOURCES.items()
        for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (name, skip)
        assert len(skip.get("comment", "")) >= 30, (name, skip)


def test_make_lint_runs_checkov_on_the_template():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"checkov .*-f template\.yaml .*--framework cloudformation", makefile)
