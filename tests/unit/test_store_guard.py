"""A record the store cannot hold becomes a reject; the rest of its page is applied (issue 10, poison records)."""

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from crmsync.domain.records import LocalRecord
from crmsync.services.store_guard import ITEM_LIMIT_BYTES, apply_isolating, stored_size, too_large
from crmsync.stores.profiles import ApplyResult

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def record(crm_id: str, **attributes) -> LocalRecord:
    return LocalRecord(crm_id, NOW, {"email": f"{crm_id}@example.com", **attributes}, {"Id": crm_id, **attributes})


def refusing(poison: set[str], error: ClientError, applied: list[str]):
    def apply(records):
        if any(r.crm_id in poison for r in records):
            raise error
        applied.extend(r.crm_id for r in records)
        return ApplyResult(created=len(records), profile_ids={r.crm_id: f"p-{r.crm_id}" for r in records})

    return apply


VALIDATION = ClientError(
    {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}},
    "TransactWriteItems",
)
CANCELLED = ClientError(
    {
        "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
        "CancellationReasons": [{"Code": "None"}, {"Code": "ValidationError", "Message": "too large"}],
    },
    "TransactWriteItems",
)


@pytest.mark.parametrize("error", [VALIDATION, CANCELLED], ids=["validation", "cancelled-transaction"])
def test_the_record_the_store_refuses_is_rejected_and_the_others_applied(error):
    page = [record(f"00{i}") for i in range(7)]
    applied: list[str] = []
    result, rejects = apply_isolating(page, refusing({"003"}, error, applied))
    assert sorted(applied) == ["000", "001", "002", "004", "005", "006"]
    assert (result.created, sorted(result.profile_ids)) == (6, sorted(applied))
    (reject,) = rejects
    assert (reject.error_symbol, reject.crm_id, reject.record) == ("RECORD_NOT_STORED", "003", {"Id": "003"})
    assert "ValidationException" in reject.error_message or "TransactionCanceledException" in reject.error_message


def test_throttling_is_not_taken_for_a_poison_record():
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "BatchWriteItem")
    with pytest.raises(ClientError):
        apply_isolating([record("001"), record("002")], refusing({"001"}, throttled, []))


def test_a_record_larger_than_an_item_is_refused_before_any_write_and_named_by_its_largest_field():
    fitting, rejects = too_large([record("001"), record("002", notes="x" * ITEM_LIMIT_BYTES), record("003")])
    assert [r.crm_id for r in fitting] == ["001", "003"]
    (reject,) = rejects
    assert (reject.error_symbol, reject.fields, reject.crm_id) == ("RECORD_TOO_LARGE", ("notes",), "002")
    assert "x" * 20 not in reject.error_message
    assert len(reject.record["notes"]) == ITEM_LIMIT_BYTES


def test_the_size_estimate_counts_multibyte_characters_in_bytes():
    assert stored_size(record("001", name="é" * 1000)) - stored_size(record("001", name="e" * 1000)) == 1000
