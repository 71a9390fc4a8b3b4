"""`crmsync rejects export` writes Data Loader's error-file shape: the record's columns, then ERROR."""

from crmsync.services.operations import data_loader_error_file


def test_columns_are_the_records_in_first_seen_order_then_error():
    header, rows = data_loader_error_file(
        [
            {
                "record": {"LastName": "Lima", "Email": "bad"},
                "errorSymbol": "INVALID_EMAIL_ADDRESS",
                "errorMessage": "Email: invalid email address: bad",
            },
            {
                "record": {"Email": "b@example.com", "Company": None},
                "errorSymbol": "REQUIRED_FIELD_MISSING",
                "errorMessage": "Required fields are missing: [LastName]",
            },
        ]
    )
    assert header == ["LastName", "Email", "Company", "ERROR"]
    assert rows == [
        ["Lima", "bad", "", "INVALID_EMAIL_ADDRESS:Email: invalid email address: bad"],
        ["", "b@example.com", "", "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]"],
    ]
