"""The initial transfer's reads against the emulators over HTTPS (SPEC T1): the object's count (Salesforce
`COUNT()`, Dataverse `RetrieveTotalRecordCount`) and the extract - a Bulk API 2.0 query job read in
`Sforce-Locator` pages, a Dataverse change-tracking read in pages ending with a delta link."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.connectors.port import ExtractConnector, RecordQuery
from crmsync.domain.types import CrmFieldType

NOW = datetime(2024, 7, 20, 12, 0, 30, tzinfo=UTC)
SF_TYPES = {"SystemModstamp": CrmFieldType.DATETIME, "HasOptedOutOfEmail": CrmFieldType.BOOLEAN}
SF_QUERY = RecordQuery(
    object="Contact",
    fields=("Id", "SystemModstamp", "LastName", "HasOptedOutOfEmail"),
    window_field="SystemModstamp",
    window_start=datetime(2030, 1, 1, tzinfo=UTC),
    field_types=SF_TYPES,
)
DV_QUERY = RecordQuery(
    object="contact",
    fields=("contactid", "modifiedon", "lastname"),
    window_field="modifiedon",
    field_types={"contactid": CrmFieldType.ID, "modifiedon": CrmFieldType.DATETIME},
)


@pytest.fixture
def crm(salesforce_emulator):
    salesforce_emulator.control.set_clock(NOW)
    salesforce_emulator.control.configure(bulk_in_progress_polls=0)
    return salesforce_emulator


def calls(crm, method, fragment):
    return sum(n for key, n in crm.control.stats()["calls"].items() if key.startswith(method) and fragment in key)


def extract(connector, query, records, tracking=False):
    page = connector.extract_page(query, None, records=records, tracking=tracking)
    pages = [page]
    while page.next_cursor:
        page = connector.extract_page(query, page.next_cursor, records=records, tracking=tracking)
        pages.append(page)
    return pages


def test_both_connectors_implement_the_extract_port(connector, dynamics):
    assert isinstance(connector, ExtractConnector)
    assert isinstance(dynamics, ExtractConnector)


def test_salesforce_counts_an_object_with_soql_count(crm, connector):
    crm.control.seed("Contact", [{"LastName": f"C{i}"} for i in range(7)])

    assert connector.count_records("Contact") == 7
    assert calls(crm, "GET", "query") == 1


def test_salesforce_extracts_every_record_through_one_bulk_query_job_in_locator_pages(crm, connector):
    ids = crm.control.seed("Contact", [{"LastName": f"C{i}", "HasOptedOutOfEmail": i == 0} for i in range(25)])

    pages = extract(connector, SF_QUERY, records=10)

    assert [len(p.records) for p in pages] == [10, 10, 5]
    records = [r for p in pages for r in p.records]
    assert sorted(r["Id"] for r in records) == sorted(ids)  # the window was left out
    assert calls(crm, "POST", "jobs/query") == 1
    assert sum(1 for r in records if r["HasOptedOutOfEmail"] is True) == 1  # typed as REST types it
    assert all(isinstance(r["SystemModstamp"], str) and r["LastName"] for r in records)


def test_a_salesforce_extract_job_still_running_answers_a_cursor_that_picks_the_same_job_up(crm, connector):
    ids = crm.control.seed("Contact", [{"LastName": f"C{i}"} for i in range(4)])
    crm.control.configure(bulk_in_progress_polls=1)
    connector.id_job_budget_seconds = 0

    first = connector.extract_page(SF_QUERY, None, records=10, tracking=False)
    assert (first.records, first.next_cursor is not None) == ([], True)
    page = connector.extract_page(SF_QUERY, first.next_cursor, records=10, tracking=False)

    assert sorted(r["Id"] for r in page.records) == sorted(ids)
    assert calls(crm, "POST", "jobs/query") == 1


def test_dataverse_counts_a_table_with_retrieve_total_record_count(dynamics_emulator, dynamics):
    dynamics_emulator.control.put_records("contacts", [{"lastname": f"T{i}"} for i in range(6)])

    assert dynamics.count_records("contact") == 6


def test_dataverse_extracts_with_change_tracking_and_ends_with_a_delta_link(dynamics_emulator, dynamics):
    ids = dynamics_emulator.control.put_records("contacts", [{"lastname": f"T{i}"} for i in range(7)])

    pages = extract(dynamics, DV_QUERY, records=3, tracking=True)

    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert sorted(r["contactid"] for p in pages for r in p.records) == sorted(ids)
    assert pages[-1].delta_link is not None
    assert "$deltatoken=" in pages[-1].delta_link
    assert all(p.delta_link is None for p in pages[:-1])
