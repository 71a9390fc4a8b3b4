"""Per-field conversions with real time zones, value replacement and type checks (SPEC I3, I4, S3)."""

from zoneinfo import ZoneInfo

import pytest

from crmsync.domain.conversions import convert_from_crm, parse_crm_datetime
from crmsync.domain.mapping import FieldMapping, RecordMapper, ResolvedField
from crmsync.domain.records import RecordRejected, RejectCode
from crmsync.domain.types import Conversion, CrmFieldType, LocalType, is_compatible

PARIS = ZoneInfo("Europe/Paris")


def convert(value, conversion, crm_type=CrmFieldType.DATETIME, tz=PARIS):
    return convert_from_crm(value, crm_type, conversion, tz, "F")


def test_salesforce_offset_without_colon_is_parsed():
    assert parse_crm_datetime("2024-07-01T10:00:00.000+0000").isoformat() == "2024-07-01T10:00:00+00:00"


def test_a_negative_offset_without_colon_is_parsed():
    assert parse_crm_datetime(" 2024-07-01T10:00:00-0530 ").isoformat() == "2024-07-01T10:00:00-05:30"


def test_default_converts_to_the_target_time_zone_in_summer():
    assert convert("2024-07-01T10:00:00.000+0000", Conversion.DEFAULT) == "2024-07-01T12:00:00+02:00"


def test_default_converts_to_the_target_time_zone_in_winter():
    assert convert("2024-01-15T10:00:00.000+0000", Conversion.DEFAULT) == "2024-01-15T11:00:00+01:00"


def test_date_only_takes_the_date_in_the_target_time_zone():
    assert convert("2024-03-31T23:30:00.000+0000", Conversion.DATE_ONLY) == "2024-04-01"


def test_no_offset_keeps_the_crm_wall_clock_and_drops_the_offset():
    assert convert("2024-07-01T10:00:00.000+0000", Conversion.NO_OFFSET) == "2024-07-01T10:00:00"


def test_raw_keeps_the_value_as_text():
    assert convert("2024-07-01T10:00:00.000+0000", Conversion.RAW) == "2024-07-01T10:00:00.000+0000"
    assert convert(True, Conversion.RAW, CrmFieldType.BOOLEAN) == "true"
    assert convert(12.5, Conversion.RAW, CrmFieldType.NUMBER) == "12.5"


def test_dates_stay_dates():
    assert convert("1990-02-28", Conversion.DEFAULT, CrmFieldType.DATE) == "1990-02-28"


def test_unparsable_date_time_rejects_the_record_with_its_code():
    with pytest.raises(RecordRejected) as caught:
        convert("31/12/2024", Conversion.DEFAULT)
    assert caught.value.code is RejectCode.INVALID_DATE


def test_null_stays_null_whatever_the_conversion():
    assert convert(None, Conversion.RAW) is None


def mapper(*fields, tz="UTC"):
    return RecordMapper(list(fields), "Id", "SystemModstamp", tz)


def resolved(remote, local, crm_type, **kwargs):
    return ResolvedField.resolve(FieldMapping(remote=remote, local=local, **kwargs), remote, crm_type)


RECORD = {"Id": "003000000000001AAA", "SystemModstamp": "2024-07-01T10:00:00.000+0000"}


def test_replacement_rules_replace_matching_values():
    field = resolved("Color__c", "color", CrmFieldType.PICKLIST, replace={"green": "#00FF00"})
    assert mapper(field).map({**RECORD, "Color__c": "green"}).attributes == {"color": "#00FF00"}


def test_replacement_turns_text_into_the_declared_type():
    field = resolved(
        "Gender__c", "gender", CrmFieldType.PICKLIST, type=LocalType.INTEGER, replace={"F": 1, "M": 2}
    )
    assert mapper(field).map({**RECORD, "Gender__c": "F"}).attributes == {"gender": 1}


def test_value_without_a_matching_replacement_that_misses_the_type_is_rejected():
    field = resolved(
        "Gender__c", "gender", CrmFieldType.PICKLIST, type=LocalType.INTEGER, replace={"F": 1, "M": 2}
    )
    with pytest.raises(RecordRejected) as caught:
        mapper(field).map({**RECORD, "Gender__c": "X"})
    assert caught.value.code is RejectCode.TYPE_MISMATCH


