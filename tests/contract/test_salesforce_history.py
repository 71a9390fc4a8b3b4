"""Field history (ContactHistory / LeadHistory) and who made a change: the control API's edits act as a
"human" user, the API's sessions as the integration user (SPEC O3)."""

from __future__ import annotations

import pytest
import requests
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql


def _history(client, record_id):
    return client.query_all(
        format_soql(
            "SELECT ContactId, Field, OldValue, NewValue, CreatedDate, CreatedById FROM ContactHistory "
            "WHERE ContactId = {} ORDER BY CreatedDate",
            record_id,
        )
    )["records"]


def _user_id(client, username):
    return client.query(format_soql("SELECT Id FROM User WHERE Username = {}", username))["records"][0]["Id"]


def test_a_change_of_a_tracked_field_writes_one_history_row_with_old_and_new_value(
    salesforce_emulator, salesforce_client
):
    control = salesforce_emulator.control
    control.track_history("Contact", ["HasOptedOutOfEmail"])
    (record_id,) = control.seed("Contact", [{"LastName": "Tracked"}])
    control.set_clock("2026-03-01T10:00:07Z")

    control.seed("Contact", [{"Id": record_id, "HasOptedOutOfEmail": True, "Title": "untracked"}])

    changes = [r for r in _history(salesforce_client, record_id) if r["Field"] != "created"]
    assert [(r["Field"], r["OldValue"], r["NewValue"]) for r in changes] == [("HasOptedOutOfEmail", False, True)]
    assert changes[0]["CreatedDate"] == "2026-03-01T10:00:07.000+0000"


def test_a_save_of_the_same_value_writes_no_history_row(salesforce_emulator, salesforce_client):
    control = salesforce_emulator.control
    control.track_history("Contact", ["DoNotCall"])
    (record_id,) = control.seed("Contact", [{"LastName": "Same", "DoNotCall": True}])

    salesforce_client.Contact.update(record_id, {"DoNotCall": True})

    assert [r["Field"] for r in _history(salesforce_client, record_id)] == ["created"]


def test_history_rows_name_the_acting_user(salesforce_emulator, salesforce_client):
    control = salesforce_emulator.control
    control.track_history("Contact", ["HasOptedOutOfEmail", "DoNotCall"])
    (record_id,) = control.seed("Contact", [{"LastName": "Who"}])

    control.seed("Contact", [{"Id": record_id, "HasOptedOutOfEmail": True}])
    salesforce_client.Contact.update(record_id, {"DoNotCall": True})

    authors = {r["Field"]: r["CreatedById"] for r in _history(salesforce_client, record_id)}
    integration = _user_id(salesforce_client, "integration@crmsync.example")
    human = _user_id(salesforce_client, "ada.admin@crmsync.example")
    assert (authors["HasOptedOutOfEmail"], authors["DoNotCall"]) == (human, integration)


def test_last_modified_by_is_the_last_writer_of_the_record(salesforce_emulator, salesforce_client):
    control = salesforce_emulator.control
    (record_id,) = control.seed("Contact", [{"LastName": "Stamp"}])
    human = salesforce_client.Contact.get(record_id)["LastModifiedById"]

    salesforce_client.Contact.update(record_id, {"Title": "by the API"})

    after = salesforce_client.Contact.get(record_id)["LastModifiedById"]
    assert human == _user_id(salesforce_client, "ada.admin@crmsync.example")
    assert after == _user_id(salesforce_client, "integration@crmsync.example")


def test_a_seed_may_act_as_another_user(salesforce_emulator, salesforce_client):
    (record_id,) = salesforce_emulator.control.seed(
        "Contact", [{"LastName": "Workflow"}], as_user="integration@crmsync.example"
    )

    record = salesforce_client.Contact.get(record_id)
    assert record["LastModifiedById"] == _user_id(salesforce_client, "integration@crmsync.example")


def test_old_and_new_values_cannot_be_filtered(salesforce_emulator, salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM ContactHistory WHERE NewValue = true")

    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_history_is_read_by_window_and_field(salesforce_emulator, salesforce_client):
    control = salesforce_emulator.control
    control.track_history("Lead", ["HasOptedOutOfEmail"])
    (record_id,) = control.seed("Lead", [{"LastName": "Windowed", "Company": "Acme"}])
    control.seed(
        "Lead", [{"Id": record_id, "HasOptedOutOfEmail": True, "LastModifiedDate": "2026-03-02T08:00:00Z"}]
    )

    rows = salesforce_client.query_all(
        "SELECT LeadId, Field, NewValue, CreatedDate FROM LeadHistory WHERE Field IN ('HasOptedOutOfEmail') "
        "AND CreatedDate >= 2026-03-02T00:00:00Z AND CreatedDate < 2026-03-03T00:00:00Z"
    )["records"]

    assert [(r["LeadId"], r["NewValue"], r["CreatedDate"]) for r in rows] == [
        (record_id, True, "2026-03-02T08:00:00.000+0000")
    ]


def test_at_most_twenty_fields_are_tracked(salesforce_emulator):
    names = [f"Extra{i}__c" for i in range(21)]
    salesforce_emulator.control.define_object(
        "Contact", fields=[{"name": n, "type": "string", "length": 10} for n in names]
    )

    with pytest.raises(requests.HTTPError) as raised:
        salesforce_emulator.control.track_history("Contact", names)

    assert raised.value.response.status_code == 400
    assert "at most 20" in raised.value.response.text


def test_tracking_is_off_until_turned_on(salesforce_emulator, salesforce_client):
    (record_id,) = salesforce_emulator.control.seed("Contact", [{"LastName": "Untracked"}])

    salesforce_client.Contact.update(record_id, {"HasOptedOutOfEmail": True})

    assert _history(salesforce_client, record_id) == []
    assert salesforce_emulator.control.tracked_fields("Contact") == []


def test_field_definition_says_which_fields_history_tracks(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.track_history("Contact", ["DoNotCall"])

    rows = salesforce_client.query(
        "SELECT QualifiedApiName, IsFieldHistoryTracked FROM FieldDefinition "
        "WHERE EntityDefinitionId = 'Contact' AND QualifiedApiName IN ('DoNotCall', 'HasOptedOutOfEmail')"
    )["records"]

    assert {r["QualifiedApiName"]: r["IsFieldHistoryTracked"] for r in rows} == {
        "DoNotCall": True,
        "HasOptedOutOfEmail": False,
    }
