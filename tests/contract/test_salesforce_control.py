"""The control API's back door (seed, read, delete), schema definitions and configuration, seen from the
real API afterwards."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from crmsync_local.emulators.salesforce import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from crmsync_local.emulators.salesforce.ids import to_18


def test_seed_keeps_given_ids_and_timestamps(salesforce_emulator, salesforce_client):
    given = to_18("003Dn00000SEED1")
    (record_id,) = salesforce_emulator.control.seed(
        "Contact",
        [
            {
                "Id": given,
                "LastName": "Seeded",
                "CreatedDate": "2023-01-01T00:00:00Z",
                "LastModifiedDate": "2023-02-01T00:00:00Z",
            }
        ],
    )

    record = salesforce_client.Contact.get(record_id)

    assert record_id == given
    assert record["CreatedDate"] == "2023-01-01T00:00:00.000+0000"
    assert record["LastModifiedDate"] == record["SystemModstamp"] == "2023-02-01T00:00:00.000+0000"


def test_seed_stamps_system_fields_from_the_clock_and_skips_validation(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.set_clock("2024-05-05T05:05:05Z")
    (record_id,) = salesforce_emulator.control.seed("Contact", [{"FirstName": "No last name, no problem"}])

    record = salesforce_client.Contact.get(record_id)

    assert record["SystemModstamp"] == "2024-05-05T05:05:05.000+0000"
    assert record["LastName"] is None


def test_seed_with_an_existing_id_updates_the_record(salesforce_emulator, salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Original", "Email": "o@example.com"})["id"]

    salesforce_emulator.control.seed("Contact", [{"Id": record_id, "LastName": "Changed"}])

    record = salesforce_client.Contact.get(record_id)
    assert (record["LastName"], record["Email"]) == ("Changed", "o@example.com")


def test_seed_refuses_unknown_fields(salesforce_emulator):
    with pytest.raises(requests.HTTPError) as raised:
        salesforce_emulator.control.seed("Contact", [{"LastName": "X", "Nope__c": 1}])

    assert raised.value.response.status_code == 400


def test_seeding_ten_thousand_records_in_one_call_answers_ten_thousand_ids(salesforce_emulator):
    ids = salesforce_emulator.control.seed(
        "Lead", [{"LastName": f"L{i}", "Company": "Bulk"} for i in range(10_000)]
    )

    assert len(set(ids)) == 10_000
    assert len(salesforce_emulator.control.records("Lead")) == 10_000


def test_records_lists_deleted_rows_with_their_deleted_date(salesforce_emulator):
    salesforce_emulator.control.set_clock("2024-07-02T00:00:00Z")  # within the 15-day retention of the deletion
    keep, drop = salesforce_emulator.control.seed("Contact", [{"LastName": "Keep"}, {"LastName": "Drop"}])
    salesforce_emulator.control.delete("Contact", drop, deleted_date="2024-07-01T09:00:00Z")

    records = {r["Id"]: r for r in salesforce_emulator.control.records("Contact")}

    assert records[keep]["IsDeleted"] is False
    assert "deletedDate" not in records[keep]
    assert records[drop]["IsDeleted"] is True
    assert records[drop]["deletedDate"] == "2024-07-01T09:00:00.000+0000"


def test_seeded_deleted_records_appear_in_query_all(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Contact", [{"LastName": "Binned", "IsDeleted": True}])

    assert salesforce_client.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert salesforce_client.query("SELECT COUNT() FROM Contact", include_deleted=True)["totalSize"] == 1


def test_define_a_custom_object_and_use_it_through_the_api(salesforce_emulator, salesforce_client):
    describe = salesforce_emulator.control.define_object(
        "Consent__c",
        label="Consent",
        fields=[
            {
                "name": "Purpose__c",
                "type": "picklist",
                "picklistValues": ["Marketing", "Profiling"],
                "restrictedPicklist": True,
            },
            {"name": "Consent_Key__c", "type": "string", "length": 40, "externalId": True, "unique": True},
            {"name": "Given_At__c", "type": "datetime"},
            {"name": "Contact__c", "type": "reference", "referenceTo": "Contact"},
        ],
    )
    contact_id = salesforce_client.Contact.create({"LastName": "Consenting"})["id"]

    salesforce_client.Consent__c.upsert(
        "Consent_Key__c/K1",
        {"Purpose__c": "Marketing", "Given_At__c": "2024-07-01T10:00:00Z", "Contact__c": contact_id},
    )
    record = salesforce_client.query("SELECT Purpose__c, Contact__r.LastName FROM Consent__c")["records"][0]

    assert describe["custom"] is True
    assert describe["keyPrefix"].startswith("a")
    assert record["Purpose__c"] == "Marketing"
    assert record["Contact__r"]["LastName"] == "Consenting"


def test_add_a_custom_field_to_a_standard_object(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.define_object("Contact", fields=[{"name": "Score__c", "type": "double"}])

    record_id = salesforce_client.Contact.create({"LastName": "Scored", "Score__c": 4.5})["id"]

    assert salesforce_client.Contact.get(record_id)["Score__c"] == 4.5
    assert "Score__c" in {f["name"] for f in salesforce_client.Contact.describe()["fields"]}


def test_unknown_config_key_is_refused(salesforce_emulator):
    with pytest.raises(requests.HTTPError):
        salesforce_emulator.control.configure(page_size_typo=3)


def test_default_connected_app_works_out_of_the_box(salesforce_emulator):
    response = salesforce_emulator.http().post(
        f"{salesforce_emulator.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
    )

    assert response.status_code == 200


def test_concurrent_writes_are_all_applied(salesforce_emulator):
    def create_batch(batch: int) -> None:
        sf = salesforce_emulator.client()
        for i in range(20):
            sf.Contact.create({"LastName": f"T{batch}-{i}", "External_Id__c": f"{batch}-{i}"})

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(create_batch, range(6)))

    assert len(salesforce_emulator.control.records("Contact")) == 120


def test_purge_deletes_every_record_of_one_object_for_good_in_one_call(salesforce_emulator):
    control = salesforce_emulator.control
    control.seed("Lead", [{"LastName": f"L{i}", "Company": "Acme"} for i in range(3)])
    (kept,) = control.seed("Contact", [{"LastName": "Stays"}])
    control.reset_stats()
    assert control.purge("Lead") == 3
    assert control.records("Lead") == []
    assert [r["Id"] for r in control.records("Contact")] == [kept]
