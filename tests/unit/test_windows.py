"""The automatic index: watermark text, windows with overlap and lag (SPEC I7, I9)."""

from datetime import UTC, datetime

import pytest

from crmsync.domain.windows import compute_window, format_watermark, parse_moment, parse_watermark

NOW = datetime(2024, 7, 1, 12, 0, 30, 750_000, tzinfo=UTC)


def test_watermark_text_is_yyyy_mm_dd_hh_mm_ss_in_utc():
    paris_noon = datetime.fromisoformat("2024-07-01T12:00:00+02:00")
    assert format_watermark(paris_noon) == "2024/07/01 10:00:00"


def test_watermark_text_round_trips():
    assert parse_watermark("2024/07/01 10:00:00") == datetime(2024, 7, 1, 10, tzinfo=UTC)


def test_malformed_watermark_is_refused_with_the_expected_format():
    with pytest.raises(ValueError, match="yyyy/MM/dd hh:mm:ss"):
        parse_watermark("2024-07-01 10:00")


def test_first_run_has_no_start():
    window = compute_window("LASTIMPORT_a_s", None, NOW, overlap_seconds=300, lag_seconds=60)
    assert window.start is None
    assert window.is_first_run


def test_end_is_server_time_minus_lag_to_the_second():
    window = compute_window("o", None, NOW, overlap_seconds=300, lag_seconds=60)
    assert window.end == datetime(2024, 7, 1, 11, 59, 30, tzinfo=UTC)


def test_next_start_overlaps_the_previous_end():
    previous = datetime(2024, 7, 1, 11, 0, tzinfo=UTC)
    window = compute_window("o", previous, NOW, overlap_seconds=300, lag_seconds=60)
    assert window.start == datetime(2024, 7, 1, 10, 55, tzinfo=UTC)


def test_variables_are_exposed_with_the_documented_names():
    previous = datetime(2024, 7, 1, 11, 0, tzinfo=UTC)
    window = compute_window("LASTIMPORT_a_s", previous, NOW, overlap_seconds=0, lag_seconds=0)
    assert window.variables() == {
        "crmOptionName": "LASTIMPORT_a_s",
        "crmStartImport": "2024/07/01 11:00:00",
        "crmEndDate": "2024/07/01 12:00:30",
    }


def test_window_is_empty_when_the_clock_has_not_passed_the_start():
    previous = datetime(2024, 7, 1, 12, 5, tzinfo=UTC)
    assert compute_window("o", previous, NOW, overlap_seconds=0, lag_seconds=0).is_empty


def test_an_operator_time_may_be_iso_8601_with_an_offset():
    assert parse_moment("2026-11-01T09:30:00+01:00") == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def test_an_operator_time_may_be_the_watermark_format():
    assert parse_moment("2026/11/01 08:30:00") == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)


def test_an_operator_date_alone_is_midnight_utc():
    assert parse_moment("2026/11/01") == parse_moment("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)


def test_an_operator_time_that_is_neither_is_refused_naming_both_formats():
    with pytest.raises(ValueError, match=r"ISO 8601 .* or yyyy/MM/dd hh:mm:ss"):
        parse_moment("last tuesday")
