"""Bulk API 2.0 through simple-salesforce's `bulk2` (ingest and query jobs) and its raw job client."""

from __future__ import annotations

import csv
import io

import pytest
from simple_salesforce.bulk2 import Operation
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceOperationError,
)
from simple_salesforce.format import format_soql

from crmsync_local.emulators.salesforce.ids import to_18

WAIT = 0.02  # simple-salesforce sleeps this long before its first poll


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_bulk_insert_reports_processed_and_failed(salesforce_client):
    results = salesforce_client.bulk2.Contact.insert(
        records=[{"LastName": "Bulk1", "Email": "b1@example.com"}, {"LastName": "", "Email": "b2@example.com"}],
        wait=WAIT,
    )

    assert results[0]["numberRecordsProcessed"] == 2
    assert results[0]["numberRecordsFailed"] == 1
    assert salesforce_client.query("SELECT COUNT() FROM Contact")["totalSize"] == 1


def test_successful_results_carry_sf_id_sf_created_and_the_original_columns(salesforce_client):
    job_id = salesforce_client.bulk2.Contact.insert(
        records=[{"LastName": "Ok", "Email": "ok@example.com"}], wait=WAIT
    )[0]["job_id"]

    rows = _rows(salesforce_client.bulk2.Contact.get_successful_records(job_id))

    assert list(rows[0])[:2] == ["sf__Id", "sf__Created"]
    assert set(list(rows[0])[2:]) == {"LastName", "Email"}  # simple-salesforce orders columns as a set does
    assert rows[0]["sf__Id"].startswith("003")
    assert rows[0]["sf__Created"] == "true"
    assert rows[0]["Email"] == "ok@example.com"


def test_failed_results_format_sf_error_as_salesforce_does(salesforce_client):
    job_id = salesforce_client.bulk2.Contact.insert(
        records=[{"LastName": "", "Email": "x@example.com"}, {"LastName": "Bad mail", "Email": "nope"}], wait=WAIT
    )[0]["job_id"]

    rows = _rows(salesforce_client.bulk2.Contact.get_failed_records(job_id))

    assert [r["sf__Error"] for r in rows] == [
        "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
        "INVALID_EMAIL_ADDRESS:Email: invalid email address: nope:Email --",
    ]
    assert rows[0]["sf__Id"] == ""


def test_a_poll_sees_in_progress_before_job_complete(salesforce_client):
    client = salesforce_client.bulk2.Contact._client
    job = client.create_job(Operation.insert)
    client.upload_job_data(job["id"], "LastName\nPolled\n")
    closed = client.close_job(job["id"])

    states = [client.get_job(job["id"], False)["state"] for _ in range(3)]

    assert closed["state"] == "UploadComplete"
    assert states == ["InProgress", "JobComplete", "JobComplete"]


def test_bulk_upsert_marks_created_and_updated_rows(salesforce_client):
    existing = salesforce_client.Contact.create({"LastName": "Before", "External_Id__c": "U-1"})["id"]

    result = salesforce_client.bulk2.Contact.upsert(
        records=[{"External_Id__c": "U-1", "LastName": "After"}, {"External_Id__c": "U-2", "LastName": "New"}],
        external_id_field="External_Id__c",
        wait=WAIT,
    )[0]
    rows = {
        r["External_Id__c"]: r
        for r in _rows(salesforce_client.bulk2.Contact.get_successful_records(result["job_id"]))
    }

    assert (rows["U-1"]["sf__Id"], rows["U-1"]["sf__Created"]) == (existing, "false")
    assert rows["U-2"]["sf__Created"] == "true"
    assert salesforce_client.Contact.get(existing)["LastName"] == "After"


