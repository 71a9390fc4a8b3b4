"""Schema discovery through both connectors against the emulators (SPEC S1, S2): objects, fields with
picklist / option-set values and labels, record types, drift made through the control API."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from crmsync.connectors.port import PicklistValue
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError


# ------------------------------------------------------------------------------------- Salesforce
def test_salesforce_objects_list_standard_and_custom_with_createable(connector, salesforce_emulator):
    salesforce_emulator.control.define_object("Visit__c", fields=[{"name": "Place__c", "type": "string"}])
    objects = {o.name: o for o in connector.list_objects()}
    assert objects["Visit__c"].custom
    assert not objects["Contact"].custom
    assert objects["Contact"].createable


def test_salesforce_describe_gives_picklist_labels_inactive_values_and_the_default(connector):
    channel = connector.describe("Subscription__c").field("Channel__c")
    assert channel.picklist == (
        PicklistValue("Email", "Email"),
        PicklistValue("SMS", "SMS"),
        PicklistValue("Post", "Postal mail"),
        PicklistValue("Fax", "Fax", active=False),
    )
    assert channel.picklist_values == ("Email", "SMS", "Post")


def test_salesforce_describe_reports_a_multi_select_picklist(connector):
    interests = connector.describe("Contact").field("Interests__c")
    assert interests.crm_type is CrmFieldType.MULTIPICKLIST
    assert [p.value for p in interests.picklist] == ["Running", "Cycling", "Swimming"]


def test_salesforce_describe_lists_the_master_record_type(connector):
    assert ("012000000000000AAA", "Master") in connector.describe("Contact").record_types


def test_salesforce_record_type_values_come_from_the_ui_api(connector, salesforce_emulator):
    salesforce_emulator.control.define_object(
        "Lead",
        record_types=[
            {
                "developerName": "Partner_Lead",
                "picklists": {
                    "LeadSource": {"values": ["Web", "Partner Referral"], "default": "Partner Referral"}
                },
            }
        ],
    )
    record_type = next(rt for rt, name in connector.describe("Lead").record_types if name == "Partner_Lead")
    values = connector.enumeration("Lead", "LeadSource", record_type)
    assert values == (
        PicklistValue("Web", "Web"),
        PicklistValue("Partner Referral", "Partner Referral", default=True),
    )


def test_salesforce_enumeration_of_a_text_field_is_refused(connector):
    with pytest.raises(ConfigurationError, match="not a picklist"):
        connector.enumeration("Contact", "Email")


def test_salesforce_describe_if_modified_since_costs_no_body_when_nothing_changed(connector):
    first = connector.describe("Contact")
    # A check one second after the describe (a change within the describe's own second still answers).
    later = format_datetime(parsedate_to_datetime(first.last_modified) + timedelta(seconds=1), usegmt=True)
    assert connector.describe_if_modified("Contact", later) is None


def test_salesforce_describe_if_modified_since_answers_after_a_new_field(connector, salesforce_emulator):
    first = connector.describe("Contact")
    salesforce_emulator.control.define_object("Contact", fields=[{"name": "Score__c", "type": "double"}])
    again = connector.describe_if_modified("Contact", first.last_modified)
    assert again is not None
    assert again.field("Score__c") is not None


def test_salesforce_control_api_removes_and_retypes_custom_fields(connector, salesforce_emulator):
    salesforce_emulator.control.define_object("Contact", fields=[{"name": "Score__c", "type": "double"}])
    salesforce_emulator.control.retype_field("Contact", "Score__c", type="date")
    assert connector.describe("Contact").field("Score__c").crm_type is CrmFieldType.DATE
    salesforce_emulator.control.remove_field("Contact", "Score__c")
    assert connector.describe("Contact").field("Score__c") is None


# ------------------------------------------------------------------------------------- Dynamics
def test_dynamics_objects_list_the_custom_table(dynamics):
    objects = {o.name: o for o in dynamics.list_objects()}
    assert objects["new_subscription"].custom
    assert not objects["contact"].custom


def test_dynamics_describe_with_values_reads_local_option_sets_through_their_cast(dynamics):
    gender = dynamics.describe("contact", values=True).field("gendercode")
    assert [(p.value, p.label) for p in gender.picklist] == [("1", "Male"), ("2", "Female")]
    assert gender.option_set == "contact_gendercode"
    assert not gender.option_set_global


def test_dynamics_describe_with_values_marks_a_global_option_set(dynamics):
    channel = dynamics.describe("new_subscription", values=True).field("new_channel")
    assert channel.option_set == "new_channel"
    assert channel.option_set_global
    assert channel.picklist[1] == PicklistValue("100000001", "SMS")


def test_dynamics_describe_with_values_reads_boolean_labels(dynamics):
    donotemail = dynamics.describe("contact", values=True).field("donotemail")
    assert [(p.value, p.label) for p in donotemail.picklist] == [("0", "Allow"), ("1", "Do Not Allow")]


def test_dynamics_describe_reports_a_multi_select_choice_column(dynamics):
    interests = dynamics.describe("contact", values=True).field("new_interests")
    assert interests.crm_type is CrmFieldType.MULTIPICKLIST
    assert interests.raw_type == "MultiSelectPicklist"
    assert [p.label for p in interests.picklist] == ["Running", "Cycling", "Swimming"]


def test_dynamics_describe_without_values_makes_one_metadata_call(dynamics):
    dynamics.describe("contact")
    before = dynamics.api_calls
    dynamics.describe("contact")
    assert dynamics.api_calls - before == 1


def test_dynamics_status_reasons_and_global_option_set_by_name(dynamics):
    status = dynamics.enumeration("lead", "statuscode")
    assert ("4", "Lost") in [(p.value, p.label) for p in status]
    assert [p.label for p in dynamics.global_enumeration("new_channel")] == ["Email", "SMS", "Postal Mail"]


def test_dynamics_control_api_removes_and_retypes_columns(dynamics, dynamics_emulator):
    dynamics_emulator.control.define_entity(
        {"logical_name": "contact", "attributes": [{"logical_name": "new_score", "type": "Integer"}]}
    )
    dynamics_emulator.control.retype_attribute("contact", "new_score", {"type": "DateTime"})
    assert dynamics.describe("contact").field("new_score").crm_type is CrmFieldType.DATETIME
    dynamics_emulator.control.remove_attribute("contact", "new_score")
    assert dynamics.describe("contact").field("new_score") is None
