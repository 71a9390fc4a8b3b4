"""Rejects stay where reading does not consume them (SPEC R1, DESIGN §5): `crmsync rejects list/count/
export` change nothing however often they run, `rejects dlq` shows and redrives the dead-letter queue,
`rejects purge` removes, and `rejects replay` sends them through every operation again."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from crmsync_local.cli import app

from .conftest import T0

pytestmark = pytest.mark.slow

SYNC = "sf-contacts"
DELETE = "sf-contacts-delete"


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result


def with_three_rejects(sync_env):
    sync_env.seed_contacts(2)
    ids = sync_env.seed_contacts(3, prefix="long", LastName="L" * 81, start=T0 + timedelta(hours=1))
    assert sync_env.run()["rejected"] == 3
    return ids


def test_listing_the_rejects_eleven_times_keeps_every_one_and_sends_none_to_the_dead_letter_queue(sync_env):
    ids = with_three_rejects(sync_env)
    for _ in range(11):
        listed = cli("rejects", "list", SYNC, "--json")
        assert listed.exit_code == 0, listed.output
        assert sorted(r["crmId"] for r in json.loads(listed.stdout)) == sorted(ids)
    exported = cli("rejects", "export", SYNC)
    assert exported.stdout.count("STRING_TOO_LONG") == 3
    counted = json.loads(cli("rejects", "count", SYNC, "--json").stdout)
    assert (counted["total"], counted["by_symbol"]) == (3, {"STRING_TOO_LONG": 3})
    assert json.loads(cli("rejects", "dlq", SYNC, "--json").stdout)["messages"] == []


def test_the_dead_letter_queue_is_shown_and_redriven_into_the_store(sync_env):
    sqs = sync_env.stack.client("sqs")
    dlq = sqs.get_queue_url(QueueName="crmsync-rejects-dlq")["QueueUrl"]
    lost = {
        "syncId": SYNC,
        "runId": "an-old-run",
        "operation": "import",
        "direction": "crm-to-marketing",
        "crmId": "003000000000001AAA",
        "errorSymbol": "STRING_TOO_LONG",
        "errorMessage": "Last Name: data value too large",
        "fields": ["LastName"],
        "record": {"Id": "003000000000001AAA", "LastName": "L" * 81},
        "rejectId": "lost1",
    }
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(lost))
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({**lost, "syncId": "another-sync", "rejectId": "x"}))

    shown = json.loads(cli("rejects", "dlq", SYNC, "--json").stdout)
    assert [(m["kind"], m["crmId"]) for m in shown["messages"]] == [("reject", "003000000000001AAA")]
    assert sync_env.operator.rejects(SYNC) == []

    redriven = json.loads(cli("rejects", "dlq", SYNC, "--redrive", "--json").stdout)
    assert redriven["stored"] == 1
    (stored,) = sync_env.operator.rejects(SYNC)
    assert (stored["rejectId"], stored["record"]["LastName"]) == ("lost1", "L" * 81)
    assert json.loads(cli("rejects", "dlq", SYNC, "--json").stdout)["messages"] == []
    assert (
        json.loads(cli("rejects", "dlq", "another-sync", "--json").stdout)["messages"][0]["runId"] == "an-old-run"
    )


def test_purge_removes_the_rejects_of_a_run(sync_env):
    with_three_rejects(sync_env)
    (run_id,) = {r["runId"] for r in sync_env.operator.rejects(SYNC)}
    assert cli("rejects", "purge", SYNC).exit_code == 2
    purged = cli("rejects", "purge", SYNC, "--run", run_id, "--json")
    assert json.loads(purged.stdout) == {"sync_id": SYNC, "purged": 3}
    assert sync_env.operator.rejects(SYNC) == []


def test_an_import_reject_is_replayed_by_reading_its_crm_id_again(sync_env):
    ids = with_three_rejects(sync_env)
    fixed = T0 + timedelta(hours=3)
    sync_env.crm.control.seed(
        "Contact", [{"Id": ids[0], "LastName": "Fixed", "SystemModstamp": fixed.isoformat()}]
    )
    replayed = cli("rejects", "replay", SYNC, "--json")
    assert replayed.exit_code == 0, replayed.output
    report = json.loads(replayed.stdout)
    assert (report["operation"], report["records"], report["applied"], report["rejected_again"]) == (
        "import",
        3,
        1,
        2,
    )
    assert report["consumed"] == 3
    assert report["summary"]["created"] == 1
    assert "Fixed" in {p.get("attrs", {}).get("lastName") for p in sync_env.profiles()} | {
        p.get("lastName") for p in sync_env.profiles()
    }
    left = sync_env.operator.rejects(SYNC)
    assert sorted(r["crmId"] for r in left) == sorted(ids[1:])
    assert {r["runId"] for r in left} == {report["summary"]["run_id"]}


def test_a_deletion_reject_is_retried_and_replaced_when_refused_again(sync_env):
    sync_env.seed_contacts(1)
    assert sync_env.run()["created"] == 1
    (lead,) = sync_env.crm.control.seed("Lead", [{"LastName": "Keep", "Company": "Acme"}])
    assert sync_env.run(DELETE, population={"ids": [lead]})["rejected"] == 1
    (before,) = sync_env.operator.rejects(DELETE)
    report = json.loads(cli("rejects", "replay", DELETE, "--json").stdout)
    assert (report["operation"], report["records"], report["rejected_again"], report["consumed"]) == (
        "delete",
        1,
        1,
        1,
    )
    (after,) = sync_env.operator.rejects(DELETE)
    assert after["runId"] == report["summary"]["run_id"] != before["runId"]
    assert not next(r for r in sync_env.crm.control.records("Lead") if r["Id"] == lead).get("IsDeleted")


# ------------------------------------------------------------------------------------- poison records
def test_a_record_too_large_to_store_is_rejected_and_the_rest_of_its_page_imported(sync_env):
    good = sync_env.seed_contacts(3)
    (poison,) = sync_env.seed_contacts(1, prefix="big", FirstName="x" * 2_000_000, start=T0 + timedelta(minutes=1))
    summary = sync_env.run()
    assert (summary["status"], summary["created"], summary["rejected"]) == ("SUCCEEDED", 3, 1)
    assert summary["watermark_moved"] is True
    assert {p["externalId"] for p in sync_env.profiles()} == set(good)
    (reject,) = sync_env.operator.rejects(SYNC)
    assert (reject["errorSymbol"], reject["crmId"], reject["fields"]) == (
        "RECORD_TOO_LARGE",
        poison,
        ["firstName"],
    )
    assert len(reject["record"]["FirstName"]) == 2_000_000
    assert sync_env.run()["status"] == "SUCCEEDED"

    fixed = T0 + timedelta(hours=2)
    sync_env.crm.control.seed("Contact", [{"Id": poison, "FirstName": "Ana", "SystemModstamp": fixed.isoformat()}])
    report = json.loads(cli("rejects", "replay", SYNC, "--json").stdout)
    assert (report["applied"], report["consumed"]) == (1, 1)
    assert poison in {p["externalId"] for p in sync_env.profiles()}
    assert sync_env.operator.rejects(SYNC) == []
