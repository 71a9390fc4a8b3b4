"""Reading a transfer file (SPEC T2): CSV with a header of CRM field names or JSON Lines, typed as the CRM's
API would give the records; a row that cannot be read is a reject naming its row and column; a file that
is not UTF-8 is refused before anything is loaded, naming the first bad byte's position."""

import io

import pytest

from crmsync.config import ImportSync
from crmsync.connectors.port import FieldDescription, ObjectDescription
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError
from crmsync.inputs import text_lines
from crmsync.services.import_plan import resolve_import_plan
from crmsync.services.transfers import check_file, file_format, read_rows


def plan():
    fields = {
        "Id": CrmFieldType.ID,
        "LastModifiedDate": CrmFieldType.DATETIME,
        "Email": CrmFieldType.STRING,
        "HasOptedOutOfEmail": CrmFieldType.BOOLEAN,
        "NumberOfChildren__c": CrmFieldType.INTEGER,
        "Score__c": CrmFieldType.NUMBER,
    }
    description = ObjectDescription(
        name="Contact",
        id_field="Id",
        fields={name.lower(): FieldDescription(name=name, crm_type=kind) for name, kind in fields.items()},
    )
    sync = ImportSync.model_validate(
        {
            "id": "sf-contacts",
            "operation": "import",
            "connection": "sf",
            "object": "Contact",
            "watermark": {"field": "LastModifiedDate"},
            "fields": [
                {"remote": "Email", "local": "email"},
                {"remote": "HasOptedOutOfEmail", "local": "optedOut"},
                {"remote": "NumberOfChildren__c", "local": "children"},
                {"remote": "Score__c", "local": "score"},
            ],
        }
    )
    return resolve_import_plan(sync, description, "salesforce")


def rows(text: str, fmt: str):
    return list(read_rows(text_lines(io.BytesIO(text.encode()), "f"), "f", fmt, plan()))


HEADER = "Id,LastModifiedDate,Email,HasOptedOutOfEmail,NumberOfChildren__c,Score__c\n"


def test_csv_cells_are_typed_by_the_fields_crm_type_and_an_empty_cell_is_absent():
    (row,) = rows(HEADER + "003A,2026-01-02T03:04:05Z,a@x.org,true,2,1.5\n", "csv")
    assert row.number == 2
    assert row.problem is None
    assert row.record == {
        "Id": "003A",
        "LastModifiedDate": "2026-01-02T03:04:05Z",
        "Email": "a@x.org",
        "HasOptedOutOfEmail": True,
        "NumberOfChildren__c": 2,
        "Score__c": 1.5,
    }
    (empty,) = rows(HEADER + "003B,2026-01-02T03:04:05Z,,,,\n", "csv")
    assert empty.record is not None
    assert empty.record["Email"] is None
    assert empty.record["Score__c"] is None


def test_csv_header_names_are_matched_to_the_crm_spelling_without_case():
    (row,) = rows("id,lastmodifieddate,EMAIL\n003A,2026-01-02T03:04:05Z,a@x.org\n", "csv")
    assert row.record == {"Id": "003A", "LastModifiedDate": "2026-01-02T03:04:05Z", "Email": "a@x.org"}


def test_a_quoted_csv_cell_may_hold_commas_and_line_breaks():
    (row,) = rows('Id,LastModifiedDate,Email\n003A,2026-01-02T03:04:05Z,"a,\nb"\n', "csv")
    assert row.record is not None
    assert row.record["Email"] == "a,\nb"


def test_a_csv_row_with_too_many_cells_is_a_reject_naming_row_and_first_extra_column():
    good, bad = rows(
        "Id,LastModifiedDate,Email\n003A,2026-01-02T03:04:05Z,a\n003B,2026-01-02T03:04:05Z,b,x\n", "csv"
    )
    assert good.problem is None
    assert bad.record is None
    assert bad.problem is not None
    assert bad.problem.error_symbol == "MALFORMED_ROW"
    assert bad.problem.error_message == "f: row 3, column 4: 4 cells for the header's 3 columns"
    assert bad.problem.crm_id == "003B"


def test_a_csv_row_with_too_few_cells_names_the_first_missing_column():
    (bad,) = rows("Id,LastModifiedDate,Email\n003A,2026-01-02T03:04:05Z\n", "csv")
    assert bad.problem is not None
    assert bad.problem.error_message == "f: row 2, column 3 (Email): 2 cells for the header's 3 columns"
    assert bad.problem.fields == ("Email",)


def test_a_csv_cell_not_of_its_fields_type_is_a_reject_naming_row_and_column():
    (bad,) = rows(HEADER + "003A,2026-01-02T03:04:05Z,a@x.org,yes,2,1\n", "csv")
    assert bad.problem is not None
    assert bad.problem.error_message == (
        "f: row 2, column 4 (HasOptedOutOfEmail): 'yes' is not a boolean (true, false, 1, 0)"
    )
    assert bad.problem.fields == ("HasOptedOutOfEmail",)
    assert bad.problem.record["Email"] == "a@x.org"


def test_a_csv_row_the_csv_reader_refuses_is_a_reject_and_the_next_rows_are_read():
    bad, good = rows('Id,LastModifiedDate,Email\n003A,"x"y,a\n003B,2026-01-02T03:04:05Z,b\n', "csv")
    assert bad.problem is not None
    assert bad.problem.error_message.startswith("f: row 2: ")
    assert good.record is not None
    assert good.record["Id"] == "003B"


def test_json_lines_records_keep_their_types_and_blank_lines_are_skipped():
    text = '{"Id": "003A", "lastmodifieddate": "2026-01-02T03:04:05Z", "HasOptedOutOfEmail": false}\n\n'
    (row,) = rows(text, "jsonl")
    assert row.record == {"Id": "003A", "LastModifiedDate": "2026-01-02T03:04:05Z", "HasOptedOutOfEmail": False}


def test_a_json_lines_line_that_is_not_json_or_not_an_object_is_a_reject_naming_row_and_column():
    bad_json, not_object, good = rows('{"Id": "003A",}\n[1, 2]\n{"Id": "003B"}\n', "jsonl")
    assert bad_json.problem is not None
    assert bad_json.problem.error_message.startswith("f: row 1, column 15: not JSON (")
    assert not_object.problem is not None
    assert not_object.problem.error_message == "f: row 2, column 1: not a JSON object"
    assert good.record == {"Id": "003B"}


def test_a_file_that_is_not_utf8_is_refused_naming_the_line_and_column_of_the_first_bad_byte():
    data = (HEADER + "003A,2026-01-02T03:04:05Z,José@x.org,,,\n").encode("latin-1")
    with pytest.raises(ConfigurationError) as caught:
        check_file(lambda: io.BytesIO(data), "c.csv", "csv", plan())
    assert caught.value.problems[0].startswith("c.csv:2:30: byte 0xe9 is not UTF-8")


def test_a_csv_header_without_the_id_or_watermark_field_is_refused():
    with pytest.raises(ConfigurationError, match="the header has no column LastModifiedDate"):
        check_file(lambda: io.BytesIO(b"Id,Email\n003A,a\n"), "c.csv", "csv", plan())


def test_the_format_comes_from_the_name_unless_given():
    assert file_format("s3://b/k/contacts.CSV") == "csv"
    assert file_format("contacts.ndjson") == "jsonl"
    assert file_format("contacts.txt", "jsonl") == "jsonl"
    with pytest.raises(ConfigurationError, match="--format"):
        file_format("contacts.txt")
