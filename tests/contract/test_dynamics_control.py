"""The Dynamics emulator's control API (`DynamicsControl`): seeding, clock, reset, and paging throughput."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from crmsync_local.emulators.dynamics import DynamicsControlError
from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def test_put_records_keeps_given_timestamps_and_state(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records(
        "contacts",
        [
            {
                "lastname": "Seeded",
                "createdon": "2020-01-02T03:04:05Z",
                "modifiedon": "2021-06-07T08:09:10Z",
                "statecode": 1,
            }
        ],
    )

    (stored,) = dynamics_emulator.control.records("contacts")

    assert stored["contactid"] == contact_id
    assert (stored["createdon"], stored["modifiedon"]) == ("2020-01-02T03:04:05Z", "2021-06-07T08:09:10Z")
    assert (stored["statecode"], stored["statuscode"]) == (1, 2)


def test_put_records_updates_an_existing_record_by_id(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"firstname": "A", "lastname": "One"}])

    dynamics_emulator.control.put_records("contacts", [{"contactid": contact_id, "lastname": "Two"}])

    (stored,) = dynamics_emulator.control.records("contacts")
    assert (stored["firstname"], stored["lastname"]) == ("A", "Two")


def test_put_records_refuses_invalid_values(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    with pytest.raises(DynamicsControlError, match="0x8004431A"):
        dynamics_emulator.control.put_records("contacts", [{"lastname": "X", "gendercode": 7}])


def test_put_records_seeds_10000_records_in_one_call(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    records = [
        {"firstname": f"F{i}", "lastname": f"L{i}", "emailaddress1": f"p{i}@example.com"} for i in range(10_000)
    ]
    ids = dynamics_emulator.control.put_records("contacts", records)

    assert len(set(ids)) == 10_000
    assert len(dynamics_emulator.control.records("contacts")) == 10_000


def test_control_delete_removes_the_record(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = dynamics_emulator.control.put_records("contacts", [{"lastname": "Doomed"}])

    dynamics_emulator.control.delete_record("contacts", contact_id)

    assert dynamics_emulator.control.records("contacts") == []


def test_clock_stamps_system_columns_and_the_date_header(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.set_clock("2024-02-29T12:00:00Z", frozen=True)

    response = dynamics_emulator.http().post(
        f"{dynamics_emulator.api_url}/contacts?$select=createdon",
        json={"lastname": "Leap"},
        headers=dynamics_emulator.headers(Prefer="return=representation"),
    )

    assert response.json()["createdon"] == "2024-02-29T12:00:00Z"
    assert parsedate_to_datetime(response.headers["Date"]).isoformat() == "2024-02-29T12:00:00+00:00"


def test_reset_forgets_records_and_schema_changes(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    control = dynamics_emulator.control
    control.put_records("contacts", [{"lastname": "Temporary"}])
    control.define_entity({"logical_name": "new_temp", "entity_set_name": "new_temps"})

    control.reset()

    assert control.records("contacts") == []
    assert "new_temp" not in {e["logical_name"] for e in control.entities()}


def test_info_reports_the_org_and_authority(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    info = dynamics_emulator.control.info()

    assert info["authority"] == f"{dynamics_emulator.url}/{dynamics_emulator.tenant_id}"
    assert info["scope"] == f"{dynamics_emulator.url}/.default"
    assert info["api_url"] == dynamics_emulator.api_url


def test_100000_records_page_through_in_twenty_pages_of_5000(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    for chunk in range(10):
        dynamics_emulator.control.put_records(
            "contacts",
            [
                {"firstname": "P", "lastname": f"{chunk}-{i}", "emailaddress1": f"{chunk}-{i}@x.org"}
                for i in range(10_000)
            ],
        )
    http, headers = dynamics_emulator.http(), dynamics_emulator.headers(Prefer="odata.maxpagesize=5000")
    url: str | None = f"{dynamics_emulator.api_url}/contacts?$select=firstname,lastname,emailaddress1"
    seen, pages = 0, 0

    while url:
        body = http.get(url, headers=headers).json()
        seen += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")

    assert (seen, pages) == (100_000, 20)
