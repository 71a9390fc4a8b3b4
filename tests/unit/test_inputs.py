"""Files an operator gives (configuration, populations, records): not UTF-8 is a clear error, not a traceback."""

import io

import pytest

from crmsync.errors import ConfigurationError
from crmsync.inputs import decode_text, text_lines


def test_utf8_text_with_a_byte_order_mark_is_decoded_without_it():
    assert decode_text("\ufeffId\n003A\n".encode(), "ids.csv") == "Id\n003A\n"


def test_a_latin1_byte_names_file_line_column_and_rule_but_not_the_text_around_it():
    with pytest.raises(ConfigurationError) as caught:
        decode_text("Id,Name\n003A,José\n".encode("latin-1"), "s3://data/populations/p.csv")
    (problem,) = caught.value.problems
    assert problem == (
        "s3://data/populations/p.csv:2:9: byte 0xe9 is not UTF-8 (rule N4: input files are UTF-8 text); "
        "save the file as UTF-8"
    )


def test_a_bad_byte_after_a_byte_order_mark_is_placed_in_the_file():
    with pytest.raises(ConfigurationError) as caught:
        decode_text(b"\xef\xbb\xbfId\n\xff\n", "ids.csv")
    assert caught.value.problems[0].startswith("ids.csv:2:1: byte 0xff")


def test_streamed_lines_keep_their_ends_and_span_chunks():
    text = "profileId,email\n" + "".join(f"p{i},é{i}@example.com\n" for i in range(10_000))
    assert "".join(text_lines(io.BytesIO(text.encode()), "people.csv")) == text


def test_a_streamed_line_that_is_not_utf8_is_named_by_its_number():
    body = io.BytesIO(b"\xef\xbb\xbfprofileId,lastName\np1,Lima\np2,G\xf3mez\n")
    lines = text_lines(body, "inbox/people.csv")
    assert next(lines) == "profileId,lastName\n"
    assert next(lines) == "p1,Lima\n"
    with pytest.raises(ConfigurationError) as caught:
        next(lines)
    assert caught.value.problems[0].startswith("inbox/people.csv:3:5: byte 0xf3 is not UTF-8")
