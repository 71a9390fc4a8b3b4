"""Canary: the moto 5.2.5 Step Functions features crmsync relies on, run through the local stack.

Each test runs one small state machine of tests/e2e/canary/template.yaml with the canary handlers
dispatched in-process. A moto upgrade that breaks a feature fails the test named after it. The tests
share one stack (they touch distinct keys), which keeps the module fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync_local.stack import LocalStack

CANARY_TEMPLATE = Path(__file__).parent / "canary" / "template.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_path = tmp_path_factory.mktemp("canary") / "local-stack.log"
    with LocalStack(CANARY_TEMPLATE, time_scale=0, log_path=log_path) as stack:
        yield stack


def test_task_with_plain_lambda_arn_returns_the_handler_result(canary: LocalStack) -> None:
    result = canary.run_execution("TaskMachine", {"value": 7})
    assert result.succeeded, result
    assert result.output["plain"]["event"] == {"value": 7}


def test_lambda_invoke_integration_applies_payload_and_result_selector(canary: LocalStack) -> None:
    result = canary.run_execution("TaskMachine", {"value": 7})
    assert result.output["invoke"] == {"echoed": {"value": 7}, "statusCode": 200}


def test_choice_routes_on_input(canary: LocalStack) -> None:
    assert canary.run_execution("ChoiceWaitMachine", {"kind": "other"}).output == {"route": "skipped"}


def test_wait_state_is_instant_with_time_scale_zero(canary: LocalStack) -> None:
    started = time.monotonic()
    result = canary.run_execution("ChoiceWaitMachine", {"kind": "wait"}, timeout=10)
    assert result.output == {"route": "waited"}
    assert time.monotonic() - started < 5  # the state waits 3600 s unscaled


def test_inline_map_runs_items_path_with_max_concurrency(canary: LocalStack) -> None:
    result = canary.run_execution("MapMachine", {"items": [{"n": n} for n in range(5)]})
    assert result.output == [{"n": n} for n in range(5)]


def test_parallel_returns_each_branch_output_in_order(canary: LocalStack) -> None:
    result = canary.run_execution("ParallelMachine", {"x": 1})
    assert result.output == [{"branch": "constant"}, {"x": 1}]


def test_retry_on_handler_exception_name_until_success(canary: LocalStack) -> None:
    started = time.monotonic()
    result = canary.run_execution("RetryMachine", {"key": "retry", "succeedOnAttempt": 3})
    assert result.output == {"attempts": 3}
    assert time.monotonic() - started < 5  # 60 s + 120 s of intervals unscaled


def test_retry_stops_after_max_attempts_with_the_handler_error_name(canary: LocalStack) -> None:
    result = canary.run_execution("RetryMachine", {"key": "exhausted", "succeedOnAttempt": 99})
    assert (result.status, result.error) == ("FAILED", "FlakyError")
    assert json.loads(result.cause or "{}")["errorMessage"] == "attempt 4 failed"  # 1 try + MaxAttempts 3


def test_catch_by_error_name_puts_the_error_at_result_path(canary: LocalStack) -> None:
    result = canary.run_execution("CatchMachine", {"error": "permanent", "id": "p-1"})
    assert result.output["branch"] == "handled"
    assert result.output["id"] == "p-1"
    assert result.output["error"]["Error"] == "PermanentError"
    cause = json.loads(result.output["error"]["Cause"])
    assert (cause["errorType"], cause["errorMessage"]) == ("PermanentError", "permanent failure for p-1")


def test_catch_states_all_takes_any_other_error(canary: LocalStack) -> None:
    result = canary.run_execution("CatchMachine", {"error": "other"})
    assert result.output["branch"] == "all"
    assert result.output["error"]["Error"] == "OtherError"


def test_uncaught_handler_error_fails_the_execution_with_its_name(canary: LocalStack) -> None:
    result = canary.run_execution("UncaughtMachine", {"error": "permanent"})
    assert (result.status, result.error) == ("FAILED", "PermanentError")


def test_intrinsic_functions_evaluate(canary: LocalStack) -> None:
    output = canary.run_execution(
        "IntrinsicsMachine", {"name": "Ada", "json": '{"a": 1}', "items": [1, 2, 3], "a": 2, "b": 40}
    ).output
    assert (output["greeting"], output["parsed"], output["count"], output["sum"]) == (
        "Hello, Ada!",
        {"a": 1},
        3,
        42,
    )


def test_context_object_carries_execution_name_and_id(canary: LocalStack) -> None:
    arn = canary.start_execution(
        "IntrinsicsMachine", {"name": "x", "json": "{}", "items": [], "a": 0, "b": 0}, "run-42"
    )
    output = canary.wait_for_execution(arn).output
    assert output["executionName"] == "run-42"
    assert output["executionId"] == arn


def test_dynamodb_put_get_update_and_sdk_query_integrations(canary: LocalStack) -> None:
    output = canary.run_execution("DynamoMachine", {"pk": "profile-1", "name": "Ada"}).output
    assert output["got"] == {"name": "Ada"}
    assert output["updated"] == {"visits": "1"}
    assert output["queried"]["count"] == 1
    assert output["queried"]["items"][0]["visits"] == {"N": "1"}


def test_sqs_send_message_integration_delivers_the_body(canary: LocalStack) -> None:
    canary.run_execution("SqsMachine", {"hello": "world"})
    messages = canary.client("sqs").receive_message(QueueUrl=canary.resource_names()["OutboxQueue"])["Messages"]
    assert json.loads(messages[0]["Body"]) == {"hello": "world"}


def test_distributed_map_reads_a_json_array_from_s3(canary: LocalStack) -> None:
    bucket = canary.resource_names()["CanaryBucket"]
    items = [{"distributed": n} for n in range(4)]
    canary.client("s3").put_object(Bucket=bucket, Key="in/items.json", Body=json.dumps(items))
    result = canary.run_execution("DistributedJsonMachine", {"key": "in/items.json"})
    assert result.succeeded, result
    echoed = [line.text for line in canary.lambda_logs if '"distributed"' in line.text]
    assert sorted(echoed) == [f'echo received {{"distributed": {n}}}' for n in range(4)]


def test_distributed_map_result_writer_writes_only_a_manifest(canary: LocalStack) -> None:
    """moto 5.2.5 writes manifest.json with empty ResultFiles and no result files: read results elsewhere."""
    s3 = canary.client("s3")
    bucket = canary.resource_names()["CanaryBucket"]
    s3.put_object(Bucket=bucket, Key="in/one.json", Body=json.dumps([{"n": 1}]))
    details = canary.run_execution("DistributedJsonMachine", {"key": "in/one.json"}).output["ResultWriterDetails"]
    assert details["Bucket"] == bucket
    assert details["Key"].startswith("results/")
    assert details["Key"].endswith("/manifest.json")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=details["Key"])["Body"].read())
    assert manifest["ResultFiles"] == {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    run_prefix = details["Key"].rsplit("/", 1)[0] + "/"
    written = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=run_prefix)["Contents"]]
    assert written == [details["Key"]]


def test_distributed_map_reads_csv_rows_with_a_header(canary: LocalStack) -> None:
    bucket = canary.resource_names()["CanaryBucket"]
    canary.client("s3").put_object(Bucket=bucket, Key="in/rows.csv", Body="id,name\n1,Ada\n2,Grace\n")
    result = canary.run_execution("DistributedCsvMachine", {"key": "in/rows.csv"})
    assert result.output == [{"id": "1", "name": "Ada"}, {"id": "2", "name": "Grace"}]


def test_explicit_execution_name_is_used_and_a_duplicate_is_refused(canary: LocalStack) -> None:
    arn = canary.start_execution("ChoiceWaitMachine", {"kind": "other"}, name="nightly-2024-01-01")
    assert arn.endswith(":nightly-2024-01-01")
    canary.wait_for_execution(arn)
    with pytest.raises(canary.client("stepfunctions").exceptions.ExecutionAlreadyExists):
        canary.start_execution("ChoiceWaitMachine", {"kind": "other"}, name="nightly-2024-01-01")


def test_unnamed_executions_get_unique_names(canary: LocalStack) -> None:
    first = canary.run_execution("ChoiceWaitMachine", {"kind": "other"})
    second = canary.run_execution("ChoiceWaitMachine", {"kind": "other"})
    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    assert first.name != second.name


def test_execution_history_lists_the_states(canary: LocalStack) -> None:
    arn = canary.start_execution("ChoiceWaitMachine", {"kind": "other"})
    canary.wait_for_execution(arn)
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in canary.execution_history(arn)
        if "stateEnteredEventDetails" in e
    ]
    assert entered == ["Route", "Skipped"]
