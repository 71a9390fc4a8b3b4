"""Faults on the write endpoints an export uses: a dropped response leaves the write applied (the client
cannot know), and `after` lets the first matching requests through (a crash after k of n batches)."""

from __future__ import annotations

import pytest
import requests


def _call(emulator, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {emulator.token()}", **kwargs.pop("headers", {})}
    return emulator.http().request(method, emulator.api_url(path), headers=headers, timeout=10, **kwargs)


def _records(*fields):
    return {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, **f} for f in fields]}


def test_dropped_response_on_a_collections_create_still_creates_the_records(salesforce_emulator):
    salesforce_emulator.control.add_fault(r"^POST .*/composite/sobjects$", drop_response=True)

    with pytest.raises(requests.ConnectionError):
        _call(
            salesforce_emulator, "POST", "composite/sobjects", json=_records({"LastName": "A"}, {"LastName": "B"})
        )

    assert sorted(r["LastName"] for r in salesforce_emulator.control.records("Contact")) == ["A", "B"]


def test_dropped_response_on_a_collections_upsert_still_upserts(salesforce_emulator):
    salesforce_emulator.control.add_fault(
        r"^PATCH .*/composite/sobjects/Contact/External_Id__c$", drop_response=True
    )

    with pytest.raises(requests.ConnectionError):
        _call(
            salesforce_emulator,
            "PATCH",
            "composite/sobjects/Contact/External_Id__c",
            json=_records({"LastName": "A", "External_Id__c": "x-1"}),
        )

    assert [r["External_Id__c"] for r in salesforce_emulator.control.records("Contact")] == ["x-1"]


def test_dropped_response_on_a_collections_update_still_updates(salesforce_emulator):
    (contact,) = salesforce_emulator.control.seed("Contact", [{"LastName": "Before"}])
    salesforce_emulator.control.add_fault(r"^PATCH .*/composite/sobjects$", drop_response=True)

    with pytest.raises(requests.ConnectionError):
        _call(
            salesforce_emulator, "PATCH", "composite/sobjects", json=_records({"Id": contact, "LastName": "After"})
        )

    assert salesforce_emulator.control.records("Contact")[0]["LastName"] == "After"


def test_dropped_response_on_a_collections_delete_still_deletes(salesforce_emulator):
    (contact,) = salesforce_emulator.control.seed("Contact", [{"LastName": "Doomed"}])
    salesforce_emulator.control.add_fault(r"^DELETE .*/composite/sobjects\?", drop_response=True)

    with pytest.raises(requests.ConnectionError):
        _call(salesforce_emulator, "DELETE", "composite/sobjects", params={"ids": contact})

    assert salesforce_emulator.control.records("Contact")[0]["IsDeleted"] is True


def test_dropped_response_on_closing_a_bulk_job_still_processes_its_rows(salesforce_emulator):
    job = _call(
        salesforce_emulator,
        "POST",
        "jobs/ingest",
        json={"object": "Contact", "operation": "insert", "lineEnding": "LF"},
    ).json()
    _call(
        salesforce_emulator,
        "PUT",
        f"jobs/ingest/{job['id']}/batches",
        data=b"LastName\nA\nB\n",
        headers={"Content-Type": "text/csv"},
    )
    salesforce_emulator.control.add_fault(r"^PATCH .*/jobs/ingest/\w+$", drop_response=True)

    with pytest.raises(requests.ConnectionError):
        _call(salesforce_emulator, "PATCH", f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})

    assert len(salesforce_emulator.control.records("Contact")) == 2
    assert _call(salesforce_emulator, "GET", f"jobs/ingest/{job['id']}").json()["state"] in (
        "InProgress",
        "JobComplete",
    )


def test_a_fault_with_after_lets_that_many_matching_requests_through_first(salesforce_emulator):
    salesforce_emulator.control.add_fault(r"^POST .*/composite/sobjects$", status=503, after=2, times=None)

    statuses = [
        _call(salesforce_emulator, "POST", "composite/sobjects", json=_records({"LastName": f"N{n}"})).status_code
        for n in range(4)
    ]

    assert statuses == [200, 200, 503, 503]
    assert salesforce_emulator.control.faults()[0]["fired"] == 2
