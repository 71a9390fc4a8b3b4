"""The Salesforce emulator's `Marketing_Event__c` (e-mail events, SPEC M1) through simple-salesforce's
own calls: sObject Collections upsert by the unique External ID `Event_Id__c` creates once and updates
after, and the control API reads a contact's timeline."""

from __future__ import annotations

from typing import Any


def _upsert(client: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    body = {"allOrNone": False, "records": [{"attributes": {"type": "Marketing_Event__c"}, **r} for r in records]}
    result: list[dict[str, Any]] = client.restful(
        "composite/sobjects/Marketing_Event__c/Event_Id__c", method="PATCH", json=body
    )
    return result


def _event(contact: str, event_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "Event_Id__c": event_id,
        "Name": "CMP-7 / DLV-1",
        "Event_Type__c": "open",
        "Contact__c": contact,
        "Event_At__c": "2026-12-01T10:15:00.000+0000",
        **fields,
    }


def _contact(emulator: Any) -> str:
    return str(emulator.control.seed("Contact", [{"LastName": "Lima"}])[0])


def test_an_upsert_by_the_event_id_creates_once_then_finds_the_same_record(salesforce_emulator, salesforce_client):
    contact = _contact(salesforce_emulator)
    first = _upsert(salesforce_client, [_event(contact, "evt-1"), _event(contact, "evt-2")])
    again = _upsert(salesforce_client, [_event(contact, "evt-1")])
    assert [(r["success"], r["created"]) for r in first] == [(True, True), (True, True)]
    assert [(r["success"], r["created"], r["id"]) for r in again] == [(True, False, first[0]["id"])]
    assert len(salesforce_emulator.control.records("Marketing_Event__c")) == 2


def test_the_event_id_is_a_unique_external_id(salesforce_client):
    fields = {f["name"]: f for f in salesforce_client.Marketing_Event__c.describe()["fields"]}
    assert (fields["Event_Id__c"]["externalId"], fields["Event_Id__c"]["unique"]) == (True, True)
    assert fields["Event_At__c"]["type"] == "datetime"
    assert fields["Contact__c"]["referenceTo"] == ["Contact"]


def test_a_clicked_url_longer_than_the_field_is_refused_alone(salesforce_emulator, salesforce_client):
    contact = _contact(salesforce_emulator)
    results = _upsert(
        salesforce_client,
        [_event(contact, "evt-1", Clicked_URL__c="https://x.example/" + "a" * 300), _event(contact, "evt-2")],
    )
    assert [r["success"] for r in results] == [False, True]
    assert results[0]["errors"][0]["statusCode"] == "STRING_TOO_LONG"


def test_the_control_api_reads_a_contacts_timeline_oldest_first(salesforce_emulator, salesforce_client):
    contact = _contact(salesforce_emulator)
    _upsert(
        salesforce_client,
        [
            _event(contact, "late", Event_At__c="2026-12-02T08:00:00.000+0000"),
            _event(contact, "early", Event_At__c="2026-12-01T08:00:00.000+0000"),
        ],
    )
    timeline = salesforce_emulator.control.timeline("Contact", contact)
    assert [(t["object"], t["record"]["Event_Id__c"]) for t in timeline] == [
        ("Marketing_Event__c", "early"),
        ("Marketing_Event__c", "late"),
    ]
