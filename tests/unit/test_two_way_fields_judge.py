"""The two-way judge for any field (SPEC B1): per-field priority (`crm`, `marketing`, `latest`) and *update
blank values*, over every cell of the matrix - each side changed or not, each value empty or not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.domain.two_way import (
    Change,
    LatestWins,
    Reason,
    SidePriority,
    TimeSource,
    crm_value_on_tie,
    decide,
    is_blank,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICIES = {
    "crm": SidePriority("crm"),
    "marketing": SidePriority("marketing"),
    "latest": LatestWins(tolerance_seconds=2, restrictive=crm_value_on_tie),
}

# Each row: the CRM side (changed? its value) and the marketing side (changed? its value); a changed value is
# also the side's current one. When both changed, the CRM's change is the later (by 10 s). The six outcomes,
# for priority crm / marketing / latest, each without and with update_blank_values: the value both sides
# hold after the run, or "-" for nothing written.
MATRIX = """
crm changed  crm value | mkt changed  mkt value || crm    crm+blank  mkt  mkt+blank  latest  latest+blank
no           C         | no           M         || -      -          -    -          -       -
no           C         | no           ''        || -      -          -    C          -       C
no           ''        | no           M         || -      M          -    -          -       M
no           ''        | no           ''        || -      -          -    -          -       -
no           C         | yes          M         || M      M          M    M          M       M
no           C         | yes          ''        || ''     ''         ''   C          ''      C
no           ''        | yes          M         || M      M          M    M          M       M
no           ''        | yes          ''        || -      -          -    -          -       -
yes          C         | no           M         || C      C          C    C          C       C
yes          C         | no           ''        || C      C          C    C          C       C
yes          ''        | no           M         || ''     M          ''   ''         ''      M
yes          ''        | no           ''        || -      -          -    -          -       -
yes          C         | yes          M         || C      C          M    M          C       C
yes          C         | yes          ''        || C      C          ''   C          C       C
yes          ''        | yes          M         || ''     M          M    M          ''      M
yes          ''        | yes          ''        || -      -          -    -          -       -
"""


def _cells():
    lines = [line for line in MATRIX.strip().splitlines()[1:]]
    columns = [(p, blank) for p in ("crm", "marketing", "latest") for blank in (False, True)]
    for line in lines:
        sides, outcomes = line.split("||")
        crm_part, mkt_part = sides.split("|")
        crm_changed, crm_value = crm_part.split()
        mkt_changed, mkt_value = mkt_part.split()
        for (priority, blank), expected in zip(columns, outcomes.split(), strict=True):
            yield pytest.param(
                crm_changed == "yes",
                "" if crm_value == "''" else crm_value,
                mkt_changed == "yes",
                "" if mkt_value == "''" else mkt_value,
                priority,
                blank,
                None if expected == "-" else ("" if expected == "''" else expected),
                id=f"crm-{crm_changed}-{crm_value}/mkt-{mkt_changed}-{mkt_value}/{priority}{'+blank' if blank else ''}",
            )


def _decide(crm_changed, crm_value, mkt_changed, mkt_value, priority, blank):
    crm = Change("crm", crm_value, T0 + timedelta(seconds=10), TimeSource.HISTORY) if crm_changed else None
    mkt = Change("marketing", mkt_value, T0, TimeSource.PROFILE) if mkt_changed else None
    held = (
        Change("crm", crm_value, T0 - timedelta(days=1), TimeSource.RECORD),
        Change("marketing", mkt_value, T0 - timedelta(days=1), TimeSource.PROFILE),
    )
    return decide(
        "city",
        crm,
        mkt,
        direction="both",
        policy=POLICIES[priority],
        current_crm=crm_value,
        current_marketing=mkt_value,
        update_blank_values=blank,
        held=held,
    )


@pytest.mark.parametrize(
    ("crm_changed", "crm_value", "mkt_changed", "mkt_value", "priority", "blank", "expected"), list(_cells())
)
def test_every_cell_of_the_priority_and_blank_values_matrix(
    crm_changed, crm_value, mkt_changed, mkt_value, priority, blank, expected
):
    decision = _decide(crm_changed, crm_value, mkt_changed, mkt_value, priority, blank)

    assert (None if decision.winner is None else decision.value) == expected


def test_a_conflict_won_by_the_priority_side_says_so():
    decision = _decide(True, "C", True, "M", "marketing", False)

    assert (decision.value, decision.reason, decision.conflict) == ("M", Reason.PRIORITY, True)


def test_a_priority_side_wins_even_when_its_change_is_the_earlier():
    decision = _decide(True, "C", True, "M", "crm", False)  # the CRM's change is 10 s later; crm wins anyway
    earlier = decide(
        "city",
        Change("crm", "C", T0, TimeSource.HISTORY),
        Change("marketing", "M", T0 + timedelta(hours=1), TimeSource.PROFILE),
        direction="both",
        policy=SidePriority("crm"),
        current_crm="C",
        current_marketing="M",
    )

    assert (decision.value, earlier.value) == ("C", "C")


def test_a_filled_blank_is_reported_as_filled_from_the_other_side():
    decision = _decide(False, "", False, "M", "crm", True)

    assert (decision.value, decision.winner.side, decision.reason) == ("M", "marketing", Reason.BLANK_FILLED)


def test_latest_on_any_field_a_tie_keeps_the_crm_value():
    decision = decide(
        "city",
        Change("crm", "C", T0, TimeSource.HISTORY),
        Change("marketing", "M", T0 + timedelta(seconds=1), TimeSource.PROFILE),
        direction="both",
        policy=POLICIES["latest"],
        current_crm="C",
        current_marketing="M",
    )

    assert (decision.value, decision.reason) == ("C", Reason.TIE)


@pytest.mark.parametrize("direction", ["crm_to_marketing", "marketing_to_crm"])
def test_blank_values_are_not_filled_against_a_one_way_field(direction):
    decision = decide(
        "city",
        None,
        None,
        direction=direction,
        policy=POLICIES["latest"],
        current_crm="",
        current_marketing="M",
        update_blank_values=True,
        held=(Change("crm", "", T0, TimeSource.RECORD), Change("marketing", "M", T0, TimeSource.PROFILE)),
    )

    assert decision.winner is None


@pytest.mark.parametrize(
    ("value", "blank"),
    [(None, True), ("", True), ("  ", True), ([], True), (0, False), (False, False), ("x", False), (["a"], False)],
)
def test_empty_means_null_empty_text_or_an_empty_list(value, blank):
    assert is_blank(value) is blank


def test_history_rows_an_earlier_decision_saw_are_not_changes_again():
    from crmsync.domain.two_way import FieldChangeRow, crm_change, value_hash

    rows = [
        FieldChangeRow("crm 8", T0, "005human"),
        FieldChangeRow("crm 9", T0 + timedelta(seconds=1), "005human"),
        FieldChangeRow("marketing 9", T0 + timedelta(seconds=90), "005integration"),  # our write of the winner
    ]

    change, echoes = crm_change(
        field="Title",
        current="marketing 9",
        rows=rows,
        record_changed_at=T0 + timedelta(seconds=90),
        ledger_hash=value_hash("marketing 9"),
        integration_user="005integration",
        source=TimeSource.HISTORY,
        record="003x",
        seen_until=T0 + timedelta(seconds=1),
    )

    assert (change, echoes) == (None, 1)