def test_bulk_update_with_na_sets_a_field_to_null_and_empty_leaves_it(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Keep", "Phone": "123", "Title": "Dr"})["id"]

    salesforce_client.bulk2.Contact.update(records=[{"Id": record_id, "Phone": "#N/A", "Title": ""}], wait=WAIT)

    record = salesforce_client.Contact.get(record_id)
    assert (record["Phone"], record["Title"]) == (None, "Dr")


def test_bulk_delete_then_deleting_again_is_entity_is_deleted(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Doomed"})["id"]

    first = salesforce_client.bulk2.Contact.delete(records=[{"Id": record_id}], wait=WAIT)[0]
    second = salesforce_client.bulk2.Contact.delete(records=[{"Id": record_id}], wait=WAIT)[0]

    assert first["numberRecordsFailed"] == 0
    assert _rows(salesforce_client.bulk2.Contact.get_failed_records(second["job_id"]))[0]["sf__Error"] == (
        "ENTITY_IS_DELETED:entity is deleted:--"
    )
    deleted = salesforce_client.query(
        format_soql("SELECT IsDeleted FROM Contact WHERE Id = {}", record_id), include_deleted=True
    )
    assert deleted["records"][0]["IsDeleted"] is True


def test_bulk_delete_of_an_unknown_id_is_invalid_cross_reference_key(salesforce_client):
    result = salesforce_client.bulk2.Contact.delete(records=[{"Id": to_18("003Dn00000ZZZZZ")}], wait=WAIT)[0]

    error = _rows(salesforce_client.bulk2.Contact.get_failed_records(result["job_id"]))[0]["sf__Error"]
    assert error.startswith("INVALID_CROSS_REFERENCE_KEY:")


def test_bulk_hard_delete_skips_the_recycle_bin(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Shredded"})["id"]

    salesforce_client.bulk2.Contact.hard_delete(records=[{"Id": record_id}], wait=WAIT)

    assert salesforce_client.query("SELECT COUNT() FROM Contact", include_deleted=True)["totalSize"] == 0


def test_unknown_column_fails_the_job(salesforce_client):
    with pytest.raises(SalesforceOperationError) as raised:
        salesforce_client.bulk2.Contact.insert(records=[{"LastName": "X", "Shoe_Size__c": "42"}], wait=WAIT)

    assert "InvalidBatch : Field name not found : Shoe_Size__c" in str(raised.value)


def test_line_ending_that_does_not_match_the_job_fails_it(salesforce_client):
    client = salesforce_client.bulk2.Contact._client
    job = client.create_job(Operation.insert)
    client.upload_job_data(job["id"], "LastName\r\nCrlf\r\n")
    client.close_job(job["id"])
    client.get_job(job["id"], False)

    info = client.get_job(job["id"], False)

    assert info["state"] == "Failed"
    assert info["errorMessage"].startswith("ClientInputError : LineEnding is invalid on user data")


def test_uploading_twice_to_one_job_is_refused(salesforce_client):
    client = salesforce_client.bulk2.Contact._client
    job = client.create_job(Operation.insert)
    client.upload_job_data(job["id"], "LastName\nOnce\n")

    with pytest.raises(SalesforceMalformedRequest) as raised:
        client.upload_job_data(job["id"], "LastName\nTwice\n")
    assert raised.value.content[0]["errorCode"] == "BULK_API_ERROR"


def test_ingest_job_info_and_job_list(salesforce_client):
    job_id = salesforce_client.bulk2.Account.insert(records=[{"Name": "Listed"}], wait=WAIT)[0]["job_id"]

    info = salesforce_client.bulk2.Account._client.get_job(job_id, False)
    listing = salesforce_client.restful("jobs/ingest")

    assert (info["jobType"], info["object"], info["operation"]) == ("V2Ingest", "Account", "insert")
    assert (info["apiVersion"], info["contentType"]) == (59.0, "CSV")
    assert job_id in [job["id"] for job in listing["records"]]
    assert listing["done"] is True


def test_bulk_query_pages_through_locators(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed(
        "Contact", [{"LastName": f"Q{i:03d}", "Email": None if i % 2 else f"q{i}@example.com"} for i in range(250)]
    )

    pages = list(
        salesforce_client.bulk2.Contact.query(
            "SELECT Id, LastName, Email FROM Contact ORDER BY LastName", max_records=100, wait=WAIT
        )
    )

    assert len(pages) == 3
    rows = [row for page in pages for row in _rows(page)]
    assert len(rows) == 250
    assert (rows[0]["LastName"], rows[1]["Email"]) == ("Q000", "")
    assert pages[0].startswith('"Id","LastName","Email"\n"003')


def test_bulk_query_results_before_completion_are_job_not_complete(salesforce_client):
    client = salesforce_client.bulk2.Contact._client
    job = client.create_job(Operation.query, query="SELECT Id FROM Contact")

    with pytest.raises(SalesforceGeneralError) as raised:  # simple-salesforce's class for a 412
        client.get_query_results(job["id"])
    assert raised.value.status == 412
    assert raised.value.content[0]["errorCode"] == "JOB_NOT_COMPLETE"


def test_bulk_query_all_includes_deleted_rows(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Binned"})["id"]
    salesforce_client.Contact.delete(record_id)

    live = "".join(salesforce_client.bulk2.Contact.query("SELECT Id FROM Contact", wait=WAIT))
    everything = "".join(salesforce_client.bulk2.Contact.query_all("SELECT Id, IsDeleted FROM Contact", wait=WAIT))

    assert record_id not in live
    assert _rows(everything)[0] == {"Id": record_id, "IsDeleted": "true"}


def test_bulk_query_with_an_unknown_field_is_refused_at_creation(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        list(salesforce_client.bulk2.Contact.query("SELECT Nope__c FROM Contact", wait=WAIT))

    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_bulk_usage_is_counted_in_limits(salesforce_client):
    salesforce_client.bulk2.Contact.insert(records=[{"LastName": "Counted"}], wait=WAIT)
    list(salesforce_client.bulk2.Contact.query("SELECT Id FROM Contact", wait=WAIT))

    limits = salesforce_client.limits()

    assert limits["DailyBulkApiBatches"]["Max"] - limits["DailyBulkApiBatches"]["Remaining"] == 1
    assert limits["DailyBulkV2QueryJobs"]["Max"] - limits["DailyBulkV2QueryJobs"]["Remaining"] == 1
