"""The two-way judge: latest change wins, certain beats possible, whole seconds, ties opt out (SPEC O3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.domain.two_way import (
    Change,
    FieldChangeRow,
    LatestWins,
    Reason,
    TimeSource,
    crm_change,
    decide,
    marketing_change,
    value_hash,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _crm(value, seconds=0.0, source=TimeSource.HISTORY):
    return Change("crm", value, T0 + timedelta(seconds=seconds), source, "005human")


def _mkt(value, seconds=0.0):
    return Change("marketing", value, T0 + timedelta(seconds=seconds), TimeSource.PROFILE)


def _decide(crm, marketing, direction="both", *, current_crm=None, current_marketing=None, tolerance=2):
    return decide(
        "denyListEmail",
        crm,
        marketing,
        direction=direction,
        policy=LatestWins(tolerance_seconds=tolerance),
        current_crm=(crm.value if crm else False) if current_crm is None else current_crm,
        current_marketing=(marketing.value if marketing else False)
        if current_marketing is None
        else current_marketing,
    )


def test_the_later_of_two_certain_changes_wins():
    decision = _decide(_crm(True, 10), _mkt(False, 0))

    assert (decision.winner.side, decision.reason, decision.conflict) == ("crm", Reason.LATER, True)


def test_marketing_later_wins():
    decision = _decide(_crm(True, 0), _mkt(False, 10))

    assert (decision.winner.side, decision.value) == ("marketing", False)


def test_changes_within_the_tolerance_are_a_tie_that_opts_out():
    decision = _decide(_crm(False, 0), _mkt(True, 2))

    assert (decision.value, decision.reason) == (True, Reason.TIE)


def test_times_are_compared_at_whole_seconds():
    decision = _decide(_crm(True, 3.9), _mkt(False, 0.1), tolerance=2)

    assert decision.reason is Reason.LATER  # 12:00:03 vs 12:00:00: 3 s apart, beyond the tolerance


def test_a_certain_time_beats_an_earlier_possible_time():
    decision = _decide(_crm(True, 0, TimeSource.RECORD), _mkt(False, 30))

    assert (decision.winner.side, decision.reason) == ("marketing", Reason.CERTAIN_OVER_POSSIBLE)


def test_a_certain_time_earlier_than_a_possible_one_is_an_unknown_order_that_opts_out():
    decision = _decide(_crm(True, 30, TimeSource.RECORD), _mkt(False, 0))

    assert (decision.value, decision.reason) == (True, Reason.UNKNOWN_ORDER)


def test_only_one_side_changed_wins_whatever_its_time():
    decision = _decide(_crm(True, -3600), None, current_marketing=False)

    assert (decision.winner.side, decision.reason) == ("crm", Reason.ONLY_CRM)


def test_disabled_moves_nothing():
    decision = _decide(_crm(True), _mkt(True), "disabled")

    assert decision.winner is None


def test_crm_to_marketing_ignores_marketing_changes():
    decision = _decide(None, _mkt(True), "crm_to_marketing", current_crm=False)

    assert decision.winner is None


def test_marketing_to_crm_ignores_crm_changes():
    decision = _decide(_crm(True, 100), _mkt(False, 0), "marketing_to_crm")

    assert (decision.winner.side, decision.value) == ("marketing", False)


def test_a_change_both_sides_already_hold_writes_nothing():
    decision = _decide(_crm(True), None, current_marketing=True)

    assert decision.winner is None


def test_our_own_write_read_back_from_history_is_an_echo():
    row = FieldChangeRow(True, T0, "005integration")

    change, _ = crm_change(
        field="HasOptedOutOfEmail",
        current=True,
        rows=[row],
        record_changed_at=T0,
        ledger_hash=value_hash(True),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
    )

    assert change is None


def test_a_human_setting_the_value_we_wrote_is_still_a_change():
    row = FieldChangeRow(True, T0, "005human")

    change, _ = crm_change(
        field="HasOptedOutOfEmail",
        current=True,
        rows=[row],
        record_changed_at=T0,
        ledger_hash=value_hash(True),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
    )

    assert change is not None
    assert change.author == "005human"


def test_a_human_change_before_our_write_is_not_hidden_by_it():
    rows = [
        FieldChangeRow(True, T0, "005human"),
        FieldChangeRow(False, T0 + timedelta(seconds=5), "005integration"),
    ]

    change, _ = crm_change(
        field="HasOptedOutOfEmail",
        current=False,
        rows=rows,
        record_changed_at=T0 + timedelta(seconds=5),
        ledger_hash=value_hash(False),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
    )

    assert change is not None
    assert (change.value, change.at) == (True, T0)


def test_without_history_a_record_change_to_the_synced_value_is_no_change():
    change, _ = crm_change(
        field="DoNotCall",
        current=True,
        rows=None,
        record_changed_at=T0,
        ledger_hash=value_hash(True),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
    )

    assert change is None


def test_without_history_a_new_value_is_a_change_at_the_record_time():
    change, _ = crm_change(
        field="DoNotCall",
        current=True,
        rows=None,
        record_changed_at=T0,
        ledger_hash=value_hash(False),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
    )

    assert change is not None
    assert (change.source, change.at) == (TimeSource.RECORD, T0)


def test_a_marketing_value_equal_to_the_synced_one_is_no_change():
    change, _ = marketing_change(
        current=True,
        changed_at=T0,
        since=T0 - timedelta(hours=1),
        ledger_hash=value_hash(True),
        author=None,
        record="p",
    )

    assert change is None


def test_a_marketing_change_before_the_window_is_no_change():
    change, _ = marketing_change(
        current=True,
        changed_at=T0 - timedelta(hours=2),
        since=T0 - timedelta(hours=1),
        ledger_hash=None,
        author=None,
        record="p",
    )

    assert change is None
