"""`crmsync logs RUN` on AWS: the lines that carry the run's id, from every function log group of the stack."""

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from crmsync.services.insight import LOCAL_LOG_VARIABLE, run_logs

RUN = "sf-contacts-manual-20261207T100000Z-4f2a9c"


@pytest.fixture
def logs(monkeypatch):
    monkeypatch.delenv(LOCAL_LOG_VARIABLE, raising=False)
    with mock_aws():
        client = boto3.client("logs", region_name="us-east-1")
        yield client


def put(client, group: str, *messages: str) -> None:
    client.create_log_group(logGroupName=group)
    client.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    client.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
    )


def test_the_lines_of_one_run_come_from_the_stack_function_log_groups(logs):
    put(logs, "/crmsync/crmsync/import-start", f'{{"message": "import run started", "run_id": "{RUN}"}}')
    put(logs, "/crmsync/crmsync/import-page", '{"message": "import page applied", "run_id": "another-run"}')
    put(logs, "/crmsync/other-stack/import-page", f'{{"message": "not this stack", "run_id": "{RUN}"}}')
    operator = SimpleNamespace(names=SimpleNamespace(stack="crmsync"), aws=SimpleNamespace(client=lambda _: logs))
    started = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    lines = list(run_logs(operator, {"runId": RUN, "startedAt": started}))
    assert len(lines) == 1
    assert "[import-start]" in lines[0]
    assert "import run started" in lines[0]
