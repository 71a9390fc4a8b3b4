"""Data replication (`sobjects/{T}/deleted` and `updated`) through simple-salesforce's deleted()/updated()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

NOW = datetime(2024, 7, 20, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock(salesforce_emulator):
    salesforce_emulator.control.set_clock(NOW)
    return NOW


def _seed_deleted(emulator, *deleted_dates: datetime) -> list[str]:
    ids = emulator.control.seed("Contact", [{"LastName": f"D{i}"} for i in range(len(deleted_dates))])
    for record_id, when in zip(ids, deleted_dates, strict=True):
        emulator.control.delete("Contact", record_id, deleted_date=when)
    return ids


def _error(raised: pytest.ExceptionInfo[Exception]) -> dict[str, object]:
    return raised.value.content[0]  # type: ignore[attr-defined]


def test_deleted_lists_records_deleted_in_the_window(salesforce_emulator, salesforce_client, clock):
    inside, outside = _seed_deleted(salesforce_emulator, NOW - timedelta(days=2), NOW - timedelta(days=5))

    result = salesforce_client.Contact.deleted(NOW - timedelta(days=3), NOW - timedelta(days=1))

    assert result["deletedRecords"] == [{"id": inside, "deletedDate": "2024-07-18T12:00:30.000+0000"}]
    assert outside not in str(result)


def test_deleted_reports_earliest_date_available_from_the_retention(salesforce_emulator, salesforce_client, clock):
    result = salesforce_client.Contact.deleted(NOW - timedelta(days=1), NOW)

    assert result["earliestDateAvailable"] == "2024-07-05T12:00:00.000+0000"


def test_latest_date_covered_is_the_end_without_its_seconds(salesforce_client, clock):
    result = salesforce_client.Contact.deleted(
        NOW - timedelta(days=2), datetime(2024, 7, 19, 8, 15, 59, tzinfo=UTC)
    )

    assert result["latestDateCovered"] == "2024-07-19T08:15:00.000+0000"


def test_latest_date_covered_never_passes_the_current_time(salesforce_client, clock):
    result = salesforce_client.Contact.updated(NOW - timedelta(hours=1), NOW + timedelta(days=1))

    assert result["latestDateCovered"] == "2024-07-20T12:00:00.000+0000"


def test_a_deletion_after_latest_date_covered_comes_in_the_next_window(
    salesforce_emulator, salesforce_client, clock
):
    (record_id,) = _seed_deleted(salesforce_emulator, NOW - timedelta(seconds=10))  # 12:00:20, same minute as now

    first = salesforce_client.Contact.deleted(NOW - timedelta(hours=1), NOW)
    salesforce_emulator.control.advance_clock(120)
    second = salesforce_client.Contact.deleted(
        datetime.fromisoformat(first["latestDateCovered"].replace("+0000", "+00:00")), NOW + timedelta(minutes=2)
    )

    assert first["deletedRecords"] == []
    assert [r["id"] for r in second["deletedRecords"]] == [record_id]


def test_start_before_earliest_date_available_is_invalid_replication_date(salesforce_client, clock):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.deleted(NOW - timedelta(days=16), NOW)

    assert _error(raised)["errorCode"] == "INVALID_REPLICATION_DATE"


def test_start_must_precede_end_by_a_minute(salesforce_client, clock):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.deleted(NOW - timedelta(seconds=20), NOW)

    assert _error(raised)["errorCode"] == "INVALID_REPLICATION_DATE"


def test_shorter_retention_moves_earliest_date_and_purges_old_deletions(
    salesforce_emulator, salesforce_client, clock
):
    old, recent = _seed_deleted(salesforce_emulator, NOW - timedelta(days=3), NOW - timedelta(hours=3))
    salesforce_emulator.control.configure(deleted_retention_days=2)

    result = salesforce_client.Contact.deleted(NOW - timedelta(days=1), NOW)
    all_rows = salesforce_client.query_all("SELECT Id FROM Contact", include_deleted=True)["records"]

    assert result["earliestDateAvailable"] == "2024-07-18T12:00:00.000+0000"
    assert [r["id"] for r in result["deletedRecords"]] == [recent]
    assert old not in [r["Id"] for r in all_rows]


def test_more_ids_than_the_limit_is_exceeded_id_limit(salesforce_emulator, salesforce_client, clock):
    _seed_deleted(salesforce_emulator, *(NOW - timedelta(hours=h) for h in range(1, 5)))
    salesforce_emulator.control.configure(deleted_id_limit=3)

    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.deleted(NOW - timedelta(days=1), NOW)
    assert _error(raised)["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert len(salesforce_client.Contact.deleted(NOW - timedelta(hours=2, minutes=30), NOW)["deletedRecords"]) == 2


def test_updated_lists_ids_by_system_modstamp(salesforce_emulator, salesforce_client, clock):
    inside, outside = salesforce_emulator.control.seed(
        "Contact",
        [
            {"LastName": "In", "LastModifiedDate": "2024-07-19T10:00:00Z"},
            {"LastName": "Out", "LastModifiedDate": "2024-07-10T10:00:00Z"},
        ],
    )

    result = salesforce_client.Contact.updated(NOW - timedelta(days=2), NOW)

    assert result == {"ids": [inside], "latestDateCovered": "2024-07-20T12:00:00.000+0000"}
    assert outside not in result["ids"]


def test_updated_sees_api_writes_stamped_by_the_clock(salesforce_emulator, salesforce_client, clock):
    record_id = salesforce_client.Contact.create({"LastName": "Fresh"})["id"]
    salesforce_emulator.control.advance_clock(300)

    result = salesforce_client.Contact.updated(NOW - timedelta(minutes=5), NOW + timedelta(minutes=5))

    assert result["ids"] == [record_id]


def test_updated_cannot_look_back_more_than_thirty_days(salesforce_client, clock):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.updated(NOW - timedelta(days=31), NOW)

    assert _error(raised)["errorCode"] == "INVALID_REPLICATION_DATE"


def test_updated_more_ids_than_the_limit_is_exceeded_id_limit(salesforce_emulator, salesforce_client, clock):
    salesforce_emulator.control.seed("Contact", [{"LastName": f"U{i}"} for i in range(5)])
    salesforce_emulator.control.configure(deleted_id_limit=4)
    salesforce_emulator.control.advance_clock(120)

    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.updated(NOW - timedelta(hours=1), NOW + timedelta(minutes=2))
    assert _error(raised)["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_start_exactly_one_minute_before_end_is_invalid_replication_date(salesforce_client, clock):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        salesforce_client.Contact.deleted(NOW - timedelta(minutes=1), NOW)

    assert _error(raised)["errorCode"] == "INVALID_REPLICATION_DATE"
    assert salesforce_client.Contact.deleted(NOW - timedelta(minutes=2), NOW)["deletedRecords"] == []
