"""Server mode: the stack behind moto's ThreadedMotoServer, for other processes and the AWS CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient

from crmsync_local.stack import LocalStack

CANARY_TEMPLATE = Path(__file__).parent / "canary" / "template.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The canary stack started in server mode (no in-process mock, resources created over HTTP).

    Shared by the module's tests, which touch distinct keys.
    """
    log_path = tmp_path_factory.mktemp("served") / "local-stack.log"
    stack = LocalStack(CANARY_TEMPLATE, time_scale=0, log_path=log_path)
    try:
        stack.serve()
        yield stack
    finally:
        stack.stop()


def remote_client(endpoint_url: str, service: str) -> BaseClient:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_served_stack_answers_a_boto3_client_at_the_endpoint(served: LocalStack) -> None:
    assert served.endpoint_url is not None
    tables = remote_client(served.endpoint_url, "dynamodb").list_tables()["TableNames"]
    assert tables == [served.resource_names()["CanaryTable"]]
    machines = remote_client(served.endpoint_url, "stepfunctions").list_state_machines()["stateMachines"]
    assert {m["stateMachineArn"] for m in machines} >= {served.resource_names()["RetryMachine"]}


def test_server_mode_points_moto_port_at_the_server(served: LocalStack) -> None:
    assert served.endpoint_url == f"http://127.0.0.1:{os.environ['MOTO_PORT']}"


def test_server_mode_runs_state_machines_with_in_process_handlers(served: LocalStack) -> None:
    result = served.run_execution("RetryMachine", {"key": "served", "succeedOnAttempt": 2})
    assert result.output == {"attempts": 2}


def test_server_mode_service_integrations_reach_the_server(served: LocalStack) -> None:
    result = served.run_execution("DynamoMachine", {"pk": "served", "name": "Ada"})
    assert result.output["got"] == {"name": "Ada"}


def test_server_mode_handlers_get_the_endpoint(served: LocalStack) -> None:
    environment = served.invoke("EchoFunction", {}).payload["environment"]
    assert environment["AWS_ENDPOINT_URL"] == served.endpoint_url


def test_served_stack_is_reachable_from_another_process(served: LocalStack) -> None:
    script = "import boto3, json; print(json.dumps(boto3.client('sqs').list_queues()['QueueUrls']))"
    environment = {**os.environ, **served.client_environment()}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        environment.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=60, check=True
    )
    queue_names = {url.rsplit("/", 1)[-1] for url in json.loads(completed.stdout)}
    expected = {served.resource_names()[q].rsplit("/", 1)[-1] for q in ("InboxQueue", "OutboxQueue")}
    assert expected <= queue_names