def test_over_long_value_is_rejected():
    field = resolved("LastName", "lastName", CrmFieldType.STRING, max_length=5)
    with pytest.raises(RecordRejected) as caught:
        mapper(field).map({**RECORD, "LastName": "Ölçekçioğlu"})
    assert caught.value.code is RejectCode.STRING_TOO_LONG


def test_non_latin_text_is_kept_as_is():
    field = resolved("LastName", "lastName", CrmFieldType.STRING)
    assert mapper(field).map({**RECORD, "LastName": "王小明"}).attributes == {"lastName": "王小明"}


def test_record_without_watermark_value_is_rejected():
    with pytest.raises(RecordRejected) as caught:
        mapper().map({"Id": "003000000000001AAA", "SystemModstamp": None})
    assert caught.value.code is RejectCode.MISSING_WATERMARK


def test_date_only_without_declared_type_lands_as_a_date():
    field = resolved("CreatedDate", "created", CrmFieldType.DATETIME, conversion=Conversion.DATE_ONLY)
    assert field.local_type is LocalType.DATE


@pytest.mark.parametrize(
    ("crm", "local", "ok"),
    [
        (CrmFieldType.DATE, LocalType.INTEGER, False),
        (CrmFieldType.INTEGER, LocalType.NUMBER, True),
        (CrmFieldType.STRING, LocalType.BOOLEAN, False),
        (CrmFieldType.BOOLEAN, LocalType.INTEGER, True),
        (CrmFieldType.DATETIME, LocalType.DATE, True),
        (CrmFieldType.NUMBER, LocalType.INTEGER, False),
    ],
)
def test_type_compatibility_table(crm, local, ok):
    assert is_compatible(crm, local, Conversion.DEFAULT, has_replacements=False) is ok


_GRID_FIELDS = [
    ("S", "s", CrmFieldType.STRING, {}),
    ("S", "s", CrmFieldType.STRING, {"max_length": 3}),
    ("P", "p", CrmFieldType.PICKLIST, {"replace": {"a": "b"}}),
    ("B", "b", CrmFieldType.BOOLEAN, {}),
    ("B", "b", CrmFieldType.BOOLEAN, {"type": LocalType.INTEGER}),
    ("I", "i", CrmFieldType.INTEGER, {}),
    ("I", "i", CrmFieldType.INTEGER, {"type": LocalType.NUMBER}),
    ("N", "n", CrmFieldType.NUMBER, {}),
    ("D", "d", CrmFieldType.DATE, {}),
    ("D", "d", CrmFieldType.DATE, {"conversion": Conversion.DATE_ONLY}),
    ("T", "t", CrmFieldType.DATETIME, {}),
    ("T", "t", CrmFieldType.DATETIME, {"conversion": Conversion.DATE_ONLY}),
    ("T", "t", CrmFieldType.DATETIME, {"conversion": Conversion.NO_OFFSET}),
    ("T", "t", CrmFieldType.DATETIME, {"conversion": Conversion.RAW}),
]
_GRID_VALUES = [
    None, "", "abc", "abcd", True, False, 0, 1, 2.0, 2.5, "2024-07-01T10:00:00.000+0000",
    "2024-07-01T10:00:00Z", "2024-07-01", "2024-02-30", "2024-07-01\n", "2024-W01-1", "2024-12-31T23:30:00-05:00",
    "31/12/2024", "x" * 50, {"a": 1},
]  # fmt: skip


def _outcome(convert, raw):
    try:
        return ("value", convert(raw))
    except RecordRejected as rejected:
        return ("rejected", rejected.code, str(rejected))


@pytest.mark.parametrize(("remote", "local", "crm_type", "settings"), _GRID_FIELDS)
def test_compiled_field_conversion_equals_the_general_one(remote, local, crm_type, settings):
    field = resolved(remote, local, crm_type, **settings)
    compiled = mapper(field, tz="Europe/Paris")

    outcomes = [
        (_outcome(compiled.compile(field), v), _outcome(lambda r: compiled.map_value(field, r), v))
        for v in _GRID_VALUES
    ]

    assert all(fast == general for fast, general in outcomes)
