"""sObject Collections through simple-salesforce's `restful`: partial success, allOrNone, limits."""

from __future__ import annotations

import json

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from crmsync_local.emulators.salesforce.ids import to_18

GHOST = to_18("003Dn00000ZZZZZ")  # a well-formed Contact id nobody has

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
    "fields": [],
}


def _post(sf, records, *, all_or_none=False):
    return sf.restful(
        "composite/sobjects", method="POST", data=json.dumps({"allOrNone": all_or_none, "records": records})
    )


def _contact(**fields):
    return {"attributes": {"type": "Contact"}, **fields}


def test_create_returns_save_results_in_order(salesforce_client):
    results = _post(
        salesforce_client, [_contact(LastName="A"), {"attributes": {"type": "Account"}, "Name": "Acme"}]
    )

    assert [r["success"] for r in results] == [True, True]
    assert results[0]["id"].startswith("003")
    assert results[1]["id"].startswith("001")
    assert all(r["errors"] == [] for r in results)


def test_create_partial_failure_keeps_the_good_records(salesforce_client):
    results = _post(salesforce_client, [_contact(LastName="Good"), _contact(FirstName="NoLast")])

    assert results[0]["success"] is True
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    assert salesforce_client.query("SELECT COUNT() FROM Contact")["totalSize"] == 1


def test_create_all_or_none_rolls_everything_back(salesforce_client):
    results = _post(
        salesforce_client,
        [_contact(LastName="Good"), _contact(LastName="Bad", Email="nope"), _contact(LastName="Also good")],
        all_or_none=True,
    )

    assert results[0] == {"success": False, "errors": [ROLLED_BACK]}
    assert results[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert results[2] == {"success": False, "errors": [ROLLED_BACK]}
    assert salesforce_client.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_duplicates_inside_one_request_are_caught(salesforce_client):
    results = _post(
        salesforce_client, [_contact(LastName="A", External_Id__c="x"), _contact(LastName="B", External_Id__c="X")]
    )

    assert results[0]["success"] is True
    assert results[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


def test_more_than_two_hundred_records_is_refused(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        _post(salesforce_client, [_contact(LastName=f"L{i}") for i in range(201)])

    assert raised.value.content == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]


def test_unknown_field_fails_the_whole_request(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        _post(salesforce_client, [_contact(LastName="A"), _contact(LastName="B", Nope__c=1)])

    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert salesforce_client.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_update_by_id_with_one_unknown_record(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Old"})["id"]

    results = salesforce_client.restful(
        "composite/sobjects",
        method="PATCH",
        data=json.dumps(
            {
                "allOrNone": False,
                "records": [
                    _contact(id=record_id, LastName="New"),
                    _contact(id=GHOST, LastName="Ghost"),
                ],
            }
        ),
    )

    assert results[0] == {"id": record_id, "success": True, "errors": []}
    assert results[1]["success"] is False
    assert results[1]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert salesforce_client.Contact.get(record_id)["LastName"] == "New"


def test_update_all_or_none_restores_the_previous_values(salesforce_client):
    first = salesforce_client.Contact.create({"LastName": "First"})["id"]
    second = salesforce_client.Contact.create({"LastName": "Second"})["id"]

    results = salesforce_client.restful(
        "composite/sobjects",
        method="PATCH",
        data=json.dumps(
            {
                "allOrNone": True,
                "records": [_contact(id=first, LastName="Changed"), _contact(id=second, LastName=None)],
            }
        ),
    )

    assert results[0] == {"id": first, "success": False, "errors": [ROLLED_BACK]}
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert salesforce_client.Contact.get(first)["LastName"] == "First"


def test_upsert_by_external_id_reports_created(salesforce_client):
    existing = salesforce_client.Contact.create({"LastName": "Known", "External_Id__c": "E-1"})["id"]

    results = salesforce_client.restful(
        "composite/sobjects/Contact/External_Id__c",
        method="PATCH",
        data=json.dumps(
            {
                "allOrNone": False,
                "records": [
                    _contact(External_Id__c="E-1", LastName="Known2"),
                    _contact(External_Id__c="E-2", LastName="New"),
                ],
            }
        ),
    )

    assert results[0] == {"id": existing, "success": True, "errors": [], "created": False}
    assert (results[1]["success"], results[1]["created"]) == (True, True)
    assert salesforce_client.Contact.get(existing)["LastName"] == "Known2"


def test_upsert_on_a_non_external_id_field_is_refused(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.restful(
            "composite/sobjects/Contact/LastName",
            method="PATCH",
            data=json.dumps({"records": [_contact(LastName="x")]}),
        )

    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_delete_reports_deleted_and_unknown_ids(salesforce_client):
    alive = salesforce_client.Contact.create({"LastName": "Alive"})["id"]
    gone = salesforce_client.Contact.create({"LastName": "Gone"})["id"]
    salesforce_client.Contact.delete(gone)

    results = salesforce_client.restful(
        "composite/sobjects", method="DELETE", params={"ids": f"{alive},{gone},{GHOST},garbage"}
    )

    assert results[0] == {"id": alive, "success": True, "errors": []}
    assert results[1]["errors"][0] == {
        "statusCode": "ENTITY_IS_DELETED",
        "message": "entity is deleted",
        "fields": [],
    }
    assert results[2]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert results[3] == {
        "success": False,
        "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id garbage", "fields": []}],
    }


def test_delete_all_or_none_keeps_every_record(salesforce_client):
    alive = salesforce_client.Contact.create({"LastName": "Alive"})["id"]

    results = salesforce_client.restful(
        "composite/sobjects", method="DELETE", params={"ids": f"{alive},{GHOST}", "allOrNone": "true"}
    )

    assert results[0] == {"id": alive, "success": False, "errors": [ROLLED_BACK]}
    assert salesforce_client.Contact.get(alive)["IsDeleted"] is False


def test_delete_more_than_two_hundred_ids_is_refused(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.restful("composite/sobjects", method="DELETE", params={"ids": ",".join([GHOST] * 201)})

    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_retrieve_by_ids_with_fields(salesforce_client):
    first = salesforce_client.Contact.create({"LastName": "One", "Email": "one@example.com"})["id"]

    records = salesforce_client.restful(
        "composite/sobjects/Contact", params={"ids": f"{first},{GHOST}", "fields": "LastName,Email"}
    )

    assert (records[0]["LastName"], records[0]["Email"]) == ("One", "one@example.com")
    assert records[1] is None
