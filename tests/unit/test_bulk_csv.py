"""Bulk API 2.0 CSV as Salesforce reads and writes it."""

import pytest

from crmsync.connectors.salesforce.bulk2 import decode_csv, encode_csv, parse_bulk_error


def test_null_is_na_an_absent_column_is_empty_and_booleans_are_lower_case():
    text = encode_csv(
        [{"LastName": "O'Brien, Chloé", "DoNotCall": True}, {"LastName": None}], ["LastName", "DoNotCall"]
    )
    assert text == 'LastName,DoNotCall\n"O\'Brien, Chloé",true\n#N/A,\n'


def test_decoding_gives_rows_keyed_by_header():
    assert decode_csv('"sf__Id","sf__Created","LastName"\n"003A","true","Lima"\n') == [
        {"sf__Id": "003A", "sf__Created": "true", "LastName": "Lima"}
    ]


def test_a_column_that_is_not_a_field_name_is_refused_before_any_call():
    with pytest.raises(Exception, match="is not a Salesforce field"):
        encode_csv([{"Last Name": "x"}], ["Last Name"])


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName --",
            ("REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", ("LastName",)),
        ),
        ("ENTITY_IS_DELETED:entity is deleted:--", ("ENTITY_IS_DELETED", "entity is deleted", ())),
        (
            "INVALID_EMAIL_ADDRESS:Email: invalid email address: x:Email --",
            ("INVALID_EMAIL_ADDRESS", "Email: invalid email address: x", ("Email",)),
        ),
    ],
)
def test_sf_error_cells_split_into_code_message_and_fields(cell, expected):
    assert parse_bulk_error(cell) == expected
