"""SOQL through simple-salesforce: paging, queryAll, the parser's reach and its error messages."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest
from simple_salesforce.format import format_soql


def _error(raised: pytest.ExceptionInfo[Exception]) -> dict[str, object]:
    content = raised.value.content  # type: ignore[attr-defined]
    return content[0]


def _names(result: dict[str, object]) -> list[str]:
    return [r["LastName"] for r in result["records"]]  # type: ignore[index,union-attr]


@pytest.fixture
def people(salesforce_emulator):
    """Five contacts with a spread of values; returns their ids by last name."""
    rows = [
        {
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Email": "ada@example.com",
            "Birthdate": "1815-12-10",
            "DoNotCall": True,
            "LeadSource": "Web",
            "LastModifiedDate": "2024-07-01T10:00:00Z",
        },
        {
            "FirstName": "Alan",
            "LastName": "Turing",
            "Email": "alan@example.org",
            "Birthdate": "1912-06-23",
            "LeadSource": "Other",
            "LastModifiedDate": "2024-07-01T12:00:00Z",
        },
        {
            "FirstName": "Grace",
            "LastName": "Hopper",
            "Birthdate": "1906-12-09",
            "LeadSource": "Web",
            "LastModifiedDate": "2024-07-02T09:00:00Z",
        },
        {"LastName": "O'Brien", "Email": "ob@example.com", "LastModifiedDate": "2024-07-03T00:00:00Z"},
        {
            "FirstName": "Edsger",
            "LastName": "Dijkstra",
            "Email": "100%_sure@example.com",
            "LastModifiedDate": "2024-07-04T00:00:00Z",
        },
    ]
    ids = salesforce_emulator.control.seed("Contact", rows)
    return dict(zip([r["LastName"] for r in rows], ids, strict=True))


# -- paging -----------------------------------------------------------------------------------------------------
def test_query_pages_with_next_records_url(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i:04d}"} for i in range(4500)])

    first = salesforce_client.query("SELECT Id, LastName FROM Contact ORDER BY LastName")

    assert (first["totalSize"], first["done"], len(first["records"])) == (4500, False, 2000)
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    second = salesforce_client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    third = salesforce_client.query_more(second["nextRecordsUrl"], identifier_is_url=True)
    assert (len(second["records"]), second["done"]) == (2000, False)
    assert (len(third["records"]), third["done"], "nextRecordsUrl" in third) == (500, True, False)
    assert third["records"][-1]["LastName"] == "P4499"


def test_query_more_by_locator_id(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(2100)])
    first = salesforce_client.query("SELECT Id FROM Contact")

    locator = first["nextRecordsUrl"].rsplit("/", 1)[1]
    assert len(salesforce_client.query_more(locator)["records"]) == 100


def test_query_all_walks_every_page(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(5001)])

    result = salesforce_client.query_all("SELECT Id FROM Contact")

    assert result["totalSize"] == 5001
    assert len({r["Id"] for r in result["records"]}) == 5001


def test_batch_size_header_is_honoured(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(700)])

    result = salesforce_client.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=300"})

    assert len(result["records"]) == 300
    assert result["nextRecordsUrl"].endswith("-300")


def test_batch_size_below_the_minimum_is_raised_to_200(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(300)])

    result = salesforce_client.query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=10"})

    assert len(result["records"]) == 200


def test_configured_page_size_overrides_the_client(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(25)])
    salesforce_emulator.control.configure(query_page_size=10)

    pages = 1
    result = salesforce_client.query("SELECT Id FROM Contact")
    while not result["done"]:
        result = salesforce_client.query_more(result["nextRecordsUrl"], identifier_is_url=True)
        pages += 1

    assert pages == 3


def test_cursor_is_a_snapshot_of_the_matching_rows(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(30)])
    salesforce_emulator.control.configure(query_page_size=10)
    page = salesforce_client.query("SELECT LastName FROM Contact")
    salesforce_emulator.control.seed("Contact", [{"LastName": f"Late{i}"} for i in range(30)])

    names = _names(page)
    while not page["done"]:
        page = salesforce_client.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        names += _names(page)

    assert page["totalSize"] == 30
    assert sorted(names) == sorted(f"P{i}" for i in range(30))


def test_unknown_locator_is_invalid_query_locator(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query_more("01gDn0000000001-2000")

    assert _error(raised) == {"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}


def test_locator_expires_after_fifteen_idle_minutes(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}"} for i in range(20)])
    salesforce_emulator.control.configure(query_page_size=10)
    salesforce_emulator.control.set_clock("2024-07-01T10:00:00Z")
    first = salesforce_client.query("SELECT Id FROM Contact")
    salesforce_emulator.control.advance_clock(16 * 60)

    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert _error(raised)["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_one_hundred_thousand_records_page_through_in_two_thousand_row_pages(
    salesforce_emulator, salesforce_client
):
    control = salesforce_emulator.control
    for chunk in range(10):
        control.seed(
            "Contact", [{"LastName": f"N{chunk}-{i}", "Email": f"n{chunk}.{i}@example.com"} for i in range(10_000)]
        )
    control.reset_stats()

    ids = [
        r["Id"]
        for r in salesforce_client.query_all_iter("SELECT Id, LastName, Email, SystemModstamp FROM Contact")
    ]

    assert (len(ids), len(set(ids))) == (100_000, 100_000)
    query_calls = sum(
        n for call, n in control.stats()["calls"].items() if call.startswith("GET") and "query" in call
    )
    assert query_calls == 50


# -- queryAll and deleted rows ------------------------------------------------------------------------------------
def test_query_all_shows_deleted_rows_and_query_hides_them(salesforce_client, people):
    salesforce_client.Contact.delete(people["Turing"])

    live = salesforce_client.query("SELECT Id FROM Contact")
    everything = salesforce_client.query(
        "SELECT Id, IsDeleted FROM Contact WHERE LastName = 'Turing'", include_deleted=True
    )

    assert live["totalSize"] == 4
    assert everything["records"][0]["IsDeleted"] is True


def test_query_all_pages_use_the_query_all_resource(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"P{i}", "IsDeleted": True} for i in range(2500)])

    first = salesforce_client.query("SELECT Id FROM Contact", include_deleted=True)

    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/queryAll/")
    assert salesforce_client.query_all("SELECT Id FROM Contact", include_deleted=True)["totalSize"] == 2500


# -- the language ----------------------------------------------------------------------------------------------------
def test_field_names_are_case_insensitive_and_answered_in_canonical_case(salesforce_client, people):
    record = salesforce_client.query("select ID, lastname, EMAIL from contact where LASTNAME = 'Hopper'")[
        "records"
    ][0]

    assert list(record) == ["attributes", "Id", "LastName", "Email"]
    assert record["attributes"]["type"] == "Contact"


def test_string_equality_is_case_insensitive(salesforce_client, people):
    assert _names(salesforce_client.query("SELECT LastName FROM Contact WHERE LastName = 'TURING'")) == ["Turing"]


def test_and_or_not_with_parentheses(salesforce_client, people):
    result = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE (LeadSource = 'Web' OR LeadSource = 'Other') "
        "AND NOT (DoNotCall = true) ORDER BY LastName"
    )

    assert _names(result) == ["Hopper", "Turing"]


def test_mixing_and_with_or_needs_parentheses(salesforce_client, people):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query(
            "SELECT Id FROM Contact WHERE LeadSource = 'Web' AND DoNotCall = true OR Email = null"
        )

    assert _error(raised)["errorCode"] == "MALFORMED_QUERY"


def test_in_and_not_in(salesforce_client, people):
    inside = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE LastName IN ('Turing', 'hopper') ORDER BY LastName"
    )
    outside = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE LastName NOT IN ('Turing', 'Hopper', 'Lovelace') ORDER BY LastName"
    )

    assert _names(inside) == ["Hopper", "Turing"]
    assert _names(outside) == ["Dijkstra", "O'Brien"]


def test_like_with_percent_and_underscore(salesforce_client, people):
    assert _names(salesforce_client.query("SELECT LastName FROM Contact WHERE Email LIKE '%.org'")) == ["Turing"]
    assert _names(salesforce_client.query("SELECT LastName FROM Contact WHERE LastName LIKE 'h_pper'")) == [
        "Hopper"
    ]


def test_escaped_percent_in_like_is_a_literal(salesforce_client, people):
    result = salesforce_client.query(r"SELECT LastName FROM Contact WHERE Email LIKE '100\%\_sure%'")

    assert _names(result) == ["Dijkstra"]


def test_null_comparisons(salesforce_client, people):
    without = salesforce_client.query("SELECT LastName FROM Contact WHERE Email = null")
    with_email = salesforce_client.query("SELECT COUNT() FROM Contact WHERE Email != null")

    assert _names(without) == ["Hopper"]
    assert with_email["totalSize"] == 4


def test_not_equal_includes_nulls(salesforce_client, people):
    result = salesforce_client.query("SELECT COUNT() FROM Contact WHERE Email != 'ada@example.com'")

    assert result["totalSize"] == 4


def test_date_literal_compares_as_a_date(salesforce_client, people):
    result = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE Birthdate < 1910-01-01 ORDER BY Birthdate"
    )

    assert _names(result) == ["Lovelace", "Hopper"]


def test_datetimes_compare_as_instants_across_offsets(salesforce_client, people):
    # 2024-07-01T13:30:00+02:00 is 11:30Z: only Lovelace (10:00Z) is earlier.
    result = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE LastModifiedDate < 2024-07-01T13:30:00+02:00"
    )
    fractional = salesforce_client.query(
        "SELECT LastName FROM Contact WHERE LastModifiedDate >= 2024-07-04T00:00:00.000Z"
    )

    assert _names(result) == ["Lovelace"]
    assert _names(fractional) == ["Dijkstra"]


def test_relative_date_literals_follow_the_emulated_clock(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed(
        "Contact",
        [
            {"LastName": "Recent", "LastModifiedDate": "2024-07-09T23:00:00Z"},
            {"LastName": "Old", "LastModifiedDate": "2024-06-01T00:00:00Z"},
        ],
    )
    salesforce_emulator.control.set_clock("2024-07-10T08:00:00Z")

    assert _names(
        salesforce_client.query("SELECT LastName FROM Contact WHERE LastModifiedDate = LAST_N_DAYS:3")
    ) == ["Recent"]
    assert _names(salesforce_client.query("SELECT LastName FROM Contact WHERE LastModifiedDate < YESTERDAY")) == [
        "Old"
    ]


def test_order_by_several_fields_with_nulls_last(salesforce_client, people):
    result = salesforce_client.query("SELECT LastName FROM Contact ORDER BY Email DESC NULLS LAST, LastName ASC")

    assert _names(result) == ["O'Brien", "Turing", "Lovelace", "Dijkstra", "Hopper"]


def test_order_by_ascending_puts_nulls_first_by_default(salesforce_client, people):
    assert _names(salesforce_client.query("SELECT LastName FROM Contact ORDER BY Email LIMIT 1")) == ["Hopper"]


def test_limit_and_offset(salesforce_client, people):
    result = salesforce_client.query("SELECT LastName FROM Contact ORDER BY LastName LIMIT 2 OFFSET 1")

    assert _names(result) == ["Hopper", "Lovelace"]
    assert result["totalSize"] == 2


def test_offset_above_two_thousand_is_refused(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Contact OFFSET 2001")

    assert _error(raised)["errorCode"] == "NUMBER_OUTSIDE_VALID_RANGE"


def test_count_returns_total_size_only(salesforce_client, people):
    result = salesforce_client.query("SELECT COUNT() FROM Contact WHERE LeadSource = 'Web'")

    assert result == {"totalSize": 2, "done": True, "records": []}


def test_max_and_min_of_a_datetime_are_formatted_as_the_api_returns_them(salesforce_client, people):
    result = salesforce_client.query("SELECT MAX(LastModifiedDate) latest, MIN(LastModifiedDate) FROM Contact")

    row = result["records"][0]
    assert (row["attributes"]["type"], row["latest"], row["expr1"]) == (
        "AggregateResult",
        "2024-07-04T00:00:00.000+0000",
        "2024-07-01T10:00:00.000+0000",
    )


def test_max_and_min_of_a_date_and_a_string(salesforce_client, people):
    result = salesforce_client.query("SELECT MAX(Birthdate), MIN(LastName) FROM Contact WHERE Birthdate != null")

    assert result["records"][0]["expr0"] == "1912-06-23"
    assert result["records"][0]["expr1"] == "Hopper"


def test_sum_and_avg_of_a_number_ignore_nulls(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed(
        "Lead",
        [
            {"LastName": "A", "Company": "X", "NumberOfEmployees": 10},
            {"LastName": "B", "Company": "X", "NumberOfEmployees": 30},
            {"LastName": "C", "Company": "X"},
        ],
    )

    result = salesforce_client.query("SELECT SUM(NumberOfEmployees) total, AVG(NumberOfEmployees) FROM Lead")

    assert (result["records"][0]["total"], result["records"][0]["expr1"]) == (40, 20)


def test_max_over_no_row_is_null(salesforce_client):
    result = salesforce_client.query("SELECT MAX(LastModifiedDate) FROM Contact WHERE LastName = 'Nobody'")

    assert result["records"][0]["expr0"] is None


def test_sum_of_a_text_field_is_refused(salesforce_client, people):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT SUM(LastName) FROM Contact")

    assert _error(raised)["errorCode"] == "INVALID_FIELD"
    assert "does not support aggregate operator SUM" in str(_error(raised)["message"])


def test_parent_relationship_fields(salesforce_client):
    account_id = salesforce_client.Account.create({"Name": "Analytical Engines"})["id"]
    salesforce_client.Contact.create({"LastName": "Babbage", "AccountId": account_id})
    salesforce_client.Contact.create({"LastName": "Orphan"})

    records = salesforce_client.query(
        "SELECT LastName, Account.Name, Owner.Username FROM Contact ORDER BY LastName"
    )["records"]

    assert records[0]["Account"]["Name"] == "Analytical Engines"
    assert records[0]["Account"]["attributes"]["type"] == "Account"
    assert records[0]["Owner"]["Username"] == "integration@crmsync.example"
    assert records[1]["Account"] is None


def test_soql_injection_stays_inside_its_literal(salesforce_client, people):
    hostile = "x' OR Id != '"
    query = format_soql("SELECT Id FROM Contact WHERE LastName = {}", hostile)

    assert query == r"SELECT Id FROM Contact WHERE LastName = 'x\' OR Id != \''"
    assert salesforce_client.query(query)["totalSize"] == 0


def test_escaped_quote_matches_a_name_with_an_apostrophe(salesforce_client, people):
    query = format_soql("SELECT LastName FROM Contact WHERE LastName = {}", "O'Brien")

    assert _names(salesforce_client.query(query)) == ["O'Brien"]


def test_unterminated_string_is_malformed_query(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Contact WHERE LastName = 'x")

    assert _error(raised)["errorCode"] == "MALFORMED_QUERY"


def test_syntax_error_is_malformed_query_with_position(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FORM Contact")

    error = _error(raised)
    assert error["errorCode"] == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:11" in str(error["message"])


def test_unknown_field_is_invalid_field_with_salesforce_wording(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id, Shoe_Size__c FROM Contact")

    error = _error(raised)
    assert error["errorCode"] == "INVALID_FIELD"
    assert error["message"] == (
        "\nSELECT Id, Shoe_Size__c FROM Contact\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Shoe_Size__c' on entity 'Contact'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )


def test_unknown_object_is_invalid_type(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Shoe__c")

    error = _error(raised)
    assert error["errorCode"] == "INVALID_TYPE"
    assert "sObject type 'Shoe__c' is not supported" in str(error["message"])


def test_quoted_value_for_a_date_field_is_refused(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Contact WHERE Birthdate = '2020-01-01'")

    assert "must be of type date and should not be enclosed in quotes" in str(_error(raised)["message"])


def test_malformed_id_literal_is_invalid_query_filter_operator(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.query("SELECT Id FROM Contact WHERE Id = 'nope'")

    assert _error(raised)["errorCode"] == "INVALID_QUERY_FILTER_OPERATOR"


def test_fifteen_character_id_literal_matches(salesforce_client, people):
    short = people["Hopper"][:15]

    assert _names(salesforce_client.query(format_soql("SELECT LastName FROM Contact WHERE Id = {}", short))) == [
        "Hopper"
    ]
