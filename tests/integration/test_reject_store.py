"""The reject store (SPEC R1, DESIGN §5) on the local stack's DynamoDB and S3: rejects stay until replayed,
purged or past their retention, and reading them changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crmsync.config import load_config
from crmsync.domain.records import Reject
from crmsync.services.operations import Operator
from crmsync.stores.rejects import RejectContext, RejectStore

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = RejectContext("sf-contacts", "run-1", "import", "crm-to-marketing")
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def operator(local_stack, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_stack.region)
    return Operator("crmsync")


@pytest.fixture
def clock():
    return Clock(T0)


@pytest.fixture
def store(operator, clock) -> RejectStore:
    base = operator.container.reject_store
    return RejectStore(base.client, base.table, base.s3, base.bucket, retention_days=30, clock=clock)


def refused(crm_id: str, symbol: str = "STRING_TOO_LONG", **record) -> Reject:
    return Reject(symbol, f"{symbol} on {crm_id}", {"Id": crm_id, **record}, crm_id=crm_id, fields=("LastName",))


def test_reading_rejects_many_times_changes_nothing(store):
    store.put([refused("003A"), refused("003B"), refused("003C")], CONTEXT)
    for _ in range(12):
        assert [r["crmId"] for r in store.rejects("sf-contacts")] == ["003A", "003B", "003C"]
    assert store.count("sf-contacts") == {"STRING_TOO_LONG": 3}


def test_storing_the_same_rejects_again_keeps_one_copy(store):
    first = store.put([refused("003A"), refused("003B")], CONTEXT)
    again = store.put([refused("003A"), refused("003B")], CONTEXT)
    assert first == again
    assert len(store.rejects("sf-contacts")) == 2


def test_records_without_any_id_are_kept_apart(store):
    no_id = [Reject("MISSING_ID", "no Id", {"LastName": name}) for name in ("A", "B")]
    store.put(no_id, CONTEXT)
    assert sorted(r["record"]["LastName"] for r in store.rejects("sf-contacts")) == ["A", "B"]


def test_a_reject_keeps_its_code_message_fields_and_record(store):
    store.put([refused("003A", LastName="L" * 81, Score=1.5, Empty="")], CONTEXT)
    (reject,) = store.rejects("sf-contacts")
    assert reject["errorSymbol"] == "STRING_TOO_LONG"
    assert reject["errorMessage"] == "STRING_TOO_LONG on 003A"
    assert reject["fields"] == ["LastName"]
    assert reject["record"] == {"Id": "003A", "LastName": "L" * 81, "Score": 1.5, "Empty": ""}
    assert (reject["runId"], reject["operation"], reject["createdAt"]) == (
        "run-1",
        "import",
        "2026-12-01T08:00:00+00:00",
    )


def test_a_record_too_large_for_an_item_is_kept_in_s3_and_read_back(store, operator):
    store.put([refused("003A", Description="x" * 500_000)], CONTEXT)
    (reject,) = store.rejects("sf-contacts")
    assert reject["recordS3Uri"].startswith(f"s3://{operator.container.settings.data_bucket}/rejects/sf-contacts/")
    assert len(reject["record"]["Description"]) == 500_000
    assert store.rejects("sf-contacts", records=False)[0].get("record") is None


def test_rejects_past_their_retention_are_gone(store, clock):
    store.put([refused("003A")], CONTEXT)
    clock.now = T0 + 29 * 86_400
    store.put([refused("003B")], RejectContext("sf-contacts", "run-2", "import", "crm-to-marketing"))
    clock.now = T0 + 30 * 86_400 + 1
    assert [r["crmId"] for r in store.rejects("sf-contacts")] == ["003B"]
    assert store.count("sf-contacts") == {"STRING_TOO_LONG": 1}


def test_retention_zero_keeps_rejects_until_purged(store, clock):
    keeping = RejectStore(store.client, store.table, retention_days=0, clock=clock)
    keeping.put([refused("003A")], CONTEXT)
    clock.now = T0 + 3650 * 86_400
    assert len(keeping.rejects("sf-contacts")) == 1


def test_purge_by_run_by_date_or_all(store, clock):
    store.put([refused("003A")], CONTEXT)
    clock.now = T0 + 86_400
    store.put([refused("003B"), refused("003C")], RejectContext("sf-contacts", "run-2", "import", "x"))
    store.put([refused("003Z")], RejectContext("other-sync", "run-9", "import", "x"))
    assert store.purge("sf-contacts", before=datetime(2026, 12, 2, tzinfo=UTC)) == 1
    assert store.purge("sf-contacts", run_id="run-2") == 2
    assert store.rejects("sf-contacts") == []
    assert len(store.rejects("other-sync")) == 1


def test_deleting_an_offloaded_reject_deletes_its_record_in_s3(store, operator):
    (rid,) = store.put([refused("003A", Description="x" * 300_000)], CONTEXT)
    uri = store.rejects("sf-contacts", records=False)[0]["recordS3Uri"]
    assert store.delete("sf-contacts", [rid]) == 1
    bucket, _, key = uri[len("s3://") :].partition("/")
    assert operator.container.aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") == 0


def test_routing_stores_the_rejects_and_sends_one_notice_without_records(operator):
    container = operator.container
    routed = container.rejects.route([refused("003A"), refused("003B")], CONTEXT)
    assert routed == 2
    messages = container.aws.client("sqs").receive_message(
        QueueUrl=container.settings.rejects_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    (notice,) = [json.loads(m["Body"]) for m in messages]
    assert (notice["kind"], notice["syncId"], notice["count"]) == ("rejects-stored", "sf-contacts", 2)
    assert "record" not in notice
    assert len(container.reject_store.rejects("sf-contacts")) == 2


def test_rejects_kept_in_the_queue_by_an_earlier_version_move_to_the_store_on_first_use(operator):
    operator.apply(load_config((ROOT / "examples/syncs.yaml").read_text()))  # rejects are listed for a known sync
    sqs, url = operator.container.aws.client("sqs"), operator.container.settings.rejects_queue_url
    legacy = [
        {
            **refused(f"003{i}").as_message(
                sync_id="sf-contacts", run_id="old", operation="import", direction="x"
            ),
            "rejectId": f"old{i}",
        }
        for i in range(12)
    ]
    for message in legacy:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "rejects-stored", "syncId": "sf-contacts"}))

    assert len(operator.rejects("sf-contacts")) == 12
    assert len(Operator("crmsync").rejects("sf-contacts")) == 12
    left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["kind"] for m in left] == ["rejects-stored"]


def test_the_oldest_waiting_reject_is_the_first_of_the_age_index_past_those_expired(store, clock):
    assert store.oldest("sf-contacts") is None
    store.put([refused("003A")], CONTEXT)
    clock.now += 3600
    store.put([refused("003B")], RejectContext("sf-contacts", "run-2", "import", "crm-to-marketing"))
    assert store.oldest("sf-contacts") == datetime.fromtimestamp(T0, UTC)
    clock.now = T0 + 30 * 86_400 + 1  # the first reject is past its 30 days; time to live has not run yet
    assert store.oldest("sf-contacts") == datetime.fromtimestamp(T0 + 3600, UTC)
    store.purge("sf-contacts", run_id="run-2")
    assert store.oldest("sf-contacts") is None


def test_the_reject_age_measure_gives_every_applied_sync_the_age_of_its_oldest_reject(operator):
    from crmsync.services.rejects import ScheduledEvent, measure_reject_ages

    operator.apply(load_config((ROOT / "examples/syncs.yaml").read_text()))
    store = operator.container.reject_store
    two_hours_ago = datetime.now(UTC).timestamp() - 7200
    store.put_messages(
        [{"syncId": "sf-contacts", "rejectId": "r1", "errorSymbol": "STRING_TOO_LONG", "record": {}}],
        created_at=[two_hours_ago],
    )
    store.put([refused("003B")], CONTEXT)  # stored now
    gauge = measure_reject_ages(ScheduledEvent(), operator.container)
    assert (gauge.name, gauge.unit) == ("OldestRejectAge", "Seconds")
    assert set(gauge.values) == {s["id"] for s in operator.container.definitions.list_syncs()}
    assert 7200 <= gauge.values["sf-contacts"] < 7300
    assert {v for k, v in gauge.values.items() if k != "sf-contacts"} == {0.0}
