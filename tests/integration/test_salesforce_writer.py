"""The Salesforce writer (sObject Collections and Bulk API 2.0) and one export batch, against the emulator
over HTTPS (SPEC E2, E4)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crmsync.config import parse_config
from crmsync.connectors.port import RecordWrite, WriteRequest
from crmsync.connectors.salesforce.bulk2 import BulkApi2, encode_csv
from crmsync.connectors.salesforce.writer import SalesforceWriter
from crmsync.errors import BulkJobInProgress, CrmOutcomeUnknown
from crmsync.services.export_batch import BatchExporter, SnapshotRecord
from crmsync.services.export_plan import resolve_export_plan
from crmsync_local.emulators.salesforce.ids import to_18

PROFILE_FIELD = {"name": "Profile__c", "type": "string", "length": 64}


@dataclass
class Journal:
    job_id: str | None = None

    def record_job(self, job_id):
        self.job_id = job_id


@pytest.fixture
def crm(salesforce_emulator):
    salesforce_emulator.control.define_object("Lead", fields=[PROFILE_FIELD])
    salesforce_emulator.control.define_object("Contact", fields=[PROFILE_FIELD])
    return salesforce_emulator


def instant_bulk(connector, **options) -> BulkApi2:
    return BulkApi2(connector, first_poll_seconds=0, sleep=lambda _: None, **options)


def leads(n, start=0):
    return tuple(
        RecordWrite(f"p{i}", {"LastName": f"Lima{i}", "Company": "Acme", "Profile__c": f"p{i}"})
        for i in range(start, start + n)
    )


def insert(records, *, bulk=False):
    return WriteRequest("Lead", "insert", records, match_field="Profile__c", bulk=bulk)


def stored(crm, sobject="Lead"):
    return crm.control.records(sobject)


def test_collections_insert_then_update_answer_one_result_per_record_in_order(crm, connector):
    writer = SalesforceWriter(connector)
    created = writer.write(insert(leads(3)), Journal())
    assert [(r.ref, r.created, r.success) for r in created] == [
        ("p0", True, True),
        ("p1", True, True),
        ("p2", True, True),
    ]
    update = WriteRequest(
        "Lead",
        "update",
        (
            RecordWrite("p1", {"Id": created[1].crm_id, "LastName": "Changed"}),
            RecordWrite("ghost", {"Id": to_18("00QDn00000ZZZZZ")}),
        ),
        key_field="Id",
    )
    updated = writer.write(update, Journal())
    assert updated[0].success
    assert not updated[0].created
    assert updated[1].errors[0].code == "INVALID_CROSS_REFERENCE_KEY"


def test_a_dropped_insert_answer_raises_outcome_unknown_with_the_chunks_already_done(crm, connector):
    crm.control.add_fault(r"^POST .*/composite/sobjects$", drop_response=True, after=1, times=1)
    with pytest.raises(CrmOutcomeUnknown) as unknown:
        SalesforceWriter(connector).write(insert(leads(450)), Journal())
    assert len(unknown.value.completed) == 200
    assert len(stored(crm)) == 400


def test_a_dropped_update_answer_is_simply_sent_again(crm, connector):
    (lead,) = crm.control.seed("Lead", [{"LastName": "Before", "Company": "Acme"}])
    crm.control.add_fault(r"^PATCH .*/composite/sobjects$", drop_response=True, times=1)
    (result,) = SalesforceWriter(connector).write(
        WriteRequest("Lead", "update", (RecordWrite("p0", {"Id": lead, "LastName": "After"}),), key_field="Id"),
        Journal(),
    )
    assert result.success
    assert stored(crm)[0]["LastName"] == "After"


def test_a_burst_of_rate_limit_refusals_is_retried_and_every_record_is_written_once(crm, connector):
    crm.control.add_fault(r"^POST .*/composite/sobjects$", status=429, times=3)
    results = SalesforceWriter(connector).write(insert(leads(10)), Journal())
    assert all(r.success for r in results)
    assert len(stored(crm)) == 10


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_gateway_error_on_an_insert_is_an_unknown_outcome_never_sent_again_in_the_call(crm, connector, status):
    crm.control.add_fault(r"^POST .*/composite/sobjects$", status=status, after=1, times=1, after_apply=True)
    with pytest.raises(CrmOutcomeUnknown) as unknown:
        SalesforceWriter(connector).write(insert(leads(450)), Journal())
    assert len(unknown.value.completed) == 200
    assert len(stored(crm)) == 400


def test_an_upsert_by_external_id_reports_created_then_updated(crm, connector):
    writer = SalesforceWriter(connector)
    request = WriteRequest(
        "Lead",
        "upsert",
        (RecordWrite("p0", {"External_Id__c": "p0", "LastName": "A", "Company": "Acme"}),),
        key_field="External_Id__c",
    )
    first, second = writer.write(request, Journal()), writer.write(request, Journal())
    assert (first[0].created, second[0].created, first[0].crm_id == second[0].crm_id) == (True, False, True)


def test_bulk_insert_matches_results_to_records_by_the_correlation_column(crm, connector):
    writer = SalesforceWriter(connector, bulk=instant_bulk(connector))
    records = (*leads(3), RecordWrite("bad", {"Company": "Acme", "Profile__c": "bad"}))
    results = writer.write(insert(records, bulk=True), Journal())
    assert [(r.ref, r.success) for r in results] == [("p0", True), ("p1", True), ("p2", True), ("bad", False)]
    assert results[3].errors[0].code == "REQUIRED_FIELD_MISSING"
    assert {r["Id"] for r in stored(crm)} == {r.crm_id for r in results[:3]}


def test_a_bulk_job_left_open_by_a_crash_is_aborted_and_replaced(crm, connector):
    bulk = instant_bulk(connector)
    orphan = bulk.create_ingest_job("Lead", "insert")
    bulk.upload(orphan.id, encode_csv([r.fields for r in leads(2)], ["LastName", "Company", "Profile__c"]))
    results = SalesforceWriter(connector, bulk=bulk).write(insert(leads(2), bulk=True), Journal(orphan.id))
    assert all(r.success for r in results)
    assert bulk.job(orphan.id).state == "Aborted"
    assert len(stored(crm)) == 2


def test_a_bulk_job_closed_before_a_crash_is_picked_up_not_sent_again(crm, connector):
    bulk = instant_bulk(connector)
    job = bulk.create_ingest_job("Lead", "insert")
    bulk.upload(job.id, encode_csv([r.fields for r in leads(5)], ["LastName", "Company", "Profile__c"]))
    bulk.close(job.id)
    results = SalesforceWriter(connector, bulk=bulk).write(insert(leads(5), bulk=True), Journal(job.id))
    assert [r.ref for r in results if r.created] == [f"p{i}" for i in range(5)]
    assert len(stored(crm)) == 5


def test_a_bulk_job_longer_than_the_poll_budget_is_resumed_by_the_next_attempt(crm, connector):
    crm.control.configure(bulk_in_progress_polls=3)
    clock = iter(range(0, 10_000, 10))
    bulk = instant_bulk(connector, clock=lambda: next(clock))
    writer, journal = SalesforceWriter(connector, bulk=bulk, bulk_budget_seconds=15), Journal()
    with pytest.raises(BulkJobInProgress):
        writer.write(insert(leads(4), bulk=True), journal)
    assert journal.job_id is not None
    writer = SalesforceWriter(connector, bulk=bulk, bulk_budget_seconds=1_000)
    results = writer.write(insert(leads(4), bulk=True), journal)
    assert len(results) == 4
    assert len(stored(crm)) == 4


def test_find_splits_a_long_value_list_into_several_queries_and_finds_every_record(crm, connector):
    crm.control.seed(
        "Lead", [{"LastName": f"L{i}", "Company": "A", "Email": f"person.{i}@example.com"} for i in range(600)]
    )
    crm.control.reset_stats()
    found = connector.find("Lead", "Email", [f"PERSON.{i}@example.com" for i in range(600)], ["Id", "Email"])
    assert len(found) == 600
    queries = sum(n for key, n in crm.control.stats()["calls"].items() if key.startswith("GET") and "query" in key)
    assert 1 < queries < 10


def export_plan(connector, **overrides):
    config = parse_config(
        {
            "version": 1,
            "connections": [
                {"name": "sf", "kind": "salesforce", "instance_url": "https://x.my.salesforce.com", "secret": "s"}
            ],
            "syncs": [
                {
                    "id": "leads",
                    "operation": "export",
                    "connection": "sf",
                    "object": "Lead",
                    "correlation_field": "Profile__c",
                    "fields": [
                        {"remote": "LastName", "local": "lastName"},
                        {"remote": "Company", "local": "company"},
                        {"remote": "Email", "local": "email"},
                        {"remote": "NumberOfEmployees", "local": "employees"},
                        {"remote": "DoNotCall", "local": "doNotCall"},
                    ],
                    **overrides,
                }
            ],
        }
    )
    return resolve_export_plan(config.syncs[0], connector.describe, "salesforce")


def population():
    people = [
        SnapshotRecord(
            f"p{i}",
            {
                "lastName": f"Lima{i}",
                "company": "Acme",
                "email": f"p{i}@example.com",
                "employees": i,
                "doNotCall": i % 2 == 0,
            },
        )
        for i in range(30)
    ]
    return [*people, SnapshotRecord("bad", {"company": "Acme", "email": "not-an-address"})]


def end_state(crm):
    return sorted(
        (r["Profile__c"], r["LastName"], r["Email"], r["NumberOfEmployees"], r["DoNotCall"]) for r in stored(crm)
    )


def test_the_bulk_path_and_the_collections_path_give_the_same_end_state(crm, connector):
    plan = export_plan(connector)
    outcomes = {}
    states = {}
    for bulk in (False, True):
        for lead in stored(crm):
            crm.control.delete("Lead", lead["Id"], hard=True)
        writer = SalesforceWriter(connector, bulk=instant_bulk(connector))
        result = BatchExporter(plan, writer, lambda slot: Journal(), bulk=bulk, interrupted=False).export(
            population()
        )
        outcomes[bulk] = (result.counts(), sorted((r.profile_id, r.error_symbol) for r in result.rejects))
        states[bulk] = end_state(crm)
    assert states[False] == states[True]
    assert len(states[True]) == 30
    assert outcomes[False] == outcomes[True]
    assert outcomes[True][1] == [("bad", "REQUIRED_FIELD_MISSING")]


def test_bulk_query_streams_every_row_across_result_pages(crm, connector):
    crm.control.seed("Lead", [{"LastName": f"L{i}", "Company": "A"} for i in range(25)])
    bulk = instant_bulk(connector)
    job = bulk.wait(bulk.create_query_job("SELECT Id, LastName FROM Lead").id, budget_seconds=60, query=True)
    rows = list(bulk.query_rows(job.id, page_records=10))
    assert sorted(r["LastName"] for r in rows) == sorted(f"L{i}" for i in range(25))


def test_bulk_query_all_includes_deleted_records(crm, connector):
    first, _ = crm.control.seed(
        "Lead", [{"LastName": "Gone", "Company": "A"}, {"LastName": "Here", "Company": "A"}]
    )
    crm.control.delete("Lead", first)
    rows = list(instant_bulk(connector).query("SELECT Id, IsDeleted FROM Lead", include_deleted=True))
    assert sorted(r["IsDeleted"] for r in rows) == ["false", "true"]


def test_bulk_delete_job_reports_deleted_and_unknown_ids(crm, connector):
    (lead,) = crm.control.seed("Lead", [{"LastName": "Doomed", "Company": "A"}])
    ghost = to_18("00QDn00000ZZZZZ")
    results = instant_bulk(connector).ingest("Lead", "delete", encode_csv([{"Id": lead}, {"Id": ghost}], ["Id"]))
    assert [r["sf__Id"] for r in results.successful] == [lead]
    assert results.failed[0]["sf__Error"].startswith("INVALID_CROSS_REFERENCE_KEY")
    assert stored(crm)[0]["IsDeleted"] is True


def test_collections_delete_answers_one_result_per_id(crm, connector):
    (lead,) = crm.control.seed("Lead", [{"LastName": "Doomed", "Company": "A"}])
    results = connector.collections.delete([lead, to_18("00QDn00000ZZZZZ")])
    assert [(r.id, r.success) for r in results] == [(lead, True), (to_18("00QDn00000ZZZZZ"), False)]
    assert results[1].errors[0].code == "INVALID_CROSS_REFERENCE_KEY"
