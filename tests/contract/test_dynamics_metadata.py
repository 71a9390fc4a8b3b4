"""Table definitions of the Dataverse Web API emulator: EntityDefinitions, option sets, keys, $metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


def _get(emulator: DynamicsEmulatorHandle, path: str) -> Any:
    response = emulator.http().get(f"{emulator.api_url}/{path}", headers=emulator.headers())
    assert response.status_code == 200, response.text
    return response.json()


def test_entity_definitions_answer_names_with_select_and_filter(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(
        dynamics_emulator,
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName eq 'new_subscription'",
    )

    (entity,) = body["value"]
    assert entity["LogicalName"] == "new_subscription"
    assert entity["EntitySetName"] == "new_subscriptions"
    assert entity["PrimaryIdAttribute"] == "new_subscriptionid"
    assert set(entity) == {"MetadataId", "LogicalName", "EntitySetName", "PrimaryIdAttribute"}


def test_change_tracked_tables_can_be_listed(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(dynamics_emulator, "EntityDefinitions?$select=LogicalName&$filter=ChangeTrackingEnabled eq true")

    assert {e["LogicalName"] for e in body["value"]} == {"contact", "lead", "account", "new_subscription"}


def test_entity_definition_by_logical_name_expands_attributes_and_keys(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    body = _get(
        dynamics_emulator,
        "EntityDefinitions(LogicalName='new_subscription')?$select=LogicalName,IsCustomEntity,ChangeTrackingEnabled"
        "&$expand=Attributes($select=LogicalName,AttributeType),Keys($select=KeyAttributes)",
    )

    assert body["IsCustomEntity"] is True
    assert body["ChangeTrackingEnabled"] is True
    assert {"LogicalName": "new_contactid", "AttributeType": "Lookup"}.items() <= next(
        a for a in body["Attributes"] if a["LogicalName"] == "new_contactid"
    ).items()
    assert body["Keys"][0]["KeyAttributes"] == ["new_externalid"]


def test_picklist_option_labels_come_in_the_documented_shape(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(
        dynamics_emulator,
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet",
    )

    gender = next(a for a in body["value"] if a["LogicalName"] == "gendercode")
    labels = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in gender["OptionSet"]["Options"]}
    assert labels == {1: "Male", 2: "Female"}
    assert gender["OptionSet"]["Options"][0]["Label"]["LocalizedLabels"][0]["LanguageCode"] == 1033
    assert gender["GlobalOptionSet"] is None


def test_global_option_set_is_returned_for_a_global_choice(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(
        dynamics_emulator,
        "EntityDefinitions(LogicalName='new_subscription')/Attributes(LogicalName='new_channel')"
        "/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=GlobalOptionSet",
    )

    assert body["GlobalOptionSet"]["Name"] == "new_channel"
    assert [o["Value"] for o in body["GlobalOptionSet"]["Options"]] == [100000000, 100000001, 100000002]


def test_status_options_name_their_state(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(
        dynamics_emulator,
        "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statuscode')"
        "/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet",
    )

    states = {o["Label"]["UserLocalizedLabel"]["Label"]: o["State"] for o in body["OptionSet"]["Options"]}
    assert states["Qualified"] == 1
    assert states["Lost"] == 2


def test_attribute_metadata_describes_type_length_and_requirement(
    dynamics_emulator: DynamicsEmulatorHandle,
) -> None:
    body = _get(
        dynamics_emulator, "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='emailaddress1')"
    )

    assert body["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert body["AttributeTypeName"] == {"Value": "StringType"}
    assert body["MaxLength"] == 100
    assert body["RequiredLevel"]["Value"] == "None"
    assert body["IsValidForCreate"] is True
    assert body["IsValidForAdvancedFind"]["Value"] is True


def test_date_only_attribute_reports_its_behavior(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(dynamics_emulator, "EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='birthdate')")

    assert body["Format"] == "DateOnly"
    assert body["DateTimeBehavior"] == {"Value": "DateOnly"}


def test_custom_table_defined_through_the_control_api_is_usable(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    dynamics_emulator.control.define_entity(
        {
            "logical_name": "new_preference",
            "entity_set_name": "new_preferences",
            "attributes": [
                {"logical_name": "new_code", "type": "String", "max_length": 10},
                {
                    "logical_name": "new_level",
                    "type": "Picklist",
                    "options": {"100000000": "Low", "100000001": "High"},
                },
            ],
            "keys": [{"schema_name": "new_code_key", "attributes": ["new_code"]}],
        }
    )
    http, headers = dynamics_emulator.http(), dynamics_emulator.headers()

    created = http.patch(
        f"{dynamics_emulator.api_url}/new_preferences(new_code='P1')",
        json={"new_name": "Pref", "new_level": 100000001},
        headers=headers,
    )
    entity = _get(
        dynamics_emulator,
        "EntityDefinitions(LogicalName='new_preference')?$select=PrimaryIdAttribute,PrimaryNameAttribute",
    )

    assert created.status_code == 204
    assert entity["PrimaryIdAttribute"] == "new_preferenceid"
    assert entity["PrimaryNameAttribute"] == "new_name"
    assert dynamics_emulator.control.records("new_preferences")[0]["new_level"] == 100000001


def test_metadata_document_is_csdl_with_entity_types_and_sets(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    response = dynamics_emulator.http().get(
        f"{dynamics_emulator.api_url}/$metadata", headers=dynamics_emulator.headers()
    )

    root = ET.fromstring(response.content)  # noqa: S314 - the emulator's own document
    edm = "{http://docs.oasis-open.org/odata/ns/edm}"
    sets = {e.attrib["Name"]: e.attrib["EntityType"] for e in root.iter(f"{edm}EntitySet")}
    contact = next(e for e in root.iter(f"{edm}EntityType") if e.attrib["Name"] == "contact")
    properties = {p.attrib["Name"]: p.attrib["Type"] for p in contact.iter(f"{edm}Property")}
    assert sets["contacts"] == "Microsoft.Dynamics.CRM.contact"
    assert properties["_parentcustomerid_value"] == "Edm.Guid"
    assert properties["birthdate"] == "Edm.Date"


def test_service_document_lists_the_entity_sets(dynamics_emulator: DynamicsEmulatorHandle) -> None:
    body = _get(dynamics_emulator, "")

    names = {item["name"] for item in body["value"]}
    assert {"contacts", "leads", "accounts", "systemusers", "new_subscriptions", "EntityDefinitions"} <= names
