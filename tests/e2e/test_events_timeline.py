"""E-mail events onto the CRM timeline through the real template on the local stack (SPEC M1-M4).

Events go onto the template's events queue and are delivered to the push function the way Lambda's
poller does it (`drain_queue`: the event-source mapping's batch size, partial batch responses). What
lands in the CRM is read back through the emulators' control API: Salesforce `Marketing_Event__c`
records, Dataverse `cr_marketingevent` activities and their timeline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.domain.events import activity_id
from crmsync.stores.profiles import ExportedProfile, ExportLink
from crmsync_local.marketing import marketing_profiles

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC).replace(microsecond=0)


def event(
    number: int, profile_id: str, kind: str = "open", *, at: datetime | None = None, **extra: Any
) -> dict[str, Any]:
    data = {
        "event_id": f"evt-{number:05d}",
        "type": kind,
        "profile_id": profile_id,
        "campaign_id": "CMP-7",
        "campaign_name": "Hiver / Winter",
        "delivery_id": f"DLV-{number % 3}",
        "delivery_name": "Première vague",
        "at": (at or NOW - timedelta(hours=1)).isoformat(),
        "mirror_page_url": f"https://marketing.example.com/mirror/{number}",
    }
    if kind == "click":
        data["url"] = f"https://shop.example.com/p/{number}"
    data.update(extra)
    return data


class EventsEnvironment:
    """One CRM behind an events sync of examples/syncs.yaml, with profiles linked to its contacts."""

    def __init__(self, env: Any, sync_id: str, connection: str, contact: str) -> None:
        self.env = env
        self.sync_id = sync_id
        self.connection = connection
        self.contact = contact
        self.stack = env.stack
        self.operator = env.operator
        self.control = env.crm.control
        # Only this CRM's events sync: the other one would wait for links its emulator never gets.
        config = env.config
        syncs = [
            s.model_copy(update={"enabled": False}) if s.operation == "events" and s.id != sync_id else s
            for s in config.syncs
        ]
        env.config = config.model_copy(update={"syncs": syncs})
        self.operator.apply(env.config)

    def linked_profiles(self, count: int) -> list[str]:
        profiles = marketing_profiles(self.env.container)
        ids = profiles.create_local_many([{"email": f"linked{i}@example.com"} for i in range(count)])
        return self.link([str(i) for i in ids])

    def link(self, profile_ids: list[str], prefix: str = "ev") -> list[str]:
        """Give each profile a new contact in the CRM, linked as an export would link it."""
        crm_ids = self.env.seed_contacts(len(profile_ids), prefix=prefix)
        links = [
            ExportedProfile(p, link=ExportLink(p, self.connection, self.contact, c))
            for p, c in zip(profile_ids, crm_ids, strict=True)
        ]
        marketing_profiles(self.env.container).record_exported("test-setup", links)
        self.crm_ids = dict(zip(profile_ids, crm_ids, strict=True))
        return profile_ids

    def unlinked_profile(self) -> str:
        return str(marketing_profiles(self.env.container).create_local({"email": "nobody@example.com"}))

    def send(self, events: list[dict[str, Any]]) -> None:
        result = self.operator.send_events([json.dumps(e) for e in events])
        assert result.sent == len(events)

    def deliver(self, *, passes: int = 1):
        results = [self.stack.drain_queue("EventsQueue") for _ in range(passes)]
        return results[-1]

    def configure(self, **changes: Any):
        config = self.env.config
        syncs = [
            type(s).model_validate({**s.model_dump(), **changes}) if s.id == self.sync_id else s
            for s in config.syncs
        ]
        self.env.config = config.model_copy(update={"syncs": syncs})
        return self.operator.apply(self.env.config)

    def queue_depth(self, logical_id: str = "EventsQueue") -> int:
        url = self.stack.resources[logical_id]["physical_id"]
        attributes = self.stack.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])[
            "Attributes"
        ]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def archived(self) -> list[dict[str, Any]]:
        s3 = self.stack.client("s3")
        bucket = self.env.container.settings.data_bucket
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="events/archive/").get("Contents", [])]
        lines = []
        for key in keys:
            lines += s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        return [json.loads(line) for line in lines]

    def rejects(self) -> list[dict[str, Any]]:
        return self.operator.rejects(self.sync_id)


class SalesforceEvents(EventsEnvironment):
    def delete_contact(self, crm_id: str) -> None:
        self.control.delete("Contact", crm_id)

    def timeline_records(self) -> list[dict[str, Any]]:
        return [r for r in self.control.records("Marketing_Event__c") if not r.get("IsDeleted")]

    def types(self) -> Counter[str]:
        return Counter(r["Event_Type__c"] for r in self.timeline_records())


class DynamicsEvents(EventsEnvironment):
    def delete_contact(self, crm_id: str) -> None:
        self.control.delete_record("contacts", crm_id)

    def timeline_records(self) -> list[dict[str, Any]]:
        return self.control.records("cr_marketingevents")

    def types(self) -> Counter[str]:
        return Counter(r["cr_eventtype"] for r in self.timeline_records())


@pytest.fixture
def sf_events(sync_env) -> SalesforceEvents:
    return SalesforceEvents(sync_env, "sf-email-events", "sf-prod", "Contact")


@pytest.fixture
def dyn_events(dynamics_env) -> DynamicsEvents:
    return DynamicsEvents(dynamics_env, "dyn-email-events", "dyn-prod", "contact")


@pytest.fixture(params=["salesforce", "dynamics"])
def events_env(request) -> EventsEnvironment:
    return request.getfixturevalue("sf_events" if request.param == "salesforce" else "dyn_events")


# -- exactly once --------------------------------------------------------------------------------------------
def test_each_event_lands_once_on_the_timeline_of_its_contact(events_env):
    profiles = events_env.linked_profiles(3)
    events_env.send(
        [event(n, profiles[n % 3], kind) for n, kind in enumerate(["send", "open", "click", "bounce"])]
    )
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (4, 0)
    assert events_env.types() == Counter({"send": 1, "open": 1, "click": 1, "bounce": 1})


def test_redelivery_of_the_same_events_creates_nothing_new(events_env):
    profiles = events_env.linked_profiles(2)
    batch = [event(n, profiles[n % 2]) for n in range(30)]
    events_env.send(batch)
    events_env.deliver()
    events_env.send(batch)  # the platform sends them again (a retry on its side, or SQS at-least-once)
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (30, 0)
    assert len(events_env.timeline_records()) == 30


def test_the_same_event_twice_in_one_batch_makes_one_record(events_env):
    profiles = events_env.linked_profiles(1)
    events_env.send([event(1, profiles[0]), event(2, profiles[0]), event(1, profiles[0])])
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (3, 0)
    assert sorted(events_env.types().elements()) == ["open", "open"]
    assert events_env.rejects() == []


def test_a_throttled_or_unavailable_crm_is_retried_with_nothing_lost(events_env):
    profiles = events_env.linked_profiles(2)
    events_env.send([event(n, profiles[n % 2]) for n in range(12)])
    if isinstance(events_env, SalesforceEvents):
        events_env.control.add_fault(r"composite/sobjects/Marketing_Event__c", status=503, times=None)
    else:
        events_env.control.add_fault(r"\$batch", status=429, times=None, headers={"Retry-After": "0"})
    first = events_env.deliver()
    assert (first.delivered, first.failed) == (12, 12)
    assert events_env.timeline_records() == []
    (events_env.control.clear_faults)()
    events_env.deliver()
    assert len(events_env.timeline_records()) == 12
    assert events_env.queue_depth() == 0


# -- switches and back-fill (SPEC M3, M4) ------------------------------------------------------------------------
def test_a_type_switched_off_pushes_nothing_but_is_archived(events_env):
    events_env.configure(types={"send": True, "open": False, "click": True, "bounce": True})
    profiles = events_env.linked_profiles(1)
    events_env.send([event(1, profiles[0], "open"), event(2, profiles[0], "send")])
    events_env.deliver()
    assert events_env.types() == Counter({"send": 1})
    assert sorted(e["event_id"] for e in events_env.archived()) == ["evt-00001", "evt-00002"]


def test_switching_a_type_on_back_fills_its_last_seven_days_once_and_not_older_events(events_env):
    events_env.configure(types={"send": True, "open": False, "click": True, "bounce": True})
    profiles = events_env.linked_profiles(1)
    events_env.send(
        [
            event(1, profiles[0], "open", at=NOW - timedelta(days=2)),
            event(2, profiles[0], "open", at=NOW - timedelta(days=6, hours=20)),
            event(3, profiles[0], "open", at=NOW - timedelta(days=9)),
            event(4, profiles[0], "send", at=NOW - timedelta(days=1)),
        ]
    )
    events_env.deliver()
    assert events_env.types() == Counter({"send": 1})

    changes = events_env.configure(types={"send": True, "open": True, "click": True, "bounce": True})
    backfill = next(c.backfill for c in changes if c.sync_id == events_env.sync_id)
    assert (backfill.types, backfill.sent) == (("open",), 2)
    events_env.deliver()
    assert events_env.types() == Counter({"send": 1, "open": 2})

    again = events_env.configure(types={"send": True, "open": True, "click": True, "bounce": True})
    assert next(c.backfill for c in again if c.sync_id == events_env.sync_id) is None
    assert events_env.queue_depth() == 0


def test_a_back_fill_by_hand_is_idempotent(events_env):
    profiles = events_env.linked_profiles(1)
    events_env.send([event(n, profiles[0], "send", at=NOW - timedelta(days=n)) for n in range(1, 5)])
    events_env.deliver()
    report = events_env.operator.backfill_events(events_env.sync_id, days=3)
    assert report.sent == 2
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (2, 0)
    assert len(events_env.timeline_records()) == 4
    assert len(events_env.archived()) == 4  # back-filled events are not archived twice


# -- what cannot be pushed -----------------------------------------------------------------------------------------
def test_an_unlinked_profile_is_retried_then_rejected(events_env):
    nobody = events_env.unlinked_profile()
    events_env.send([event(1, nobody, "send")])
    first = events_env.deliver()
    assert (first.delivered, first.failed) == (1, 1)
    assert events_env.rejects() == []
    events_env.configure(unlinked_retry_hours=0.0001)  # a retry window of 0.36 s...
    time.sleep(0.5)  # ...that the message has outlived, however fast the first delivery went
    second = events_env.deliver()
    assert (second.delivered, second.failed) == (1, 0)
    rejects = events_env.rejects()
    assert [(r["errorSymbol"], r["profileId"], r["record"]["event_id"]) for r in rejects] == [
        ("UNLINKED_PROFILE", nobody, "evt-00001")
    ]
    assert events_env.timeline_records() == []
    assert events_env.queue_depth() == 0


def test_a_refused_record_becomes_a_reject_and_is_not_delivered_again(events_env):
    profiles = events_env.linked_profiles(1)
    too_long = "https://shop.example.com/" + "x" * 600  # longer than the CRM's URL field
    events_env.send([event(1, profiles[0], "click", url=too_long), event(2, profiles[0], "open")])
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (2, 0)
    assert events_env.types() == Counter({"open": 1})
    rejects = events_env.rejects()
    assert len(rejects) == 1
    assert rejects[0]["record"]["event_id"] == "evt-00001"
    assert events_env.queue_depth() == 0


def test_an_event_for_a_contact_deleted_in_the_crm_becomes_a_reject_and_leaves_the_queue(events_env):
    """What `crmsync demo --contacts 400` once counted wrong: the profile keeps its link to the deleted
    record, the CRM refuses the activity (Salesforce ENTITY_IS_DELETED, Dataverse 0x80040217) and the event
    is a reject of its own, not a lost or endlessly redelivered message; the other events land."""
    profiles = events_env.linked_profiles(2)
    events_env.delete_contact(events_env.crm_ids[profiles[0]])
    events_env.send([event(1, profiles[0], "send"), event(2, profiles[1], "open")])
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (2, 0)
    assert events_env.types() == Counter({"open": 1})
    rejects = events_env.rejects()
    assert [(r["profileId"], r["record"]["event_id"]) for r in rejects] == [(profiles[0], "evt-00001")]
    assert rejects[0]["errorSymbol"] in {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "0x80040217"}
    assert events_env.queue_depth() == 0


# -- replay of rejects ----------------------------------------------------------------------------------------
def test_rejects_replay_sends_an_unlinked_event_again_and_its_reject_leaves_once_it_is_on_the_timeline(events_env):
    from typer.testing import CliRunner

    from crmsync_local.cli import app

    nobody = events_env.unlinked_profile()
    events_env.configure(unlinked_retry_hours=0.0001)
    events_env.send([event(1, nobody, "send")])
    time.sleep(0.5)  # past the 0.36 s retry window: a reject at the first delivery
    events_env.deliver()
    assert [r["errorSymbol"] for r in events_env.rejects()] == ["UNLINKED_PROFILE"]
    archived = len(events_env.archived())

    events_env.link([nobody], prefix="late")  # the profile got its CRM record since
    result = CliRunner().invoke(app, ["rejects", "replay", events_env.sync_id, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["operation"], report["rejects"], report["records"], report["queued"]) == ("events", 1, 1, 1)
    assert len(events_env.rejects()) == 1  # until the push settles the event

    delivered = events_env.deliver()
    assert (delivered.delivered, delivered.failed) == (1, 0)
    assert [r["errorSymbol"] for r in events_env.rejects()] == []
    assert sum(events_env.types().values()) == 1
    assert len(events_env.archived()) == archived  # a replayed event is not archived twice
    assert events_env.queue_depth() == 0


def test_a_replayed_event_refused_again_keeps_its_one_reject(events_env):
    profiles = events_env.linked_profiles(1)
    too_long = "https://shop.example.com/" + "x" * 600  # longer than the CRM's URL field
    events_env.send([event(1, profiles[0], "click", url=too_long), event(2, profiles[0], "open")])
    events_env.deliver()
    before = events_env.rejects()
    assert len(before) == 1

    report = events_env.operator.replay_rejects(events_env.sync_id)
    assert (report.rejects, report.queued, report.skipped) == (1, 1, 0)
    delivered = events_env.deliver()
    assert (delivered.delivered, delivered.failed) == (1, 0)
    after = events_env.rejects()
    assert [(r["rejectId"], r["errorSymbol"]) for r in after] == [
        (before[0]["rejectId"], before[0]["errorSymbol"])
    ]
    assert events_env.types() == Counter({"open": 1})


def test_a_malformed_event_reaches_the_dead_letter_queue_with_its_reason(events_env):
    profiles = events_env.linked_profiles(1)
    sqs = events_env.stack.client("sqs")
    queue = events_env.stack.resources["EventsQueue"]["physical_id"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({**event(1, profiles[0]), "type": "forward"}))
    sqs.send_message(QueueUrl=queue, MessageBody="not json at all")
    events_env.send([event(2, profiles[0])])
    result = events_env.deliver()
    assert (result.delivered, result.failed) == (3, 0)
    dlq = events_env.stack.resources["EventsDeadLetterQueue"]["physical_id"]
    messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in messages)
    assert len(reasons) == 2
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("type: Input should be 'send', 'open', 'click' or 'bounce'")
    assert len(events_env.timeline_records()) == 1


# -- what each activity carries (SPEC M2) ----------------------------------------------------------------------------
def test_salesforce_records_carry_subject_regarding_names_date_time_and_the_url_of_clicks_only(sf_events):
    profiles = sf_events.linked_profiles(1)
    owner = next(u["Id"] for u in sf_events.control.records("User"))
    sf_events.configure(owner=owner)
    sf_events.send([event(1, profiles[0], "click", at=NOW - timedelta(minutes=5)), event(2, profiles[0], "open")])
    sf_events.deliver()
    records = {r["Event_Id__c"]: r for r in sf_events.timeline_records()}
    click, opened = records["evt-00001"], records["evt-00002"]
    assert click["Name"] == "CMP-7 / DLV-1"
    assert click["Contact__c"] == sf_events.crm_ids[profiles[0]]
    assert click["OwnerId"] == owner
    assert (click["Campaign_Name__c"], click["Delivery_Name__c"]) == ("Hiver / Winter", "Première vague")
    assert click["Event_At__c"].startswith((NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert click["Clicked_URL__c"] == "https://shop.example.com/p/1"
    assert opened["Clicked_URL__c"] is None
    assert opened["Mirror_Page_URL__c"] == "https://marketing.example.com/mirror/2"
    timeline = sf_events.control.timeline("Contact", sf_events.crm_ids[profiles[0]])
    assert [t["record"]["Event_Id__c"] for t in timeline] == ["evt-00002", "evt-00001"]  # oldest first


def test_dynamics_activities_regard_the_contact_under_their_event_id_and_show_on_its_timeline(dyn_events):
    profiles = dyn_events.linked_profiles(1)
    dyn_events.send([event(1, profiles[0], "click"), event(2, profiles[0], "send")])
    dyn_events.deliver()
    contact = dyn_events.crm_ids[profiles[0]]
    timeline = dyn_events.control.timeline("contacts", contact)
    assert [t["activitytypecode"] for t in timeline] == ["cr_marketingevent", "cr_marketingevent"]
    by_id = {t["activityid"]: t["activity"] for t in timeline}
    click = by_id[activity_id("evt-00001")]
    assert click["_regardingobjectid_value"] == contact
    assert click["subject"] == "CMP-7 / DLV-1"
    assert click["cr_clickedurl"] == "https://shop.example.com/p/1"
    assert by_id[activity_id("evt-00002")].get("cr_clickedurl") is None


# -- EventBridge ---------------------------------------------------------------------------------------------------
def test_an_event_put_on_the_marketing_bus_reaches_the_timeline(sf_events):
    profiles = sf_events.linked_profiles(1)
    bus = sf_events.stack.outputs["EventsBusName"]
    sf_events.stack.client("events").put_events(
        Entries=[
            {
                "EventBusName": bus,
                "Source": "acme.marketing",
                "DetailType": "email-event",
                "Detail": json.dumps(event(1, profiles[0], "send")),
            }
        ]
    )
    sf_events.deliver()
    assert sf_events.types() == Counter({"send": 1})


# -- the command line --------------------------------------------------------------------------------------------
def test_events_send_queues_the_valid_lines_and_names_the_others_with_exit_2(sf_events, tmp_path):
    from typer.testing import CliRunner

    from crmsync_local.cli import app

    profiles = sf_events.linked_profiles(1)
    lines = [
        json.dumps(event(1, profiles[0])),
        '{"event_id": "evt-2", "type": "open"}',
        json.dumps(event(3, profiles[0])),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["events", "send", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert (report["read"], report["sent"]) == (3, 2)
    assert [i["line"] for i in report["invalid"]] == [2]
    sf_events.deliver()
    assert sorted(r["Event_Id__c"] for r in sf_events.timeline_records()) == ["evt-00001", "evt-00003"]


def test_events_backfill_by_hand_reports_what_it_queued(sf_events):
    from typer.testing import CliRunner

    from crmsync_local.cli import app

    profiles = sf_events.linked_profiles(1)
    sf_events.send([event(n, profiles[0], "send", at=NOW - timedelta(days=n)) for n in (1, 2, 5)])
    sf_events.deliver()
    result = CliRunner().invoke(app, ["events", "backfill", "sf-email-events", "--days", "3", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["sent"] == 2
