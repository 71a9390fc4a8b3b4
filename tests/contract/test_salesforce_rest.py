"""REST resources through simple-salesforce: discovery, describe, sObject CRUD, upsert, validation errors."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

from crmsync_local.emulators.salesforce.ids import checksum_suffix, normalize_id


def _error(raised: pytest.ExceptionInfo[Exception]) -> dict[str, object]:
    content = raised.value.content  # type: ignore[attr-defined]
    assert isinstance(content, list)
    assert content
    return content[0]


# -- discovery -----------------------------------------------------------------------------------------------
def test_versions_list_needs_no_session(salesforce_emulator):
    versions = salesforce_emulator.http().get(f"{salesforce_emulator.url}/services/data/").json()

    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


def test_resources_of_a_version(salesforce_client):
    resources = salesforce_client.restful("")

    assert resources["query"] == "/services/data/v59.0/query"
    assert resources["sobjects"] == "/services/data/v59.0/sobjects"


def test_any_api_version_is_served(salesforce_emulator):
    sf = salesforce_emulator.client(version="62.0")

    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 0


def test_limits_report_daily_api_requests_and_bulk_limits(salesforce_client):
    limits = salesforce_client.limits()

    assert limits["DailyApiRequests"]["Max"] == 100_000
    assert limits["DailyApiRequests"]["Remaining"] < 100_000
    assert {"DailyBulkV2QueryJobs", "DailyBulkApiBatches"} <= set(limits)


def test_every_api_response_carries_limit_info_and_counts(salesforce_client):
    salesforce_client.query("SELECT Id FROM Contact")
    first = salesforce_client.api_usage["api-usage"]
    salesforce_client.query("SELECT Id FROM Contact")

    assert salesforce_client.api_usage["api-usage"].used == first.used + 1
    assert first.total == 100_000


def test_describe_global_lists_standard_and_custom_objects(salesforce_client):
    names = {o["name"]: o for o in salesforce_client.describe()["sobjects"]}

    assert {"Account", "Contact", "Lead", "Opportunity", "User", "Campaign", "Subscription__c"} <= set(names)
    assert names["Contact"]["keyPrefix"] == "003"
    assert names["Subscription__c"]["custom"] is True


def test_sobject_basic_info(salesforce_client):
    info = salesforce_client.Lead.metadata()

    assert info["objectDescribe"]["keyPrefix"] == "00Q"
    assert info["recentItems"] == []


def test_describe_contact_fields(salesforce_client):
    fields = {f["name"]: f for f in salesforce_client.Contact.describe()["fields"]}

    assert fields["LastName"]["nillable"] is False
    assert fields["LastName"]["length"] == 80
    assert fields["Email"]["type"] == "email"
    assert fields["Birthdate"]["type"] == "date"
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["External_Id__c"]["externalId"] is True
    assert fields["External_Id__c"]["unique"] is True
    assert fields["SystemModstamp"]["createable"] is False
    assert {"Web", "Other"} <= {v["value"] for v in fields["LeadSource"]["picklistValues"]}


DOCUMENTED_FIELD_KEYS = {
    "aggregatable", "aiPredictionField", "autoNumber", "byteLength", "calculated", "calculatedFormula",
    "cascadeDelete", "caseSensitive", "compoundFieldName", "controllerName", "createable", "custom",
    "defaultValue", "defaultValueFormula", "defaultedOnCreate", "dependentPicklist", "deprecatedAndHidden",
    "digits", "displayLocationInDecimal", "encrypted", "externalId", "extraTypeInfo", "filterable",
    "filteredLookupInfo", "formulaTreatNullNumberAsZero", "groupable", "highScaleNumber", "htmlFormatted",
    "idLookup", "inlineHelpText", "label", "length", "mask", "maskType", "name", "nameField", "namePointing",
    "nillable", "permissionable", "picklistValues", "polymorphicForeignKey", "precision", "queryByDistance",
    "referenceTargetField", "referenceTo", "relationshipName", "relationshipOrder", "restrictedDelete",
    "restrictedPicklist", "scale", "searchPrefilterable", "soapType", "sortable", "type", "unique",
    "updateable", "writeRequiresMasterRead",
}  # fmt: skip


def test_describe_fields_carry_every_documented_key(salesforce_client):
    fields = salesforce_client.Contact.describe()["fields"]

    assert all(set(f) == DOCUMENTED_FIELD_KEYS for f in fields)


@pytest.mark.parametrize(
    ("sobject", "compound", "component"),
    [
        ("Contact", "MailingAddress", "MailingCity"),
        ("Lead", "Address", "City"),
        ("Account", "BillingAddress", "BillingStreet"),
    ],
)
def test_describe_has_compound_address_fields_named_by_their_components(
    salesforce_client, sobject, compound, component
):
    fields = {f["name"]: f for f in getattr(salesforce_client, sobject).describe()["fields"]}

    assert (fields[compound]["type"], fields[compound]["soapType"]) == ("address", "urn:address")
    assert fields[compound]["compoundFieldName"] is None
    assert (fields[compound]["createable"], fields[compound]["filterable"]) == (False, False)
    assert fields[component]["compoundFieldName"] == compound


def test_describe_names_the_parts_of_a_persons_name(salesforce_client):
    fields = {f["name"]: f for f in salesforce_client.Contact.describe()["fields"]}

    assert {fields[n]["compoundFieldName"] for n in ("Salutation", "FirstName", "LastName")} == {"Name"}
    assert fields["Email"]["compoundFieldName"] is None


def test_query_returns_a_compound_address_as_an_object(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed(
        "Contact",
        [{"LastName": "Ada", "MailingCity": "London", "MailingPostalCode": "W1", "MailingLatitude": 51.5}],
    )

    (record,) = salesforce_client.query("SELECT MailingAddress FROM Contact")["records"]

    assert record["MailingAddress"] == {
        "city": "London",
        "country": None,
        "countryCode": None,
        "geocodeAccuracy": None,
        "latitude": 51.5,
        "longitude": None,
        "postalCode": "W1",
        "state": None,
        "stateCode": None,
        "street": None,
    }


def test_an_empty_address_is_null(salesforce_emulator, salesforce_client):
    salesforce_emulator.control.seed("Lead", [{"LastName": "Nowhere", "Company": "X"}])

    (record,) = salesforce_client.query("SELECT Address FROM Lead")["records"]

    assert record["Address"] is None


def test_retrieve_includes_the_compound_address(salesforce_client):
    contact_id = salesforce_client.Contact.create({"LastName": "Kay", "MailingCountry": "France"})["id"]

    record = salesforce_client.Contact.get(contact_id)

    assert record["MailingAddress"]["country"] == "France"


def test_a_compound_address_cannot_be_written(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Kay", "MailingAddress": {"city": "Paris"}})

    assert _error(raised)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_describe_lead_status_is_a_restricted_picklist_with_default(salesforce_client):
    status = next(f for f in salesforce_client.Lead.describe()["fields"] if f["name"] == "Status")

    assert status["restrictedPicklist"] is True
    assert [v["value"] for v in status["picklistValues"] if v["defaultValue"]] == ["Open - Not Contacted"]


def test_unknown_sobject_is_not_found(salesforce_client):
    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Nope__c.describe()

    assert _error(raised)["errorCode"] == "NOT_FOUND"


# -- CRUD ------------------------------------------------------------------------------------------------------
def test_create_answers_201_with_id_success_and_errors(salesforce_emulator):
    response = salesforce_emulator.http().post(
        salesforce_emulator.api_url("sobjects/Contact"),
        json={"LastName": "Lovelace"},
        headers={"Authorization": f"Bearer {salesforce_emulator.token()}"},
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["success"], body["errors"]) == (True, [])
    assert body["id"].startswith("003")
    assert len(body["id"]) == 18


def test_ids_carry_the_case_safe_checksum(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Check"})["id"]

    assert record_id[15:] == checksum_suffix(record_id[:15])
    assert normalize_id(record_id.lower()) == record_id


def test_retrieve_accepts_15_character_ids(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Short"})["id"]

    assert salesforce_client.Contact.get(record_id[:15])["Id"] == record_id


def test_retrieve_renders_every_field_and_system_fields(salesforce_client, salesforce_emulator):
    salesforce_emulator.control.set_clock("2024-07-01T10:00:00Z")
    record_id = salesforce_client.Contact.create(
        {"FirstName": "Ada", "LastName": "Lovelace", "Birthdate": "1815-12-10"}
    )["id"]

    record = salesforce_client.Contact.get(record_id)

    assert record["attributes"] == {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{record_id}"}
    assert record["Name"] == "Ada Lovelace"
    assert record["Birthdate"] == "1815-12-10"
    assert record["CreatedDate"] == "2024-07-01T10:00:00.000+0000"
    assert record["SystemModstamp"] == "2024-07-01T10:00:00.000+0000"
    assert record["IsDeleted"] is False
    assert record["HasOptedOutOfEmail"] is False
    assert record["OwnerId"].startswith("005")
    assert record["Email"] is None


def test_retrieve_with_fields_parameter(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Few", "Email": "few@example.com"})["id"]

    record = salesforce_client.Contact.get(record_id, params={"fields": "email,LastName"})

    assert list(record) == ["attributes", "Email", "LastName"]


def test_update_answers_204_and_moves_last_modified_to_the_clock(salesforce_client, salesforce_emulator):
    salesforce_emulator.control.set_clock("2024-07-01T10:00:00Z")
    record_id = salesforce_client.Contact.create({"LastName": "Before"})["id"]
    salesforce_emulator.control.set_clock("2024-07-02T08:30:00Z")

    assert salesforce_client.Contact.update(record_id, {"LastName": "After", "DoNotCall": True}) == 204

    record = salesforce_client.Contact.get(record_id)
    assert (record["LastName"], record["DoNotCall"]) == ("After", True)
    assert record["LastModifiedDate"] == record["SystemModstamp"] == "2024-07-02T08:30:00.000+0000"
    assert record["CreatedDate"] == "2024-07-01T10:00:00.000+0000"


def test_update_with_null_clears_a_field(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Clear", "Phone": "+33 1 23"})["id"]
    salesforce_client.Contact.update(record_id, {"Phone": None})

    assert salesforce_client.Contact.get(record_id)["Phone"] is None


def test_delete_answers_204_and_the_record_is_then_deleted(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Gone"})["id"]

    assert salesforce_client.Contact.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.get(record_id)
    assert _error(raised)["errorCode"] == "ENTITY_IS_DELETED"


def test_deleting_twice_is_entity_is_deleted(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Twice"})["id"]
    salesforce_client.Contact.delete(record_id)

    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.delete(record_id)
    assert _error(raised)["errorCode"] == "ENTITY_IS_DELETED"


def test_unknown_but_well_formed_id_is_not_found(salesforce_client):
    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.get("003Dn0000000ZZZ")

    assert _error(raised) == {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}


def test_id_of_another_object_is_read_as_an_unknown_external_id_field(salesforce_client):
    account_id = salesforce_client.Account.create({"Name": "Acme"})["id"]

    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.get(account_id)
    assert (
        _error(raised)["message"]
        == f"Provided external ID field does not exist or is not accessible: {account_id}"
    )


# -- external ids ----------------------------------------------------------------------------------------------
def test_upsert_by_external_id_creates_then_updates(salesforce_emulator, salesforce_client):
    http = salesforce_emulator.http()
    headers = {"Authorization": f"Bearer {salesforce_emulator.token()}"}
    url = salesforce_emulator.api_url("sobjects/Contact/External_Id__c/ext-1")

    created = http.patch(url, json={"LastName": "First"}, headers=headers)
    updated = http.patch(url, json={"LastName": "Second"}, headers=headers)

    assert (created.status_code, created.json()["created"]) == (201, True)
    assert updated.status_code == 200
    assert updated.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": False,
    }
    assert salesforce_client.Contact.get_by_custom_id("External_Id__c", "EXT-1")["LastName"] == "Second"


def test_upsert_through_simple_salesforce_returns_the_status(salesforce_client):
    assert salesforce_client.Contact.upsert("External_Id__c/abc", {"LastName": "Up"}) == 201
    assert salesforce_client.Contact.upsert("External_Id__c/abc", {"LastName": "Up again"}) == 200


def test_upsert_with_several_matches_answers_300(salesforce_client, salesforce_emulator):
    salesforce_emulator.control.seed(
        "Contact", [{"LastName": "A", "Legacy_Id__c": "L1"}, {"LastName": "B", "Legacy_Id__c": "L1"}]
    )

    with pytest.raises(SalesforceMoreThanOneRecord) as raised:
        salesforce_client.Contact.upsert("Legacy_Id__c/L1", {"LastName": "C"})
    assert len(raised.value.content) == 2
    assert all(url.startswith("/services/data/v59.0/sobjects/Contact/003") for url in raised.value.content)


def test_upsert_on_a_field_that_is_not_an_external_id_is_not_found(salesforce_client):
    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.upsert("LastName/x", {"FirstName": "x"})

    assert _error(raised)["errorCode"] == "NOT_FOUND"


def test_custom_object_upsert_by_custom_external_id(salesforce_client):
    contact_id = salesforce_client.Contact.create({"LastName": "Subscriber"})["id"]

    salesforce_client.Subscription__c.upsert(
        "Subscription_Key__c/S-1", {"Contact__c": contact_id, "Channel__c": "Email", "Monthly_Fee__c": 9.5}
    )
    record = salesforce_client.Subscription__c.get_by_custom_id("Subscription_Key__c", "S-1")

    assert (record["Status__c"], record["Monthly_Fee__c"], record["Contact__c"]) == ("Active", 9.5, contact_id)
    assert record["Name"] == record["Id"]


# -- validation errors -------------------------------------------------------------------------------------------
def test_missing_required_field(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"FirstName": "NoLast"})

    assert _error(raised) == {
        "message": "Required fields are missing: [LastName]",
        "errorCode": "REQUIRED_FIELD_MISSING",
        "fields": ["LastName"],
    }


def test_lead_requires_company_but_defaults_status(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Lead.create({"LastName": "Lead"})
    assert _error(raised)["fields"] == ["Company"]

    lead_id = salesforce_client.Lead.create({"LastName": "Lead", "Company": "Acme"})["id"]
    assert salesforce_client.Lead.get(lead_id)["Status"] == "Open - Not Contacted"


def test_invalid_email_address(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Mail", "Email": "not-an-address"})

    assert _error(raised) == {
        "message": "Email: invalid email address: not-an-address",
        "errorCode": "INVALID_EMAIL_ADDRESS",
        "fields": ["Email"],
    }


def test_string_too_long(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "x" * 81})

    error = _error(raised)
    assert error["errorCode"] == "STRING_TOO_LONG"
    assert error["fields"] == ["LastName"]
    assert str(error["message"]).endswith("(max length=80)")


def test_duplicate_unique_external_id(salesforce_client):
    first = salesforce_client.Contact.create({"LastName": "One", "External_Id__c": "dup"})["id"]

    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Two", "External_Id__c": "DUP"})
    error = _error(raised)
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert first in str(error["message"])


def test_read_only_field_is_invalid_field_for_insert_update(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Stamp", "SystemModstamp": "2024-01-01T00:00:00Z"})

    error = _error(raised)
    assert error["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert error["fields"] == ["SystemModstamp"]


def test_unknown_field_is_invalid_field_no_such_column(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "X", "Shoe_Size__c": 42})

    assert _error(raised) == {
        "message": "No such column 'Shoe_Size__c' on sobject of type Contact",
        "errorCode": "INVALID_FIELD",
    }


def test_bad_value_for_restricted_picklist(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Lead.create({"LastName": "L", "Company": "C", "Status": "Hot Potato"})

    assert _error(raised)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_unrestricted_picklist_accepts_any_value(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "L", "LeadSource": "Carrier pigeon"})["id"]

    assert salesforce_client.Contact.get(record_id)["LeadSource"] == "Carrier pigeon"


def test_malformed_reference_id(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Ref", "AccountId": "garbage"})

    assert _error(raised)["errorCode"] == "MALFORMED_ID"


def test_reference_to_a_missing_owner_is_invalid_cross_reference_key(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "Owner", "OwnerId": "005Dn0000000ZZZ"})

    assert _error(raised)["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_update_of_a_deleted_record_is_entity_is_deleted(salesforce_client):
    record_id = salesforce_client.Contact.create({"LastName": "Del"})["id"]
    salesforce_client.Contact.delete(record_id)

    with pytest.raises(SalesforceResourceNotFound) as raised:
        salesforce_client.Contact.update(record_id, {"LastName": "Zombie"})
    assert _error(raised)["errorCode"] == "ENTITY_IS_DELETED"


def test_malformed_json_is_json_parser_error(salesforce_emulator):
    response = salesforce_emulator.http().post(
        salesforce_emulator.api_url("sobjects/Contact"),
        data='{"LastName": ',
        headers={"Authorization": f"Bearer {salesforce_emulator.token()}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_value_of_the_wrong_json_type_is_json_parser_error(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "T", "Birthdate": "not a date"})

    assert _error(raised)["errorCode"] == "JSON_PARSER_ERROR"


def test_null_checkbox_is_invalid_type_on_field_in_record(salesforce_client):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.create({"LastName": "T", "DoNotCall": None})

    assert _error(raised)["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
