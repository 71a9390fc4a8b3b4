"""The in-process Lambda runtime, SQS delivery, the time scale and the stack's lifecycle (canary stack)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.dynamodb.models import DynamoDBBackend
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from crmsync_local.stack import LocalStack, StackError
from crmsync_local.stack import runtime as local_runtime
from tests.fixtures.local_stack import LocalStackFactory

CANARY_TEMPLATE = Path(__file__).parent / "canary" / "template.yaml"


@pytest.fixture
def canary(local_stack_factory: LocalStackFactory) -> LocalStack:
    return local_stack_factory(CANARY_TEMPLATE)


# ------------------------------------------------------------------------------------------------ dispatch


def test_handler_sees_its_resolved_environment(canary: LocalStack) -> None:
    environment = canary.invoke("EchoFunction", {}).payload["environment"]
    assert environment["COUNTER_TABLE"] == canary.resource_names()["CanaryTable"]
    assert environment["GLOBAL_ONLY"] == "from-globals"
    assert environment["OVERRIDDEN"] == "from-function"
    assert environment["FUNCTION_ONLY"] == "canary-only"
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == canary.resource_names()["EchoFunction"]
    assert environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert (environment["AWS_REGION"], environment["AWS_DEFAULT_REGION"]) == ("us-east-1", "us-east-1")
    assert environment["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert environment["AWS_ENDPOINT_URL"] is None


def test_process_environment_is_restored_after_the_call(canary: LocalStack) -> None:
    before = dict(os.environ)
    canary.invoke("EchoFunction", {})
    assert dict(os.environ) == before


def test_handler_gets_a_lambda_context(canary: LocalStack) -> None:
    context = canary.invoke("EchoFunction", {}).payload["context"]
    name = canary.resource_names()["EchoFunction"]
    assert context["function_name"] == name
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert context["memory_limit_in_mb"] == "256"
    assert re.fullmatch(r"[0-9a-f-]{36}", context["aws_request_id"])
    assert context["log_group_name"] == f"/aws/lambda/{name}"
    assert context["aws_request_id"].replace("-", "") in context["log_stream_name"]
    assert 0 < context["remaining_time_in_millis"] <= 10_000


def test_exception_becomes_an_unhandled_function_error(canary: LocalStack) -> None:
    result = canary.invoke("FailFunction", {"error": "permanent", "id": "x"})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "PermanentError"
    assert result.payload["errorMessage"] == "permanent failure for x"
    assert "fail/app.py" in result.payload["stackTrace"][-1]


def test_unserializable_result_becomes_a_marshal_error(canary: LocalStack) -> None:
    result = canary.invoke("FailFunction", {"error": "unserializable"})
    assert (result.function_error, result.payload["errorType"]) == ("Unhandled", "Runtime.MarshalError")


def test_missing_handler_module_becomes_an_import_module_error(canary: LocalStack) -> None:
    result = canary.invoke("MissingFunction", {})
    assert (result.function_error, result.payload["errorType"]) == ("Unhandled", "Runtime.ImportModuleError")


def test_event_invocation_runs_in_the_background(canary: LocalStack) -> None:
    result = canary.invoke("FlakyFunction", {"key": "async", "succeedOnAttempt": 1}, invocation_type="Event")
    assert (result.status_code, result.payload) == (202, None)
    canary.wait_for_async_invocations()
    item = canary.client("dynamodb").get_item(
        TableName=canary.resource_names()["CanaryTable"], Key={"pk": {"S": "async"}, "sk": {"S": "attempts"}}
    )["Item"]
    assert item["attempts"] == {"N": "1"}


def test_handler_output_is_captured_not_printed(canary: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    canary.invoke("EchoFunction", {"n": 1})
    assert "echo received" not in capsys.readouterr().out
    lines = [(line.function, line.stream, line.text) for line in canary.lambda_logs]
    assert ("EchoFunction", "stdout", 'echo received {"n": 1}') in lines
    assert ("EchoFunction", "logging", "[WARNING] echo.handler: echo invocation 1") in lines


def test_powertools_logger_output_is_captured_in_every_stack(local_stack_factory: LocalStackFactory) -> None:
    for _ in range(2):  # the second stack reuses the Powertools handler the first one's module created
        stack = local_stack_factory(CANARY_TEMPLATE)
        stack.invoke("EchoFunction", {})
        assert '"message":"echo via powertools"' in stack.lambda_log_text("EchoFunction")
        stack.stop()


def test_logger_created_before_the_stack_is_captured_too(
    local_stack_factory: LocalStackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    console_logger = logging.getLogger("canary.console")
    console_logger.addHandler(logging.StreamHandler(sys.stdout))  # bound to the console, like Powertools'
    console_logger.setLevel(logging.INFO)
    console_logger.propagate = False
    try:
        stack = local_stack_factory(CANARY_TEMPLATE)
        stack.invoke("FailFunction", {"error": "none", "log": "canary.console"})
        assert "fail handler logs to canary.console" in stack.lambda_log_text("FailFunction")
        assert "fail handler logs" not in capsys.readouterr().out
    finally:
        console_logger.handlers.clear()


def test_call_that_overruns_its_timeout_is_reported_as_timed_out(canary: LocalStack) -> None:
    result = canary.invoke("SlowFunction", {"seconds": 1.1})
    assert (result.function_error, result.payload["errorType"]) == ("Unhandled", "Sandbox.Timedout")
    assert result.payload["errorMessage"].endswith("Task timed out after 1.00 seconds")


def test_log_tail_is_returned_like_lambda_log_type_tail(canary: LocalStack) -> None:
    assert 'echo received {"n": 2}' in canary.invoke("EchoFunction", {"n": 2}).log


def test_uncaught_traceback_goes_to_the_log(canary: LocalStack) -> None:
    canary.invoke("FailFunction", {"error": "other"})
    errors = canary.lambda_log_text("FailFunction")
    assert "[ERROR] OtherError: something else went wrong" in errors
    assert "Traceback (most recent call last):" in errors


def test_handler_log_file_is_written(tmp_path: Path, local_stack_factory: LocalStackFactory) -> None:
    log_path = tmp_path / "handlers.log"
    stack = local_stack_factory(CANARY_TEMPLATE, log_path=log_path)
    stack.invoke("EchoFunction", {"n": 3})
    text = log_path.read_text()
    assert "START RequestId" in text
    assert 'echo received {"n": 3}' in text


def test_module_state_lasts_one_stack(local_stack_factory: LocalStackFactory) -> None:
    first = local_stack_factory(CANARY_TEMPLATE)
    first.invoke("EchoFunction", {})
    assert first.invoke("EchoFunction", {}).payload["invocations"] == 2
    first.stop()
    second = local_stack_factory(CANARY_TEMPLATE)
    assert second.invoke("EchoFunction", {}).payload["invocations"] == 1


def test_core_caches_are_reset_when_a_stack_starts_and_stops(
    monkeypatch: pytest.MonkeyPatch, local_stack_factory: LocalStackFactory
) -> None:
    calls: list[str] = []
    wiring = types.ModuleType("crmsync.wiring")
    wiring.reset_caches = lambda: calls.append("reset")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "crmsync.wiring", wiring)
    stack = local_stack_factory(CANARY_TEMPLATE)
    assert calls == ["reset"]
    stack.stop()
    assert calls == ["reset", "reset"]


# ------------------------------------------------------------------------------------------------ SQS


def _send(stack: LocalStack, *bodies: str) -> None:
    for body in bodies:
        stack.client("sqs").send_message(QueueUrl=stack.resource_names()["InboxQueue"], MessageBody=body)


def _visible(stack: LocalStack, queue: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resource_names()[queue], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_sending_to_a_mapped_queue_does_not_invoke_inline(canary: LocalStack) -> None:
    _send(canary, "one")
    assert canary.lambda_logs == []
    assert _visible(canary, "InboxQueue") == 1


def test_drain_delivers_batches_of_the_mapping_batch_size(canary: LocalStack) -> None:
    _send(canary, *[f"message {n}" for n in range(7)])
    result = canary.drain_queue("InboxQueue")
    assert (result.batches, result.delivered, result.succeeded) == (2, 7, 7)
    assert _visible(canary, "InboxQueue") == 0


def test_drain_keeps_only_the_batch_item_failures(canary: LocalStack) -> None:
    _send(canary, "one", "please fail", "three")
    result = canary.drain_queue("InboxQueue")
    assert (result.succeeded, result.failed) == (2, 1)
    remaining = canary.client("sqs").receive_message(QueueUrl=canary.resource_names()["InboxQueue"])["Messages"]
    assert [message["Body"] for message in remaining] == ["please fail"]


def test_sqs_event_records_have_the_lambda_shape(canary: LocalStack) -> None:
    _send(canary, "shape")
    canary.drain_queue("InboxQueue")
    item = canary.client("dynamodb").query(
        TableName=canary.resource_names()["CanaryTable"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "processed"}},
    )["Items"][0]
    assert item["body"] == {"S": "shape"}
    assert "batch of 1, 0 failed" in canary.lambda_log_text("BatchFunction")


def test_failed_messages_reach_the_dead_letter_queue_after_max_receive_count(canary: LocalStack) -> None:
    _send(canary, "please fail")
    canary.drain_queue("InboxQueue")
    canary.drain_queue("InboxQueue")
    assert canary.drain_queue("InboxQueue").delivered == 0
    assert _visible(canary, "InboxDeadLetterQueue") == 1


def test_event_source_mapping_is_listed_as_enabled(canary: LocalStack) -> None:
    mappings = canary.client("lambda").list_event_source_mappings(
        FunctionName=canary.resource_names()["BatchFunction"]
    )["EventSourceMappings"]
    assert [(m["State"], m["BatchSize"], m["FunctionResponseTypes"]) for m in mappings] == [
        ("Enabled", 5, ["ReportBatchItemFailures"])
    ]


def test_schedule_events_create_a_rule_and_a_schedule(canary: LocalStack) -> None:
    names = canary.resource_names()
    rule = canary.client("events").describe_rule(Name=names["BatchFunctionNightly"])
    assert rule["ScheduleExpression"] == "rate(1 day)"
    targets = canary.client("events").list_targets_by_rule(Rule=names["BatchFunctionNightly"])["Targets"]
    assert [(t["Arn"], t["Input"]) for t in targets] == [
        (canary.resources["BatchFunction"]["arn"], '{"source": "nightly"}')
    ]
    schedule = canary.client("scheduler").get_schedule(Name=names["BatchFunctionHourly"])
    assert schedule["Target"]["Arn"] == canary.resources["BatchFunction"]["arn"]


# ------------------------------------------------------------------------------------------------ time and lifecycle


def test_time_scale_shortens_wait_states(local_stack_factory: LocalStackFactory) -> None:
    stack = local_stack_factory(CANARY_TEMPLATE, time_scale=0.01)
    started = time.monotonic()
    assert stack.run_execution("ShortWaitMachine", {}).succeeded
    assert 0.4 <= time.monotonic() - started < 5  # 50 s at 1/100


def test_stop_restores_moto_and_the_process(local_stack_factory: LocalStackFactory) -> None:
    original_invoke, original_wait = LambdaSimpleBackend.invoke, WaitFunction._wait_interval
    original_transact = DynamoDBBackend.transact_write_items
    original_time = retrier_decl.time
    original_client_builder = lambda_eval_utils.boto_client_for
    environment = dict(os.environ)
    stack = local_stack_factory(CANARY_TEMPLATE)
    assert LambdaSimpleBackend.invoke is not original_invoke
    stack.serve()
    stack.stop()
    assert LambdaSimpleBackend.invoke is original_invoke
    assert WaitFunction._wait_interval is original_wait
    assert retrier_decl.time is original_time
    assert lambda_eval_utils.boto_client_for is original_client_builder
    assert DynamoDBBackend.transact_write_items is original_transact
    assert dict(os.environ) == environment
    assert type(sys.stdout).__name__ != "_RouterStream"


def test_serving_a_started_stack_shares_its_state(local_stack_factory: LocalStackFactory) -> None:
    stack = local_stack_factory(CANARY_TEMPLATE)
    table = stack.resource_names()["CanaryTable"]
    stack.client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "before"}, "sk": {"S": "serve"}})
    endpoint = stack.serve()
    remote = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert remote.scan(TableName=table)["Count"] == 1


def test_stop_ends_executions_and_waits_for_the_handler_in_flight(local_stack_factory: LocalStackFactory) -> None:
    stack = local_stack_factory(CANARY_TEMPLATE)
    stack.start_execution("SlowMachine", {"seconds": 0.5})
    deadline = time.monotonic() + 10
    while "slow handler sleeps" not in stack.lambda_log_text("SlowFunction") and time.monotonic() < deadline:
        time.sleep(0.01)
    stack.stop()
    assert "slow handler woke" in stack.lambda_log_text("SlowFunction")


def test_step_functions_build_no_client_while_a_handler_environment_is_half_swapped(canary: LocalStack) -> None:
    halfway, release, built = threading.Event(), threading.Event(), threading.Event()

    class SwappedSlowly(dict[str, str | None]):
        def items(self) -> Any:
            yield "CRMSYNC_SWAP_FIRST", "1"
            halfway.set()
            release.wait(10)
            yield "CRMSYNC_SWAP_SECOND", "2"

    def build() -> None:  # as a Task of another execution does before it invokes its function
        lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda")
        built.set()

    swapper = threading.Thread(target=local_runtime._swap_environment, args=(SwappedSlowly(),))
    swapper.start()
    try:
        assert halfway.wait(10)
        builder = threading.Thread(target=build)
        builder.start()
        assert not built.wait(0.5), "a client was built while the environment was half swapped"
    finally:
        release.set()
        swapper.join(10)
        for name in ("CRMSYNC_SWAP_FIRST", "CRMSYNC_SWAP_SECOND"):
            os.environ.pop(name, None)
    assert built.wait(30)


def test_only_one_stack_runs_per_process(canary: LocalStack, local_stack_factory: LocalStackFactory) -> None:
    with pytest.raises(StackError, match="another LocalStack is running"):
        local_stack_factory(CANARY_TEMPLATE)
    assert canary.invoke("EchoFunction", {}).function_error is None
