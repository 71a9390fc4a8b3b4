"""Querying the Dataverse Web API emulator with plain requests: paging, $filter, $orderby, $select, keys."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def _get(emulator: DynamicsEmulatorHandle, path: str, **headers: str) -> Any:
    return emulator.http().get(f"{emulator.api_url}/{path}", headers=emulator.headers(**headers))


def _pages(emulator: DynamicsEmulatorHandle, path: str, prefer: str) -> list[list[dict[str, Any]]]:
    """Every page of a query, following @odata.nextLink with the same Prefer header."""
    http, headers = emulator.http(), emulator.headers(Prefer=prefer)
    url: str | None = f"{emulator.api_url}/{path}"
    pages: list[list[dict[str, Any]]] = []
    while url:
        body = http.get(url, headers=headers).json()
        pages.append(body["value"])
        url = body.get("@odata.nextLink")
    return pages


def _seed(emulator: DynamicsEmulatorHandle, records: list[dict[str, Any]]) -> list[str]:
    return emulator.control.put_records("contacts", records)


def test_paging_follows_next_links_with_maxpagesize(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    ids = _seed(dynamics_emulator, [{"lastname": f"Page{i:02d}"} for i in range(23)])
    http, headers = dynamics_emulator.http(), dynamics_emulator.headers(Prefer="odata.maxpagesize=5")
    url: str | None = f"{dynamics_emulator.api_url}/contacts?$select=lastname"
    seen: list[str] = []
    pages = 0

    while url:
        response = http.get(url, headers=headers)
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=5"
        body = response.json()
        seen += [row["contactid"] for row in body["value"]]
        url = body.get("@odata.nextLink")
        assert url is None or "$skiptoken=%3Ccookie%20pagenumber=" in url
        pages += 1

    assert pages == 5
    assert sorted(seen) == sorted(ids)


def test_maxpagesize_above_5000_is_ignored(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"Bulk{i}"} for i in range(5001)])

    response = _get(dynamics_emulator, "contacts?$select=lastname", Prefer="odata.maxpagesize=10000")

    assert len(response.json()["value"]) == 5000
    assert "@odata.nextLink" in response.json()
    assert "Preference-Applied" not in response.headers


def test_count_is_capped_at_5000_with_the_limit_annotation(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"Bulk{i}"} for i in range(5001)])
    prefer = 'odata.maxpagesize=1,odata.include-annotations="Microsoft.Dynamics.CRM.*"'

    body = _get(dynamics_emulator, "contacts?$select=lastname&$count=true", Prefer=prefer).json()

    assert body["@odata.count"] == 5000
    assert body["@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded"] is True


def test_configured_max_page_size_applies_without_a_preference(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"Cfg{i}"} for i in range(12)])
    dynamics_emulator.control.configure(max_page_size=10)

    body = _get(dynamics_emulator, "contacts?$select=lastname").json()

    assert len(body["value"]) == 10
    assert "@odata.nextLink" in body


def test_filter_quoted_value_that_tries_to_inject_matches_literally(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    hostile = "O'Brien' or lastname ne '"
    _seed(dynamics_emulator, [{"lastname": hostile}, {"lastname": "Smith"}, {"lastname": "O'Brien"}])
    literal = hostile.replace("'", "''")

    body = _get(dynamics_emulator, f"contacts?$select=lastname&$filter=lastname eq '{quote(literal)}'").json()

    assert [row["lastname"] for row in body["value"]] == [hostile]


def test_unterminated_literal_is_400_with_the_documented_message(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    response = _get(dynamics_emulator, "contacts?$select=lastname&$filter=lastname eq 'O'Bryan'")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
    )


def test_string_filters_are_case_insensitive(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": "McKay"}, {"lastname": "Mackay"}, {"lastname": "Stubberod"}])

    body = _get(
        dynamics_emulator, "contacts?$select=lastname&$filter=startswith(lastname,'MC') or lastname eq 'STUBBEROD'"
    ).json()

    assert sorted(row["lastname"] for row in body["value"]) == ["McKay", "Stubberod"]


def test_contains_and_endswith_use_like_wildcards(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": "Anderson"}, {"lastname": "Andersen"}, {"lastname": "Sanders"}])

    body = _get(
        dynamics_emulator,
        "contacts?$select=lastname&$filter=contains(lastname,'ders_n') and endswith(lastname,'n')",
    ).json()

    assert sorted(row["lastname"] for row in body["value"]) == ["Andersen", "Anderson"]


def test_logical_operators_and_parentheses_group_as_written(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(
        dynamics_emulator,
        [
            {"firstname": "Ann", "lastname": "A", "gendercode": 2},
            {"firstname": "Bob", "lastname": "B", "gendercode": 1},
            {"firstname": "Cid", "lastname": "C", "gendercode": 1, "statecode": 1},
        ],
    )
    query = "(gendercode eq 1 or firstname eq 'Ann') and not (statecode eq 1)"

    body = _get(dynamics_emulator, f"contacts?$select=firstname&$filter={query}").json()

    assert sorted(row["firstname"] for row in body["value"]) == ["Ann", "Bob"]


def test_ne_does_not_match_null_values(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(
        dynamics_emulator,
        [{"lastname": "A", "firstname": "X"}, {"lastname": "B", "firstname": "Y"}, {"lastname": "C"}],
    )

    body = _get(dynamics_emulator, "contacts?$select=lastname&$filter=firstname ne 'X'").json()

    assert [row["lastname"] for row in body["value"]] == ["B"]


def test_filter_on_null_and_datetime_literals(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(
        dynamics_emulator,
        [
            {"lastname": "Old", "modifiedon": "2023-12-31T23:59:59Z"},
            {"lastname": "New", "modifiedon": "2024-01-01T00:00:01Z", "emailaddress1": "new@example.com"},
            {"lastname": "NewNoMail", "modifiedon": "2024-06-01T00:00:00Z"},
        ],
    )

    body = _get(
        dynamics_emulator,
        "contacts?$select=lastname&$filter=modifiedon gt 2024-01-01T00:00:00Z and emailaddress1 eq null",
    ).json()

    assert [row["lastname"] for row in body["value"]] == ["NewNoMail"]


def test_filter_on_a_lookup_with_a_guid_literal(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])
    _seed(dynamics_emulator, [{"lastname": "Linked", "_parentcustomerid_value": account}, {"lastname": "Alone"}])

    body = _get(
        dynamics_emulator, f"contacts?$select=lastname&$filter=_parentcustomerid_value eq {account}"
    ).json()

    assert [row["lastname"] for row in body["value"]] == ["Linked"]


def test_filter_with_the_in_query_function(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": name} for name in ("OBrian", "O'Bryan", "Smith")])
    query = """Microsoft.Dynamics.CRM.In(PropertyName=@p1,PropertyValues=@p2)&@p1='lastname'&@p2=["OBrian","O'Bryan"]"""

    body = _get(dynamics_emulator, f"contacts?$select=lastname&$filter={quote(query, safe='&=@')}").json()

    assert sorted(row["lastname"] for row in body["value"]) == ["O'Bryan", "OBrian"]


def test_orderby_sorts_by_several_columns_in_both_directions(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(
        dynamics_emulator,
        [
            {"firstname": "b", "lastname": "Same"},
            {"firstname": "a", "lastname": "Same"},
            {"firstname": "z", "lastname": "Alpha"},
            {"firstname": "c", "lastname": None},
        ],
    )

    body = _get(dynamics_emulator, "contacts?$select=firstname&$orderby=lastname asc,firstname desc").json()

    assert [row["firstname"] for row in body["value"]] == ["c", "z", "b", "a"]


def test_paging_follows_the_orderby_across_pages(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"N{i:02d}"} for i in range(9)])
    pages = _pages(dynamics_emulator, "contacts?$select=lastname&$orderby=lastname desc", "odata.maxpagesize=4")

    assert [row["lastname"] for page in pages for row in page] == [f"N{i:02d}" for i in reversed(range(9))]


def test_top_limits_the_rows(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"T{i}"} for i in range(6)])

    body = _get(dynamics_emulator, "contacts?$select=lastname&$top=4").json()

    assert len(body["value"]) == 4
    assert "@odata.nextLink" not in body


def test_top_caps_the_rows_over_pages_of_the_preferred_size(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"T{i}"} for i in range(9)])
    pages = _pages(dynamics_emulator, "contacts?$select=lastname&$top=5", "odata.maxpagesize=2")

    assert [len(page) for page in pages] == [2, 2, 1]


def test_top_below_the_preferred_page_size_answers_one_page(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"T{i}"} for i in range(6)])
    headers = dynamics_emulator.headers(Prefer="odata.maxpagesize=5")

    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/contacts?$select=lastname&$top=3", headers=headers
    )

    assert len(response.json()["value"]) == 3
    assert "@odata.nextLink" not in response.json()
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=5"


def test_unknown_entity_set_is_404_resource_not_found(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _get(dynamics_emulator, "nosuchthings?$select=name")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x8006088a",
        "message": "Resource not found for the segment 'nosuchthings'.",
    }


def test_skip_is_refused(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = _get(dynamics_emulator, "contacts?$select=lastname&$skip=10")

    assert response.status_code == 400


@pytest.mark.parametrize("option", ["$select=nosuchcolumn", "$filter=nosuchcolumn eq 1", "$orderby=nosuchcolumn"])
def test_unknown_property_is_400_could_not_find_a_property(
    dynamics_emulator: DynamicsEmulatorHandle, option: str
) -> None:
    response = _get(dynamics_emulator, f"contacts?{option}")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "0x80060888",
        "message": "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.contact'.",
    }


def test_collection_rows_carry_context_and_weak_etags(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"firstname": "Yvonne", "lastname": "McKay"}])

    body = _get(dynamics_emulator, "contacts?$select=fullname").json()
    (row,) = body["value"]
    stored = dynamics_emulator.control.records("contacts")[0]

    assert body["@odata.context"] == f"{dynamics_emulator.api_url}/$metadata#contacts(fullname)"
    assert row == {
        "@odata.etag": f'W/"{stored["versionnumber"]}"',
        "fullname": "Yvonne McKay",
        "contactid": stored["contactid"],
    }


def test_get_by_id_and_by_alternate_key_return_the_same_record(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (contact_id,) = _seed(dynamics_emulator, [{"lastname": "Key", "emailaddress1": "a@b.c"}])

    by_id = _get(dynamics_emulator, f"contacts({contact_id})?$select=lastname").json()
    by_key = _get(dynamics_emulator, "contacts(emailaddress1='a@b.c')?$select=lastname").json()

    assert by_id == by_key
    assert by_key["@odata.context"].endswith("$metadata#contacts(lastname)/$entity")


def test_missing_record_is_404_object_does_not_exist(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    missing = "00000000-0000-0000-0000-000000000001"

    response = _get(dynamics_emulator, f"contacts({missing})")

    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "0x80040217",
        "message": f"contact With Id = {missing} Does Not Exist",
    }


def test_formatted_values_for_option_sets_lookups_and_dates(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])
    (contact_id,) = _seed(
        dynamics_emulator,
        [
            {
                "lastname": "F",
                "gendercode": 2,
                "birthdate": "1980-05-17",
                "donotemail": True,
                "_parentcustomerid_value": account,
            }
        ],
    )
    prefer = 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'

    response = _get(
        dynamics_emulator,
        f"contacts({contact_id})?$select=gendercode,birthdate,donotemail,_parentcustomerid_value,statecode",
        Prefer=prefer,
    )
    body = response.json()

    formatted = "@OData.Community.Display.V1.FormattedValue"
    assert (
        response.headers["Preference-Applied"]
        == 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    )
    assert body["gendercode" + formatted] == "Female"
    assert body["birthdate"] == "1980-05-17"
    assert body["birthdate" + formatted] == "5/17/1980"
    assert body["donotemail" + formatted] == "Do Not Allow"
    assert body["_parentcustomerid_value" + formatted] == "Contoso"
    assert body["statecode" + formatted] == "Active"


def test_lookup_annotations_name_the_target_table(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])
    (contact_id,) = _seed(dynamics_emulator, [{"lastname": "L", "_parentcustomerid_value": account}])

    body = _get(
        dynamics_emulator,
        f"contacts({contact_id})?$select=_parentcustomerid_value",
        Prefer='odata.include-annotations="*"',
    ).json()

    assert body["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert (
        body["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"]
        == "parentcustomerid_account"
    )


def test_expand_of_a_lookup_navigation_property(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])
    (contact_id,) = _seed(dynamics_emulator, [{"lastname": "L", "_parentcustomerid_value": account}])

    body = _get(
        dynamics_emulator,
        f"contacts({contact_id})?$select=lastname&$expand=parentcustomerid_account($select=name)",
    ).json()

    assert body["parentcustomerid_account"]["name"] == "Contoso"
    assert body["parentcustomerid_account"]["accountid"] == account


def test_count_segment_answers_a_plain_number(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"C{i}"} for i in range(3)])

    response = _get(dynamics_emulator, "contacts/$count")

    assert response.headers["Content-Type"] == "text/plain"
    assert response.text == "3"


def test_filter_on_booleans_and_numbers(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.put_records(
        "accounts",
        [
            {"name": "Big quiet", "numberofemployees": 500, "donotemail": True},
            {"name": "Big loud", "numberofemployees": 800, "donotemail": False},
            {"name": "Small quiet", "numberofemployees": 5, "donotemail": True},
        ],
    )

    body = _get(
        dynamics_emulator, "accounts?$select=name&$filter=donotemail eq true and numberofemployees ge 100"
    ).json()

    assert [row["name"] for row in body["value"]] == ["Big quiet"]


def test_preferences_sent_as_separate_prefer_headers_all_apply(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    _seed(dynamics_emulator, [{"lastname": f"H{i}", "gendercode": 1} for i in range(3)])
    target = urlsplit(dynamics_emulator.api_url)
    connection = http.client.HTTPSConnection(
        target.hostname or "", target.port, context=ssl.create_default_context(cafile=dynamics_emulator.ca_bundle)
    )
    connection.putrequest("GET", f"{target.path}/contacts?$select=gendercode")
    connection.putheader("Authorization", f"Bearer {dynamics_emulator.token()}")
    connection.putheader("Prefer", "odata.maxpagesize=2")
    connection.putheader("Prefer", 'odata.include-annotations="*"')
    connection.endheaders()

    body = json.loads(connection.getresponse().read())
    connection.close()

    assert len(body["value"]) == 2
    assert "gendercode@OData.Community.Display.V1.FormattedValue" in body["value"][0]


def test_retrieve_total_record_count_answers_each_tables_count_by_logical_name(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": f"N{i}"} for i in range(3)])
    http, headers = dynamics_emulator.http(), dynamics_emulator.headers()

    literal = http.get(
        f"{dynamics_emulator.api_url}/RetrieveTotalRecordCount(EntityNames=['contact','account'])", headers=headers
    )
    aliased = http.get(
        f"{dynamics_emulator.api_url}/RetrieveTotalRecordCount(EntityNames=@p)?@p=['contact']", headers=headers
    )

    assert literal.status_code == 200, literal.text
    counts = literal.json()["EntityRecordCountCollection"]
    assert (counts["Count"], counts["Keys"], counts["IsReadOnly"]) == (2, ["contact", "account"], False)
    assert counts["Values"][0] == 3
    assert aliased.json()["EntityRecordCountCollection"]["Values"] == [3]


def test_retrieve_total_record_count_of_an_unknown_table_is_object_does_not_exist(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/RetrieveTotalRecordCount(EntityNames=['nosuchtable'])",
        headers=dynamics_emulator.headers(),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "0x80040217"
