"""What an operator sees of syncs and runs, against `crmsync local up --seed` in its own process: the
documented workflow (apply examples/syncs.yaml, run its syncs), `status`, `runs`, `runs show`, `logs`,
and the exit codes of refused runs, unknown ids and options that do not apply."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from crmsync.config import load_config
from tests.e2e.test_cli import EXAMPLE, crmsync, serve_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One seeded local stack for the module, with examples/syncs.yaml applied."""
    with serve_local(tmp_path_factory.mktemp("local"), "--seed", "--contacts", "40") as (_, environment):
        crmsync("config", "apply", str(EXAMPLE), env=environment, check=True)
        yield environment


def run(sync_id: str, env: dict[str, str], *options: str) -> dict:
    return json.loads(crmsync("run", sync_id, "--wait", "--json", *options, env=env, check=True).stdout)


def test_the_documented_export_runs_against_a_seeded_local_stack(env):
    summary = run("sf-people-export", env)
    assert summary["status"] == "SUCCEEDED"


def test_status_json_lists_every_applied_sync_with_its_last_run(env):
    summary = run("sf-subscriptions", env)
    result = crmsync("status", "--json", env=env)
    statuses = {s["sync_id"]: s for s in json.loads(result.stdout)}
    assert set(statuses) == {s.id for s in load_config(EXAMPLE.read_text(), source=str(EXAMPLE)).syncs}
    last = statuses["sf-subscriptions"]["last_run"]
    assert (last["run_id"], last["status"], last["counts"]["read"]) == (
        summary["run_id"],
        "SUCCEEDED",
        summary["read"],
    )
    assert statuses["sf-subscriptions"]["watermark"]["option"] == "LASTIMPORT_acme_sf-subscriptions"


def test_status_exits_1_when_a_sync_last_run_failed(env):
    failed = crmsync("run", "sf-contacts-deleted", "--wait", "--json", "--from", "2020-01-01T00:00:00Z", env=env)
    assert json.loads(failed.stdout)["status"] == "FAILED"
    result = crmsync("status", "--json", env=env)
    assert result.returncode == 1
    statuses = {s["sync_id"]: s for s in json.loads(result.stdout)}
    assert statuses["sf-contacts-deleted"]["last_run"]["error"]["type"] == "DeletionPeriodRefused"


def test_runs_show_details_a_run_with_the_time_of_each_step(env):
    summary = run("dyn-subscriptions", env)
    short = summary["run_id"][-6:]
    shown = json.loads(crmsync("runs", "show", short, "--json", env=env, check=True).stdout)
    assert shown["run"]["runId"] == summary["run_id"]
    assert [s["state"] for s in shown["steps"]][:1] == ["StartRun"]
    assert "ImportPage" in {s["state"] for s in shown["steps"]}
    assert shown["logs"].endswith("(the local stack's log file)")
    text = crmsync("runs", "show", short, env=env, check=True).stdout
    assert "time per step" in text
    assert "change tracking" in text


def test_logs_prints_the_lines_of_one_run_from_the_local_log_file(env):
    summary = run("sf-contacts", env)
    lines = crmsync("logs", summary["run_id"], env=env, check=True).stdout.splitlines()
    assert lines
    assert all(summary["run_id"] in line for line in lines)
    assert any("import run started" in line for line in lines)
    assert any("import run finished" in line for line in lines)


def test_a_run_item_records_what_its_pages_did(env):
    summary = run("dyn-contacts", env)
    record = json.loads(crmsync("runs", "dyn-contacts", "--json", env=env, check=True).stdout)[0]
    assert record["runId"] == summary["run_id"]
    assert (record["progress"]["read"], record["progress"]["steps"]) == (summary["read"], summary["pages"])


def test_runs_fit_80_columns(env):
    run("sf-contacts-compare", env)
    text = crmsync("runs", "sf-contacts-compare", env={**env, "COLUMNS": "80"}, check=True).stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "SUCCEEDED" in text


def test_run_without_wait_reports_a_started_run_once_the_start_step_took_the_lease(env):
    result = crmsync("run", "dyn-contacts-deleted", "--json", env=env)
    assert result.returncode == 0, result.stderr
    started = json.loads(result.stdout)
    assert started["status"] in ("RUNNING", "SUCCEEDED")  # a small run may end before the first poll
    recorded = json.loads(crmsync("runs", "dyn-contacts-deleted", "--json", env=env, check=True).stdout)
    assert started["run_id"] in {r["runId"] for r in recorded}


def test_run_without_wait_exits_3_when_another_run_holds_the_lease(env):
    table = boto3.client(
        "dynamodb",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    lock = {"pk": {"S": "LOCK#sf-contacts-delete"}, "sk": {"S": "LOCK"}}
    table.put_item(
        TableName="crmsync-runs",
        Item={**lock, "holder": {"S": "another-run"}, "expiresAt": {"N": str(int(time.time()) + 600)}},
    )
    try:
        result = crmsync("run", "sf-contacts-delete", env=env)
    finally:
        table.delete_item(TableName="crmsync-runs", Key=lock)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "REFUSED" in result.stdout


@pytest.mark.parametrize(
    "command", [("runs", "nope"), ("rejects", "list", "nope"), ("watermark", "get", "nope"), ("run", "nope")]
)
def test_an_unknown_sync_exits_2(env, command):
    result = crmsync(*command, env=env)
    assert result.returncode == 2
    assert "no sync named 'nope'" in result.stderr


def test_an_unknown_run_exits_2(env):
    result = crmsync("runs", "show", "zzzzzz", env=env)
    assert result.returncode == 2
    assert "no run 'zzzzzz'" in result.stderr


def test_watermark_set_refuses_a_time_after_the_crm_clock(env):
    result = crmsync("watermark", "set", "dyn-contacts", "2999/01/01 00:00:00", env=env)
    assert result.returncode == 2
    assert "is after the CRM's clock" in result.stderr


def test_watermark_set_of_an_export_refuses_a_time_after_this_machines_clock(env):
    # An export's window is the marketing side's changes, stamped by this machine (the registry's window_clock).
    result = crmsync("watermark", "set", "sf-people-export", "2999/01/01 00:00:00", env=env)
    assert result.returncode == 2
    assert "is after this machine's clock" in result.stderr


def test_watermark_set_accepts_iso_8601(env):
    result = crmsync("watermark", "set", "sf-subscriptions", "2026-01-01T09:00:00+01:00", env=env, check=True)
    assert result.stdout.strip() == "LASTIMPORT_acme_sf-subscriptions = 2026/01/01 08:00:00"


@pytest.mark.parametrize(
    ("sync_id", "option", "message"),
    [
        ("sf-contacts-deleted", ("--ids", "003000000000001"), "takes a period (--from/--to), not ids"),
        ("dyn-contacts-deleted", ("--from", "2026-11-01"), "a period (--from/--to) is given to period mode only"),
    ],
)
def test_an_option_the_sync_does_not_take_is_refused_before_anything_starts(env, sync_id, option, message):
    result = crmsync("run", sync_id, *option, env=env)
    assert result.returncode == 2
    assert message in result.stderr
