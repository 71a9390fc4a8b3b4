"""Creating, updating, upserting and deleting through the Dataverse Web API emulator with plain requests."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def _send(
    emulator: DynamicsEmulatorHandle, method: str, path: str, body: Any = None, **headers: str
) -> requests.Response:
    return emulator.http().request(
        method, f"{emulator.api_url}/{path}", json=body, headers=emulator.headers(**headers)
    )


def _stored(emulator: DynamicsEmulatorHandle, entity_set: str, record_id: str) -> dict[str, Any]:
    return next(r for r in emulator.control.records(entity_set) if r[f"{entity_set[:-1]}id"] == record_id)


def test_create_answers_204_with_odata_entityid(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "contacts", {"firstname": "Ada", "lastname": "Lovelace"})

    assert response.status_code == 204
    assert response.headers["OData-Version"] == "4.0"
    entity_id = response.headers["OData-EntityId"]
    assert entity_id.startswith(f"{dynamics_emulator.api_url}/contacts(")
    record_id = entity_id.rsplit("(", 1)[1].rstrip(")")
    assert _stored(dynamics_emulator, "contacts", record_id)["fullname"] == "Ada Lovelace"


def test_create_with_return_representation_answers_201_with_the_record(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    response = _send(
        dynamics_emulator,
        "POST",
        "contacts?$select=fullname,statuscode",
        {"firstname": "Ada", "lastname": "L"},
        Prefer="return=representation",
    )

    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#contacts(fullname,statuscode)/$entity")
    assert body["fullname"] == "Ada L"
    assert body["statuscode"] == 1
    assert body["@odata.etag"].startswith('W/"')


def test_post_with_an_existing_id_is_412_duplicate_record(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Exists"}])

    response = _send(dynamics_emulator, "POST", "contacts", {"contactid": contact_id, "lastname": "Again"})

    assert response.status_code == 412
    assert response.json()["error"]["code"] == "0x80040237"


def test_patch_upserts_a_missing_record_with_the_given_id(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    record_id = str(uuid.uuid4())

    created = _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"lastname": "Upserted"})
    updated = _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"firstname": "Then"})

    assert (created.status_code, updated.status_code) == (204, 204)
    assert _stored(dynamics_emulator, "contacts", record_id)["fullname"] == "Then Upserted"


def test_patch_with_if_match_star_on_a_missing_record_is_404(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    record_id = str(uuid.uuid4())

    response = _send(dynamics_emulator, "PATCH", f"contacts({record_id})", {"lastname": "X"}, **{"If-Match": "*"})

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x80040217",
        "message": f"contact With Id = {record_id} Does Not Exist",
    }
    assert dynamics_emulator.control.records("contacts") == []


def test_patch_with_if_none_match_star_on_an_existing_record_is_412(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Kept"}])

    response = _send(
        dynamics_emulator,
        "PATCH",
        f"contacts({contact_id})",
        {"lastname": "Overwritten"},
        **{"If-None-Match": "*"},
    )

    assert response.status_code == 412
    assert response.json()["error"]["message"] == "A record with matching key values already exists."
    assert _stored(dynamics_emulator, "contacts", contact_id)["lastname"] == "Kept"


def test_patch_with_a_stale_etag_is_412_version_mismatch(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "V1"}])
    etag = f'W/"{_stored(dynamics_emulator, "contacts", contact_id)["versionnumber"]}"'
    _send(dynamics_emulator, "PATCH", f"contacts({contact_id})", {"lastname": "V2"})

    response = _send(
        dynamics_emulator, "PATCH", f"contacts({contact_id})", {"lastname": "V3"}, **{"If-Match": etag}
    )

    assert response.status_code == 412
    assert response.json()["error"]["code"] == "0x80060882"


def test_patch_by_alternate_key_creates_then_updates(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    path = "new_subscriptions(new_externalid='EXT-1')"

    created = _send(
        dynamics_emulator,
        "PATCH",
        path,
        {"new_name": "First", "new_channel": 100000001},
        Prefer="return=representation",
    )
    updated = _send(dynamics_emulator, "PATCH", path, {"new_name": "Second"}, Prefer="return=representation")

    assert (created.status_code, updated.status_code) == (201, 200)
    assert created.json()["new_subscriptionid"] == updated.json()["new_subscriptionid"]
    assert updated.json()["new_externalid"] == "EXT-1"
    assert updated.json()["new_channel"] == 100000001


def test_duplicate_alternate_key_value_is_412_entity_key_violated(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": "A", "emailaddress1": "same@example.com"}])

    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "B", "emailaddress1": "SAME@example.com"})

    assert response.status_code == 412
    assert response.json()["error"]["code"] == "0x80060892"


def test_string_over_max_length_is_0x80044331(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "x" * 51})

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80044331",
        "message": "A validation error occurred.  The length of the 'lastname' attribute of the 'contact' entity "
        "exceeded the maximum allowed length of '50'.",
    }


def test_option_value_outside_the_option_set_is_0x8004431a(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "X", "gendercode": 3})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x8004431A"
    assert "Accepted Values: 1,2" in response.json()["error"]["message"]


def test_unknown_property_in_the_body_is_rejected(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "X", "citty": "Lyon"})

    assert response.status_code == 400
    assert (
        "The property 'citty' does not exist on type 'Microsoft.Dynamics.CRM.contact'"
        in response.json()["error"]["message"]
    )


def test_writing_a_lookup_value_property_directly_is_rejected(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])

    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "X", "_parentcustomerid_value": account})

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        "CRM do not support direct update of Entity Reference properties"
    )


def test_lookup_bound_with_odata_bind_is_read_back_as_value(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])

    response = _send(
        dynamics_emulator,
        "POST",
        "contacts?$select=_parentcustomerid_value",
        {"lastname": "X", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
        Prefer="return=representation",
    )

    assert response.json()["_parentcustomerid_value"] == account


def test_binding_a_missing_record_is_404(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    missing = str(uuid.uuid4())

    response = _send(
        dynamics_emulator,
        "POST",
        "contacts",
        {"lastname": "X", "parentcustomerid_account@odata.bind": f"/accounts({missing})"},
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "0x80040217"


def test_every_write_bumps_modifiedon_and_versionnumber(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.set_clock("2024-03-01T08:00:00Z", frozen=True)
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Clock"}])
    before = _stored(dynamics_emulator, "contacts", contact_id)
    dynamics_emulator.control.advance_clock(90)

    _send(dynamics_emulator, "PATCH", f"contacts({contact_id})", {"firstname": "Tick"}, **{"If-Match": "*"})
    after = _stored(dynamics_emulator, "contacts", contact_id)

    assert before["modifiedon"] == "2024-03-01T08:00:00Z"
    assert after["modifiedon"] == "2024-03-01T08:01:30Z"
    assert after["createdon"] == before["createdon"]
    assert after["versionnumber"] > before["versionnumber"]


def test_setting_the_inactive_state_sets_its_default_status(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Leaving"}])

    _send(dynamics_emulator, "PATCH", f"contacts({contact_id})", {"statecode": 1}, **{"If-Match": "*"})

    stored = _stored(dynamics_emulator, "contacts", contact_id)
    assert (stored["statecode"], stored["statuscode"]) == (1, 2)


def test_status_of_another_state_is_refused(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _send(dynamics_emulator, "POST", "contacts", {"lastname": "X", "statecode": 0, "statuscode": 2})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040203"


def test_delete_answers_204_then_404(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Gone"}])

    first = _send(dynamics_emulator, "DELETE", f"contacts({contact_id})")
    second = _send(dynamics_emulator, "DELETE", f"contacts({contact_id})")

    assert (first.status_code, second.status_code) == (204, 404)


def test_single_property_put_updates_one_column(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Old"}])

    response = _send(dynamics_emulator, "PUT", f"contacts({contact_id})/lastname", {"value": "New"})

    assert response.status_code == 204
    assert _stored(dynamics_emulator, "contacts", contact_id)["lastname"] == "New"


def test_created_records_are_owned_by_the_calling_application_user(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    whoami = (
        dynamics_emulator.http()
        .get(f"{dynamics_emulator.api_url}/WhoAmI", headers=dynamics_emulator.headers())
        .json()
    )

    response = _send(
        dynamics_emulator,
        "POST",
        "contacts?$select=_ownerid_value,_createdby_value",
        {"lastname": "Mine"},
        Prefer="return=representation",
    )

    assert response.json()["_ownerid_value"] == whoami["UserId"]
    assert response.json()["_createdby_value"] == whoami["UserId"]
