"""Dataverse auditing (`audits`, `RetrieveRecordChangeHistory`), `WhoAmI`, `_modifiedby_value` and the
`donot*` columns: what the two-way sync reads to know who changed an opt-out, and when (SPEC O3)."""

from __future__ import annotations

from typing import Any

import requests

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def _send(emulator: DynamicsEmulatorHandle, method: str, path: str, body: Any = None) -> requests.Response:
    return emulator.http().request(method, f"{emulator.api_url}/{path}", json=body, headers=emulator.headers())


def _contact(emulator: DynamicsEmulatorHandle, **values: Any) -> str:
    (record_id,) = emulator.control.put_records("contacts", [{"lastname": "Audited", **values}])
    return record_id


def _history(emulator: DynamicsEmulatorHandle, record_id: str) -> list[dict[str, Any]]:
    response = _send(
        emulator,
        "GET",
        f"RetrieveRecordChangeHistory(Target=@t)?@t={{'@odata.id':'contacts({record_id})'}}",
    )
    assert response.status_code == 200, response.text
    details: list[dict[str, Any]] = response.json()["AuditDetailCollection"]["AuditDetails"]
    return details


def _audit_contacts(emulator: DynamicsEmulatorHandle) -> None:
    emulator.control.set_auditing(environment=True, tables={"contact": True})


def test_auditing_is_off_by_default(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    record_id = _contact(dynamics_emulator)

    _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"donotemail": True})

    assert _history(dynamics_emulator, record_id) == []


def test_an_audited_update_answers_old_and_new_values_and_who(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _audit_contacts(dynamics_emulator)
    record_id = _contact(dynamics_emulator)
    me = _send(dynamics_emulator, "GET", "WhoAmI").json()["UserId"]

    _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"donotemail": True})

    update = _history(dynamics_emulator, record_id)[-1]
    assert update["@odata.type"] == "#Microsoft.Dynamics.CRM.AttributeAuditDetail"
    assert update["AuditRecord"]["_userid_value"] == me
    assert update["AuditRecord"]["operation"] == 2
    assert (update["OldValue"]["donotemail"], update["NewValue"]["donotemail"]) == (False, True)


def test_control_api_edits_act_as_a_person_not_the_application_user(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    _audit_contacts(dynamics_emulator)
    record_id = _contact(dynamics_emulator)
    me = _send(dynamics_emulator, "GET", "WhoAmI").json()["UserId"]

    dynamics_emulator.control.put_records("contacts", [{"contactid": record_id, "donotphone": True}])

    row = _send(dynamics_emulator, "GET", f"contacts({record_id})?$select=_modifiedby_value").json()
    assert row["_modifiedby_value"] != me
    assert _history(dynamics_emulator, record_id)[-1]["AuditRecord"]["_userid_value"] == row["_modifiedby_value"]


def test_a_save_of_the_same_value_is_not_audited(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _audit_contacts(dynamics_emulator)
    record_id = _contact(dynamics_emulator, donotemail=True)

    _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"donotemail": True})

    assert [d["AuditRecord"]["operation"] for d in _history(dynamics_emulator, record_id)] == [1]


def test_a_column_with_auditing_off_is_not_audited(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.set_auditing(
        environment=True, tables={"contact": True}, columns={"contact": {"donotfax": False}}
    )
    record_id = _contact(dynamics_emulator)

    _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"donotfax": True, "donotemail": True})

    update = _history(dynamics_emulator, record_id)[-1]
    assert set(update["NewValue"]) - {"@odata.type"} == {"donotemail"}


def test_metadata_says_whether_a_table_and_a_column_are_audited(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.set_auditing(tables={"contact": True}, columns={"contact": {"donotfax": False}})

    table = _send(dynamics_emulator, "GET", "EntityDefinitions(LogicalName='contact')?$select=IsAuditEnabled")
    column = _send(
        dynamics_emulator,
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='donotfax')?$select=IsAuditEnabled",
    )

    assert table.json()["IsAuditEnabled"]["Value"] is True
    assert column.json()["IsAuditEnabled"]["Value"] is False


def test_audits_are_queryable_by_table_and_time(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _audit_contacts(dynamics_emulator)
    record_id = _contact(dynamics_emulator)

    response = _send(
        dynamics_emulator,
        "GET",
        "audits?$select=_objectid_value,operation,attributemask,createdon&$filter=objecttypecode eq 'contact' "
        "and operation eq 1",
    )

    assert response.status_code == 200, response.text
    rows = response.json()["value"]
    assert [r["_objectid_value"] for r in rows] == [record_id]
    assert rows[0]["attributemask"].startswith(",")


def test_the_audit_table_is_read_only(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "audits", {"objecttypecode": "contact"})

    assert response.status_code == 405


def test_send_marketing_materials_is_a_do_not_flag(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(
        dynamics_emulator,
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='donotsendmm')"
        "/Microsoft.Dynamics.CRM.BooleanAttributeMetadata?$expand=OptionSet",
    )

    assert response.status_code == 200, response.text
    options = response.json()["OptionSet"]
    assert options["TrueOption"]["Label"]["UserLocalizedLabel"]["Label"] == "Do Not Send"


def test_the_organization_says_whether_the_environment_audits(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    before = _send(dynamics_emulator, "GET", "organizations?$select=isauditenabled").json()["value"]
    dynamics_emulator.control.set_auditing(environment=True)

    after = _send(dynamics_emulator, "GET", "organizations?$select=isauditenabled").json()["value"]

    assert (before[0]["isauditenabled"], after[0]["isauditenabled"]) == (False, True)
