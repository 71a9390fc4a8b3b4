"""E-mail events (SPEC M1, M2, M5): the wire format, the activity's identity and values."""

from __future__ import annotations

import json

import pytest

from crmsync.config import DEFAULT_EVENT_OBJECT_FIELDS
from crmsync.domain.events import activity_fields, activity_id, parse_event, timeline_link

EVENT = {
    "event_id": "evt-1",
    "type": "click",
    "profile_id": "p-1",
    "campaign_id": "CMP-7",
    "campaign_name": "Winter",
    "delivery_id": "DLV-2",
    "delivery_name": "First wave",
    "at": "2026-12-07T09:12:30+01:00",
    "url": "https://shop.example.com/a",
    "mirror_page_url": "https://marketing.example.com/m/1",
}
SF = DEFAULT_EVENT_OBJECT_FIELDS["salesforce"]


def test_the_activity_id_is_the_same_for_the_same_event_and_differs_between_events():
    assert activity_id("evt-1") == activity_id("evt-1")
    assert activity_id("evt-1") != activity_id("evt-2")


def test_the_activity_id_is_a_uuid_version_5():
    assert activity_id("evt-1")[14] == "5"


def test_an_eventbridge_envelope_is_read_as_its_detail():
    envelope = {"version": "0", "detail-type": "email-event", "source": "acme", "detail": EVENT}
    assert parse_event(json.dumps(envelope)).event_id == "evt-1"


def test_an_unknown_type_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match=r"^type: Input should be 'send', 'open', 'click' or 'bounce'"):
        parse_event(json.dumps({**EVENT, "type": "forward"}))


def test_a_click_without_its_url_is_refused():
    with pytest.raises(ValueError, match="a click event carries the clicked url"):
        parse_event(json.dumps({**EVENT, "url": None}))


def test_a_time_without_an_offset_is_refused():
    with pytest.raises(ValueError, match=r"^at: "):
        parse_event(json.dumps({**EVENT, "at": "2026-12-07T09:12:30"}))


def test_a_body_that_is_not_json_is_refused_as_such():
    with pytest.raises(ValueError, match=r"^not JSON"):
        parse_event("{oops")


def test_a_click_carries_its_url_and_the_date_time_in_utc():
    fields = activity_fields(parse_event(json.dumps(EVENT)), SF)
    assert fields["Clicked_URL__c"] == "https://shop.example.com/a"
    assert fields["Event_At__c"] == "2026-12-07T08:12:30.000Z"


def test_an_open_carries_no_url_even_when_one_is_sent():
    fields = activity_fields(parse_event(json.dumps({**EVENT, "type": "open"})), SF)
    assert "Clicked_URL__c" not in fields


def test_the_subject_is_the_campaign_id_and_the_delivery_id():
    assert activity_fields(parse_event(json.dumps(EVENT)), SF)["Name"] == "CMP-7 / DLV-2"


def test_the_event_id_goes_to_the_external_id_field_on_salesforce_only():
    event = parse_event(json.dumps(EVENT))
    assert activity_fields(event, SF)["Event_Id__c"] == "evt-1"
    assert "evt-1" not in activity_fields(event, DEFAULT_EVENT_OBJECT_FIELDS["dynamics"]).values()


def test_the_timeline_link_escapes_the_profile_id():
    assert timeline_link("https://m.example.com/p/{profileId}/timeline", "a b/c") == (
        "https://m.example.com/p/a%20b%2Fc/timeline"
    )
