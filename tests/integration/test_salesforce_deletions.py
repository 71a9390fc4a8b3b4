"""Deletions on Salesforce against the emulator over HTTPS (SPEC D1, D3): the deleted records of a period,
the id pages of the id-set comparison, and deletes through the writer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.connectors.port import DeletedRecordsConnector, IdSetConnector, RecordWrite, WriteRequest
from crmsync.connectors.salesforce.bulk2 import BulkApi2
from crmsync.connectors.salesforce.writer import SalesforceWriter
from crmsync.errors import (
    BulkJobInProgress,
    ConfigurationError,
    CrmOutcomeUnknown,
    CrmRequestRejected,
    DeletionPeriodRefused,
    TooManyDeletedIds,
)
from crmsync_local.emulators.salesforce.ids import to_18

NOW = datetime(2024, 7, 20, 12, 0, 30, tzinfo=UTC)
GHOST = to_18("003Dn00000ZZZZZ")


@dataclass
class Journal:
    job_id: str | None = None

    def record_job(self, job_id):
        self.job_id = job_id


@pytest.fixture
def crm(salesforce_emulator):
    salesforce_emulator.control.set_clock(NOW)
    salesforce_emulator.control.configure(bulk_in_progress_polls=0)
    return salesforce_emulator


def contacts(crm, count, prefix="C"):
    ids: list[str] = []
    for start in range(0, count, 10_000):
        rows = [{"LastName": f"{prefix}{i}"} for i in range(start, min(count, start + 10_000))]
        ids += crm.control.seed("Contact", rows)
    return ids


def deleted_at(crm, *moments):
    ids = contacts(crm, len(moments), prefix="D")
    for record_id, when in zip(ids, moments, strict=True):
        crm.control.delete("Contact", record_id, deleted_date=when)
    return ids


def calls(crm, method, fragment):
    return sum(n for key, n in crm.control.stats()["calls"].items() if key.startswith(method) and fragment in key)


def all_ids(connector, object_name="Contact"):
    page = connector.read_ids_first(object_name)
    ids, pages = list(page.ids), 1
    while page.next_cursor:
        page = connector.read_ids_next(page.next_cursor)
        ids += page.ids
        pages += 1
    return ids, pages


def instant_writer(connector):
    return SalesforceWriter(connector, bulk=BulkApi2(connector, first_poll_seconds=0, sleep=lambda _: None))


def delete(ids, *, bulk=False):
    records = tuple(RecordWrite(f"p{i}", {"Id": record_id}) for i, record_id in enumerate(ids))
    return WriteRequest("Contact", "delete", records, key_field="Id", bulk=bulk)


# -- deleted records of a period ---------------------------------------------------------------------
def test_the_connector_implements_the_deletion_ports(connector):
    assert isinstance(connector, DeletedRecordsConnector)
    assert isinstance(connector, IdSetConnector)


def test_deletions_of_a_period_are_listed_with_both_ends_included(crm, connector):
    start = datetime(2024, 7, 20, 10, 0, 15, tzinfo=UTC)
    end = datetime(2024, 7, 20, 11, 0, 45, tzinfo=UTC)
    before, at_start, inside, at_end, after = deleted_at(
        crm,
        start - timedelta(seconds=5),
        start,
        start + timedelta(minutes=30),
        end,
        end + timedelta(seconds=5),
    )

    result = connector.read_deleted("Contact", start, end)

    assert [r.crm_id for r in result.records] == [at_start, inside, at_end]
    assert result.records[2].deleted_at == end
    assert before not in {r.crm_id for r in result.records}
    assert after not in {r.crm_id for r in result.records}


def test_latest_date_covered_is_reported_and_never_passes_the_end_of_the_period(crm, connector):
    end = datetime(2024, 7, 20, 11, 0, 45, tzinfo=UTC)

    closed = connector.read_deleted("Contact", end - timedelta(hours=1), end)
    open_ended = connector.read_deleted("Contact", end - timedelta(hours=1), NOW + timedelta(hours=1))

    assert closed.latest_covered == end
    assert open_ended.latest_covered == datetime(2024, 7, 20, 12, 0, tzinfo=UTC)
    assert closed.earliest_available == datetime(2024, 7, 5, 12, 0, tzinfo=UTC)


def test_a_deletion_after_latest_date_covered_is_found_by_the_next_period(crm, connector):
    (late,) = deleted_at(crm, NOW - timedelta(seconds=10))  # the current minute: not covered yet

    first = connector.read_deleted("Contact", NOW - timedelta(hours=1), NOW)
    crm.control.advance_clock(120)
    assert first.latest_covered is not None
    second = connector.read_deleted("Contact", first.latest_covered, NOW + timedelta(minutes=2))

    assert first.records == []
    assert [r.crm_id for r in second.records] == [late]


def test_a_period_within_one_minute_is_still_answered(crm, connector):
    (record_id,) = deleted_at(crm, datetime(2024, 7, 20, 11, 0, 20, tzinfo=UTC))

    result = connector.read_deleted(
        "Contact", datetime(2024, 7, 20, 11, 0, 10, tzinfo=UTC), datetime(2024, 7, 20, 11, 0, 30, tzinfo=UTC)
    )

    assert [r.crm_id for r in result.records] == [record_id]


def test_a_start_older_than_the_retention_raises_deletion_period_refused_naming_the_earliest_date(crm, connector):
    crm.control.configure(deleted_retention_days=2)

    with pytest.raises(DeletionPeriodRefused, match=r"only from 2024-07-18T12:00:00\+00:00") as refused:
        connector.read_deleted("Contact", NOW - timedelta(days=3), NOW)

    assert refused.value.earliest_available == "2024-07-18T12:00:00+00:00"


def test_more_deleted_ids_than_the_limit_raises_too_many_deleted_ids(crm, connector):
    deleted_at(crm, *(NOW - timedelta(hours=h) for h in range(1, 5)))
    crm.control.configure(deleted_id_limit=3)

    with pytest.raises(TooManyDeletedIds, match="split the period"):
        connector.read_deleted("Contact", NOW - timedelta(days=1), NOW)
    assert len(connector.read_deleted("Contact", NOW - timedelta(hours=2, minutes=30), NOW).records) == 2


def test_a_period_ending_before_it_starts_is_refused_before_any_call(crm, connector):
    with pytest.raises(ConfigurationError, match="before it starts"):
        connector.read_deleted("Contact", NOW, NOW - timedelta(hours=1))
    assert connector.api_calls == 0


# -- id pages -----------------------------------------------------------------------------------------
def test_id_pages_list_every_live_id_across_pages_and_none_of_the_deleted(crm, connector):
    ids = contacts(crm, 25)
    for record_id in ids[:5]:
        crm.control.delete("Contact", record_id)
    connector.id_page_records = 7

    found, pages = all_ids(connector)

    assert pages == 3
    assert sorted(found) == sorted(ids[5:])
    assert calls(crm, "POST", "jobs/query") == 1


def test_an_id_cursor_is_plain_json_naming_the_job_and_the_locator(crm, connector):
    contacts(crm, 3)
    connector.id_page_records = 2

    page = connector.read_ids_first("Contact")

    assert page.next_cursor is not None
    assert set(json.loads(page.next_cursor)) == {"job", "locator"}


def test_an_id_query_job_still_running_answers_an_empty_page_with_a_cursor_that_resumes_it(crm, connector):
    ids = contacts(crm, 4)
    crm.control.configure(bulk_in_progress_polls=2)
    connector.id_job_budget_seconds = 0

    first = connector.read_ids_first("Contact")
    assert (first.ids, first.next_cursor is not None) == ([], True)
    with pytest.raises(BulkJobInProgress):
        connector.read_ids_next(first.next_cursor)
    page = connector.read_ids_next(first.next_cursor)

    assert sorted(page.ids) == sorted(ids)
    assert page.next_cursor is None
    assert calls(crm, "POST", "jobs/query") == 1


def test_a_tampered_id_cursor_is_refused_before_any_call(crm, connector):
    for cursor in ("not json", json.dumps({"job": "../../limits", "locator": None}), json.dumps({"locator": "x"})):
        with pytest.raises(ConfigurationError, match="not a Salesforce query job cursor"):
            connector.read_ids_next(cursor)
    assert connector.api_calls == 0


def test_a_failed_id_query_job_is_a_rejected_request(crm, connector):
    with pytest.raises(CrmRequestRejected):
        connector.read_ids_first("NoSuchThing__c")


def test_reading_100000_ids_takes_six_api_calls(crm, connector, capsys):
    contacts(crm, 100_000)
    crm.control.configure(bulk_in_progress_polls=1)
    connector.id_job_budget_seconds = 30

    found, pages = all_ids(connector)

    assert (len(found), len(set(found)), pages) == (100_000, 100_000, 2)
    # token, create the job, two polls (InProgress, JobComplete), two results pages of 50,000
    assert connector.api_calls == 6
    with capsys.disabled():
        print(f"\nSalesforce id-set read of 100,000 Contacts: {connector.api_calls} API calls, token included")


# -- deletes through the writer (SPEC D3) --------------------------------------------------------------
def test_collections_delete_of_250_ids_takes_two_calls(crm, connector):
    ids = contacts(crm, 250)
    writer = SalesforceWriter(connector)

    results = writer.write(delete(ids), Journal())

    assert calls(crm, "DELETE", "composite/sobjects") == 2
    assert [(r.ref, r.crm_id, r.success, r.gone) for r in results] == [
        (f"p{i}", record_id, True, False) for i, record_id in enumerate(ids)
    ]
    assert all(row["IsDeleted"] for row in crm.control.records("Contact"))


def test_deleting_twice_is_harmless_the_second_time_every_record_is_gone(crm, connector):
    ids = contacts(crm, 3)
    writer = SalesforceWriter(connector)
    writer.write(delete(ids), Journal())

    again = writer.write(delete(ids), Journal())

    assert [(r.crm_id, r.success, r.gone, r.errors) for r in again] == [(i, True, True, ()) for i in ids]


def test_an_unknown_id_is_gone_and_a_malformed_id_is_an_error(crm, connector):
    results = SalesforceWriter(connector).write(delete([GHOST, "not-an-id"]), Journal())

    assert (results[0].gone, results[0].success) == (True, True)
    assert (results[1].gone, results[1].errors[0].code) == (False, "MALFORMED_ID")


def test_bulk_delete_reaches_the_same_end_state_and_reports_gone_for_records_already_deleted(crm, connector):
    ids = contacts(crm, 5)
    crm.control.delete("Contact", ids[0])
    journal = Journal()

    results = instant_writer(connector).write(delete([*ids, GHOST], bulk=True), journal)

    assert journal.job_id is not None
    assert [(r.ref, r.success, r.gone) for r in results] == [
        ("p0", True, True),
        ("p1", True, False),
        ("p2", True, False),
        ("p3", True, False),
        ("p4", True, False),
        ("p5", True, True),
    ]
    assert all(row["IsDeleted"] for row in crm.control.records("Contact"))


def test_a_dropped_delete_answer_raises_outcome_unknown_and_sending_again_finishes_the_job(crm, connector):
    ids = contacts(crm, 250)
    crm.control.add_fault(r"^DELETE .*/composite/sobjects", drop_response=True, after=1, times=1)
    writer = SalesforceWriter(connector)

    with pytest.raises(CrmOutcomeUnknown) as unknown:
        writer.write(delete(ids), Journal())
    assert len(unknown.value.completed) == 200
    results = writer.write(delete(ids), Journal())

    assert [r.gone for r in results] == [True] * 250
    assert all(r.success for r in results)


def test_a_delete_record_without_an_id_is_refused_before_any_call(crm, connector):
    request = WriteRequest("Contact", "delete", (RecordWrite("p0", {}),), key_field="Id")

    with pytest.raises(CrmRequestRejected, match="carries no Id"):
        SalesforceWriter(connector).write(request, Journal())
    assert connector.api_calls == 0


def test_records_deleted_by_the_writer_are_listed_as_deleted_in_their_period(crm, connector):
    ids = contacts(crm, 3)
    SalesforceWriter(connector).write(delete(ids), Journal())
    crm.control.advance_clock(120)  # past the minute of the deletion, which Salesforce covers once it ends

    result = connector.read_deleted("Contact", NOW - timedelta(minutes=5), NOW)

    assert sorted(r.crm_id for r in result.records) == sorted(ids)
    assert {r.deleted_at for r in result.records} == {NOW}
