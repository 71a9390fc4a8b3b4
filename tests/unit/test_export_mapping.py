"""Local values to CRM values: the import's conversions in reverse (SPEC E3)."""

from zoneinfo import ZoneInfo

import pytest

from crmsync.domain.conversions import convert_from_crm, convert_to_crm
from crmsync.domain.mapping import FieldMapping, PayloadMapper, ResolvedField
from crmsync.domain.records import RecordRejected
from crmsync.domain.types import Conversion, CrmFieldType

PARIS = ZoneInfo("Europe/Paris")


def resolved(remote, local, crm_type, **mapping):
    return ResolvedField.resolve(FieldMapping(remote=remote, local=local, **mapping), remote, crm_type)


@pytest.mark.parametrize(
    ("crm_value", "crm_type", "conversion"),
    [
        ("2024-03-01T08:30:00.000+0000", CrmFieldType.DATETIME, Conversion.DEFAULT),
        ("2024-07-14T22:15:00.000+0000", CrmFieldType.DATETIME, Conversion.NO_OFFSET),
        ("1990-02-28", CrmFieldType.DATE, Conversion.DEFAULT),
    ],
)
def test_a_value_imported_then_exported_reaches_the_crm_as_the_same_moment(crm_value, crm_type, conversion):
    local = convert_from_crm(crm_value, crm_type, conversion, PARIS, "F")
    back = convert_to_crm(local, crm_type, conversion, PARIS, "F")
    assert convert_from_crm(back, crm_type, Conversion.DEFAULT, PARIS, "F") == convert_from_crm(
        crm_value, crm_type, Conversion.DEFAULT, PARIS, "F"
    )


def test_default_sends_a_local_wall_clock_time_as_utc():
    assert convert_to_crm("2024-03-01T09:30:00", CrmFieldType.DATETIME, Conversion.DEFAULT, PARIS, "F") == (
        "2024-03-01T08:30:00.000Z"
    )


def test_no_offset_sends_the_digits_as_they_are():
    assert convert_to_crm("2024-03-01T09:30:00", CrmFieldType.DATETIME, Conversion.NO_OFFSET, PARIS, "F") == (
        "2024-03-01T09:30:00.000Z"
    )


def test_date_only_sends_midnight_of_that_day_in_the_sync_time_zone():
    assert convert_to_crm("2024-03-01", CrmFieldType.DATETIME, Conversion.DATE_ONLY, PARIS, "F") == (
        "2024-02-29T23:00:00.000Z"
    )


def test_raw_sends_the_text_untouched():
    assert convert_to_crm(42, CrmFieldType.STRING, Conversion.RAW, PARIS, "F") == "42"


@pytest.mark.parametrize(
    ("value", "crm_type", "expected"),
    [
        ("true", CrmFieldType.BOOLEAN, True),
        (1, CrmFieldType.BOOLEAN, True),
        ("42", CrmFieldType.INTEGER, 42),
        (3.0, CrmFieldType.INTEGER, 3),
        ("2.5", CrmFieldType.NUMBER, 2.5),
        (7, CrmFieldType.STRING, "7"),
    ],
)
def test_values_are_coerced_to_the_crm_field_type(value, crm_type, expected):
    assert convert_to_crm(value, crm_type, Conversion.DEFAULT, PARIS, "F") == expected


@pytest.mark.parametrize(
    ("value", "crm_type", "code"),
    [
        ("maybe", CrmFieldType.BOOLEAN, "TYPE_MISMATCH"),
        ("2.5", CrmFieldType.INTEGER, "TYPE_MISMATCH"),
        ("not a date", CrmFieldType.DATE, "INVALID_DATE"),
        (5, CrmFieldType.DATETIME, "INVALID_DATE"),
    ],
)
def test_a_value_that_cannot_be_converted_rejects_the_record_naming_the_field(value, crm_type, code):
    with pytest.raises(RecordRejected) as refused:
        convert_to_crm(value, crm_type, Conversion.DEFAULT, PARIS, "Score__c")
    assert (refused.value.code.value, refused.value.fields) == (code, ("Score__c",))


def test_payload_leaves_out_empty_attributes_so_the_crm_keeps_its_value():
    mapper = PayloadMapper(
        [resolved("FirstName", "firstName", CrmFieldType.STRING), resolved("Phone", "phone", CrmFieldType.STRING)],
        "UTC",
    )
    assert mapper.map({"firstName": "Zoé", "phone": ""}) == {"FirstName": "Zoé"}


def test_replacement_rules_map_local_values_to_crm_values_in_an_export():
    source = resolved(
        "LeadSource", "source", CrmFieldType.PICKLIST, replace={"web": "Web", "phone": "Phone Inquiry"}
    )
    assert PayloadMapper([source], "UTC").map({"source": "phone"}) == {"LeadSource": "Phone Inquiry"}


def test_max_length_is_checked_before_sending():
    field = resolved("LastName", "lastName", CrmFieldType.STRING, max_length=5)
    with pytest.raises(RecordRejected) as refused:
        PayloadMapper([field], "UTC").map({"lastName": "Kierkegård"})
    assert refused.value.code.value == "STRING_TOO_LONG"
