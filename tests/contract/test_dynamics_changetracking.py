"""Change tracking (`Prefer: odata.track-changes`, delta links) against the Dataverse Web API emulator."""

from __future__ import annotations

from typing import Any

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def _initial_sync(emulator: DynamicsEmulatorHandle, page_size: int = 5000) -> tuple[list[dict[str, Any]], str]:
    http = emulator.http()
    headers = emulator.headers(Prefer=f"odata.track-changes,odata.maxpagesize={page_size}")
    url: str | None = f"{emulator.api_url}/contacts?$select=firstname,lastname"
    rows: list[dict[str, Any]] = []
    while True:
        assert url is not None
        response = http.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["value"]
        if "@odata.deltaLink" in body:
            return rows, body["@odata.deltaLink"]
        url = body.get("@odata.nextLink")


def _follow(emulator: DynamicsEmulatorHandle, delta_link: str) -> Any:
    return emulator.http().get(delta_link, headers=emulator.headers())


def test_track_changes_answers_a_delta_link_on_the_last_page(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    ids = dynamics_emulator.control.put_records("contacts", [{"lastname": f"T{i}"} for i in range(7)])

    rows, delta_link = _initial_sync(dynamics_emulator, page_size=3)

    assert sorted(row["contactid"] for row in rows) == sorted(ids)
    assert delta_link.startswith(f"{dynamics_emulator.api_url}/contacts?$select=firstname,lastname&$deltatoken=")


def test_initial_response_applies_the_track_changes_preference(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers(Prefer="odata.track-changes")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers
    )

    assert response.headers["Preference-Applied"] == "odata.track-changes"


def test_tracked_response_applies_the_page_size_too(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": f"P{i}"} for i in range(3)])
    headers = dynamics_emulator.headers(Prefer="odata.track-changes,odata.maxpagesize=2")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers
    )

    assert response.headers["Preference-Applied"] == "odata.track-changes,odata.maxpagesize=2"
    assert len(response.json()["value"]) == 2


def test_delta_link_reports_creates_updates_and_deletes(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    control = dynamics_emulator.control
    kept, changed, removed = control.put_records(
        "contacts", [{"lastname": n} for n in ("Kept", "Changed", "Removed")]
    )
    _, delta_link = _initial_sync(dynamics_emulator)
    control.put_records("contacts", [{"contactid": changed, "lastname": "Changed again"}])
    (created,) = control.put_records("contacts", [{"lastname": "Created"}])
    control.delete_record("contacts", removed)

    body = _follow(dynamics_emulator, delta_link).json()

    assert body["@odata.context"] == f"{dynamics_emulator.api_url}/$metadata#contacts(firstname,lastname)/$delta"
    updates = [row for row in body["value"] if "@odata.etag" in row]
    assert [(row["contactid"], row["lastname"]) for row in updates] == [
        (changed, "Changed again"),
        (created, "Created"),
    ]
    assert body["value"][-1] == {
        "@odata.context": f"{dynamics_emulator.api_url}/$metadata#contacts/$deletedEntity",
        "id": removed,
        "reason": "deleted",
    }
    assert kept not in {row.get("contactid") for row in body["value"]}
    assert "$deltatoken=" in body["@odata.deltaLink"]


def test_delta_link_without_changes_answers_no_rows_and_a_new_link(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": "Still"}])
    _, delta_link = _initial_sync(dynamics_emulator)

    body = _follow(dynamics_emulator, delta_link).json()

    assert body["value"] == []
    assert "@odata.deltaLink" in body


def test_delta_token_older_than_the_retention_is_expired_0x80044352(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    _, delta_link = _initial_sync(dynamics_emulator)
    dynamics_emulator.control.advance_clock(8 * 24 * 3600)

    response = _follow(dynamics_emulator, delta_link)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80044352",
        "message": "Version stamp associated with the client has expired. Please perform a full sync.",
    }


def test_change_tracking_retention_is_configurable(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.configure(change_tracking_retention_days=30)
    _, delta_link = _initial_sync(dynamics_emulator)
    dynamics_emulator.control.advance_clock(8 * 24 * 3600)

    response = _follow(dynamics_emulator, delta_link)

    assert response.status_code == 200


def test_expiring_every_delta_token_through_the_control_api(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _, delta_link = _initial_sync(dynamics_emulator)
    dynamics_emulator.control.expire_delta_tokens()

    response = _follow(dynamics_emulator, delta_link)

    assert response.json()["error"]["code"] == "0x80044352"


def test_a_full_sync_after_expiry_answers_a_delta_link_that_works(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": "Before"}])
    _initial_sync(dynamics_emulator)
    dynamics_emulator.control.expire_delta_tokens()
    _, fresh_link = _initial_sync(dynamics_emulator)

    response = _follow(dynamics_emulator, fresh_link)

    assert response.status_code == 200
    assert response.json()["value"] == []


def test_table_without_change_tracking_refuses_track_changes(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers(Prefer="odata.track-changes")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/systemusers?$select=fullname", headers=headers
    )

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80072491",
        "message": "Entity systemuser isn't enabled for change tracking.",
    }


def test_change_tracking_can_be_enabled_through_the_control_api(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.define_entity({"logical_name": "systemuser", "change_tracking": True})
    headers = dynamics_emulator.headers(Prefer="odata.track-changes")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/systemusers?$select=fullname", headers=headers
    )

    assert "@odata.deltaLink" in response.json()


def test_filter_is_not_supported_with_track_changes(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    headers = dynamics_emulator.headers(Prefer="odata.track-changes")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/contacts?$select=lastname&$filter=lastname eq 'x'", headers=headers
    )

    assert response.status_code == 400
    assert "isn't supported when Change Tracking is enabled" in response.json()["error"]["message"]


def test_rows_written_while_paging_the_initial_sync_reach_the_next_delta(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    control = dynamics_emulator.control
    control.put_records("contacts", [{"lastname": f"P{i}"} for i in range(4)])
    http = dynamics_emulator.http()
    headers = dynamics_emulator.headers(Prefer="odata.track-changes,odata.maxpagesize=2")
    first = http.get(f"{dynamics_emulator.api_url}/contacts?$select=lastname", headers=headers).json()
    (late,) = control.put_records("contacts", [{"lastname": "Late"}])
    url = first["@odata.nextLink"]
    while "@odata.deltaLink" not in (body := http.get(url, headers=headers).json()):
        url = body["@odata.nextLink"]

    delta = _follow(dynamics_emulator, body["@odata.deltaLink"]).json()

    assert late in [row["contactid"] for row in delta["value"]]


def test_delta_results_larger_than_a_page_are_paged_with_next_links(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    _, delta_link = _initial_sync(dynamics_emulator)
    created = dynamics_emulator.control.put_records("contacts", [{"lastname": f"D{i}"} for i in range(7)])
    http, headers = dynamics_emulator.http(), dynamics_emulator.headers(Prefer="odata.maxpagesize=3")
    url = delta_link
    pages: list[list[str]] = []

    while True:
        body = http.get(url, headers=headers).json()
        pages.append([row["contactid"] for row in body["value"]])
        if "@odata.deltaLink" in body:
            break
        url = body["@odata.nextLink"]

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [record for page in pages for record in page] == created
