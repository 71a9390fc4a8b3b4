"""A custom activity table on the Dataverse emulator, with plain requests: the `activityid` key, the
polymorphic regarding lookup bound per target (`regardingobjectid_contact_<table>@odata.bind`), create-only
PATCH (`If-None-Match: *` answers 412 when the activity exists), `activitypointers` and the timeline."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle

TABLE = "cr_marketingevent"


def _send(
    emulator: DynamicsEmulatorHandle, method: str, path: str, body: Any = None, **headers: str
) -> requests.Response:
    return emulator.http().request(
        method, f"{emulator.api_url}/{path}", json=body, headers=emulator.headers(**headers)
    )


def _contact(emulator: DynamicsEmulatorHandle) -> str:
    return emulator.control.put_records("contacts", [{"firstname": "Ana", "lastname": "Lima"}])[0]


def _activity(contact: str, **fields: Any) -> dict[str, Any]:
    return {
        "subject": "CMP-7 / DLV-1",
        "cr_eventtype": "open",
        "actualstart": "2026-12-01T10:15:00Z",
        f"regardingobjectid_contact_{TABLE}@odata.bind": f"/contacts({contact})",
        **fields,
    }


def test_a_create_only_patch_creates_the_activity_under_the_given_id(dynamics_emulator):
    contact, activity = _contact(dynamics_emulator), str(uuid.uuid4())
    response = _send(
        dynamics_emulator, "PATCH", f"cr_marketingevents({activity})", _activity(contact), **{"If-None-Match": "*"}
    )
    assert response.status_code == 204
    [row] = dynamics_emulator.control.records("cr_marketingevents")
    assert (row["activityid"], row["_regardingobjectid_value"]) == (activity, contact)
    assert row["_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "contact"


def test_a_create_only_patch_of_an_existing_activity_answers_412_and_changes_nothing(dynamics_emulator):
    contact, activity = _contact(dynamics_emulator), str(uuid.uuid4())
    _send(
        dynamics_emulator, "PATCH", f"cr_marketingevents({activity})", _activity(contact), **{"If-None-Match": "*"}
    )
    again = _send(
        dynamics_emulator,
        "PATCH",
        f"cr_marketingevents({activity})",
        _activity(contact, subject="changed"),
        **{"If-None-Match": "*"},
    )
    assert again.status_code == 412
    assert again.json()["error"]["message"] == "A record with matching key values already exists."
    assert [r["subject"] for r in dynamics_emulator.control.records("cr_marketingevents")] == ["CMP-7 / DLV-1"]


def test_the_regarding_binding_must_name_a_declared_navigation_property(dynamics_emulator):
    contact = _contact(dynamics_emulator)
    body = {"subject": "x", "regardingobjectid_contact@odata.bind": f"/contacts({contact})"}
    response = _send(dynamics_emulator, "POST", "cr_marketingevents", body)
    assert response.status_code == 400
    assert "regardingobjectid_contact@odata.bind" in response.json()["error"]["message"]


def test_the_regarding_binding_refuses_a_contact_that_does_not_exist(dynamics_emulator):
    response = _send(dynamics_emulator, "POST", "cr_marketingevents", _activity(str(uuid.uuid4())))
    assert response.status_code == 404


def test_every_activity_is_listed_in_activitypointers_with_its_type(dynamics_emulator):
    contact = _contact(dynamics_emulator)
    _send(dynamics_emulator, "POST", "cr_marketingevents", _activity(contact))
    response = _send(
        dynamics_emulator, "GET", "activitypointers?$select=subject,activitytypecode,_regardingobjectid_value"
    )
    assert response.status_code == 200
    [pointer] = response.json()["value"]
    assert (pointer["activitytypecode"], pointer["_regardingobjectid_value"]) == (TABLE, contact)


def test_the_table_is_described_as_an_activity(dynamics_emulator):
    response = _send(
        dynamics_emulator, "GET", f"EntityDefinitions(LogicalName='{TABLE}')?$select=IsActivity,PrimaryIdAttribute"
    )
    assert (response.json()["IsActivity"], response.json()["PrimaryIdAttribute"]) == (True, "activityid")


def test_the_control_api_reads_a_contacts_timeline_oldest_first(dynamics_emulator):
    contact, other = _contact(dynamics_emulator), _contact(dynamics_emulator)
    _send(
        dynamics_emulator,
        "POST",
        "cr_marketingevents",
        _activity(contact, actualstart="2026-12-02T08:00:00Z", subject="late"),
    )
    _send(
        dynamics_emulator,
        "POST",
        "cr_marketingevents",
        _activity(contact, actualstart="2026-12-01T08:00:00Z", subject="early"),
    )
    _send(dynamics_emulator, "POST", "cr_marketingevents", _activity(other))
    timeline = dynamics_emulator.control.timeline("contacts", contact)
    assert [t["subject"] for t in timeline] == ["early", "late"]
    assert {t["activity"]["cr_eventtype"] for t in timeline} == {"open"}
