"""Each CRM's id rules live on its connector (the port), so no service tests a CRM's kind."""

import pytest

from crmsync.connectors.dynamics.connector import DynamicsConnector
from crmsync.connectors.port import ObjectDescription
from crmsync.connectors.salesforce.connector import SalesforceConnector

CONTACT = ObjectDescription(name="Contact", id_field="Id", fields={}, key_prefix="003")
GUID = "6F9619FF-8B86-D011-B42D-00C04FC964FF"


def bare(connector_class):
    """The connector's rules need no session: an instance without one."""
    return object.__new__(connector_class)


@pytest.mark.parametrize(
    ("value", "valid"),
    [("003000000000001", True), ("003000000000001AAA", True), ("003-bad", False), (GUID, False)],
)
def test_a_salesforce_id_has_15_or_18_letters_and_digits(value, valid):
    assert bare(SalesforceConnector).is_record_id(value) is valid


def test_a_salesforce_id_keeps_its_case():
    # The 15 case-sensitive characters stay as given; the 18-character form only appends the suffix.
    assert bare(SalesforceConnector).normalize_id("003abcDEF000001")[:15] == "003abcDEF000001"
    assert bare(SalesforceConnector).normalize_id("003abcDEF000001AOA") == "003abcDEF000001AOA"


# Ids as Salesforce documents them: the 18-character form is the 15 plus the case-safe suffix.
@pytest.mark.parametrize(
    ("given", "answered"),
    [
        ("003000000000001", "003000000000001AAA"),
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        ("0035e00000ABCdE", "0035e00000ABCdEAAX"),
    ],
)
def test_a_15_character_salesforce_id_gets_its_checksum_suffix(given, answered):
    assert bare(SalesforceConnector).normalize_id(given) == answered


def test_an_18_character_salesforce_id_whose_case_was_lost_gets_it_back_from_its_suffix():
    assert bare(SalesforceConnector).normalize_id("001a0000006vm9riac") == "001A0000006Vm9rIAC"


@pytest.mark.parametrize("value", ["003-bad", GUID, "0030000000000019ZZ", ""])
def test_a_value_that_is_not_a_salesforce_id_is_left_for_is_record_id_to_refuse(value):
    assert bare(SalesforceConnector).normalize_id(value) == value


def test_a_salesforce_id_of_another_object_is_not_the_objects():
    connector = bare(SalesforceConnector)
    assert connector.id_of_object("003000000000001", CONTACT)
    assert not connector.id_of_object("00Q000000000001", CONTACT)


def test_a_dataverse_id_is_a_guid_compared_in_lower_case():
    connector = bare(DynamicsConnector)
    assert connector.is_record_id(connector.normalize_id(GUID))
    assert connector.normalize_id(GUID) == GUID.lower()
    assert not connector.is_record_id("003000000000001")
    assert connector.id_of_object(GUID.lower(), ObjectDescription(name="contact", id_field="contactid", fields={}))


def test_only_salesforce_deletes_through_a_bulk_api():
    assert SalesforceConnector.bulk_deletes
    assert not DynamicsConnector.bulk_deletes
